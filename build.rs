//! Records the optimization level kerust itself is compiled at, so that `fit` can tell a user whose crate builds
//! kerust without optimizations (a dependency takes the user's profile, not kerust's `[profile.dev]`).
fn main() {
    let level = std::env::var("OPT_LEVEL").unwrap_or_default();
    println!("cargo:rustc-env=KERUST_OPT_LEVEL={level}");
    println!("cargo:rerun-if-changed=build.rs");
}
