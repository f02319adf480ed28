//! The one-time notice `fit` prints when kerust itself was compiled without optimizations.
//!
//! A crate that depends on kerust compiles it with that crate's profile: kerust's own `[profile.dev]` does not
//! apply there, and plain `cargo run` builds kerust (and ndarray, gemm) at `opt-level = 0`, which trains some
//! 40-150 times slower. Nothing else tells the user, so the first `fit` of the process says it, once, on stderr.
use std::sync::Once;

/// The optimization level Cargo compiled kerust at (`"0"`, `"1"`, `"2"`, `"3"`, `"s"`, `"z"`), from `build.rs`.
const OPT_LEVEL: &str = env!("KERUST_OPT_LEVEL");

/// What to add to the user's `Cargo.toml`: every dependency optimized, the user's own crate not, so that their
/// builds stay quick. `"*"` matches all packages that are not members of the user's workspace, kerust included.
pub(crate) const FIX: &str = "[profile.dev.package.\"*\"]\nopt-level = 3";

/// The notice for kerust compiled at `opt_level`, or `None` when it was optimized.
pub(crate) fn notice(opt_level: &str) -> Option<String> {
    (opt_level == "0").then(|| {
        format!(
            "kerust: this program uses kerust compiled without optimizations (opt-level = 0), which trains some \
             40-150 times slower. A crate that depends on kerust compiles it with its own profile, not kerust's; \
             add this to your Cargo.toml (the workspace root's, in a workspace), which optimizes kerust and the \
             other dependencies but not your own code:\n\n{FIX}\n\nor build with `cargo run --release`. (This \
             notice is printed once per process.)"
        )
    })
}

/// Prints [`notice`] to stderr the first time it is called in this process, if kerust was not optimized.
pub(crate) fn notice_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(text) = notice(OPT_LEVEL) {
            eprintln!("{text}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unoptimized_builds_get_the_notice() {
        for level in ["1", "2", "3", "s", "z"] {
            assert_eq!(notice(level), None, "{level}");
        }
        let text = notice("0").expect("opt-level 0 is unoptimized");
        assert!(text.contains("[profile.dev.package.\"*\"]\nopt-level = 3"), "{text}");
        assert!(text.contains("cargo run --release"), "{text}");
    }

    #[test]
    fn the_build_script_records_the_level() {
        // kerust's own tests build it at `[profile.dev] opt-level = 1` (or higher): never the notice.
        assert!(["0", "1", "2", "3", "s", "z"].contains(&OPT_LEVEL), "{OPT_LEVEL}");
        assert_eq!(notice(OPT_LEVEL), None);
    }
}
