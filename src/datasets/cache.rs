//! Where datasets are cached, and where missing files are downloaded from.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The environment variable naming kerust's home folder (default `~/.kerust`); datasets are cached in
/// `$KERUST_HOME/datasets/<name>/`.
pub const HOME_ENV: &str = "KERUST_HOME";

/// The environment variable that replaces the built-in mirror list with one base URL (or several,
/// separated by whitespace, tried in order). Each file is fetched from `<base URL>/<file name>`.
pub const MIRROR_ENV: &str = "KERUST_DATASETS_MIRROR";

/// The dataset cache: the folder files are kept in, and the mirrors missing files are downloaded from.
///
/// [`Cache::from_env`] is what the plain `load_data()` functions use. Build one explicitly to choose the
/// folder or the mirrors without touching environment variables:
///
/// ```
/// use kerust::datasets::Cache;
///
/// let cache = Cache::new("/data/kerust").with_mirrors(["http://mirror.example/mnist/"]);
/// assert_eq!(cache.dataset_dir("mnist"), std::path::Path::new("/data/kerust/datasets/mnist"));
/// assert_eq!(cache.mirrors(), Some(&["http://mirror.example/mnist/".to_string()][..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    home: PathBuf,
    mirrors: Option<Vec<String>>,
    progress: bool,
}

impl Cache {
    /// A cache rooted at `home` (datasets go to `home/datasets/<name>/`), using each dataset's built-in
    /// mirrors, with download progress shown when stderr is a terminal.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Cache { home: home.into(), mirrors: None, progress: true }
    }

    /// The cache the environment asks for: `$KERUST_HOME` (default `~/.kerust`), and the mirror(s) in
    /// `$KERUST_DATASETS_MIRROR` if set. Empty variables count as unset.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if neither `KERUST_HOME` nor a home folder (`HOME`, or `USERPROFILE` on
    /// Windows) is set, or if `KERUST_DATASETS_MIRROR` is not valid UTF-8.
    pub fn from_env() -> Result<Self> {
        let user_home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
        from_values(std::env::var_os(HOME_ENV), std::env::var_os(MIRROR_ENV), user_home)
    }

    /// Replaces the built-in mirror list with these base URLs, tried in order.
    pub fn with_mirrors<I, S>(mut self, mirrors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.mirrors = Some(mirrors.into_iter().map(Into::into).collect());
        self
    }

    /// Whether to show download progress on stderr (only ever when stderr is a terminal). Default: true.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// kerust's home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The folder a dataset's files are cached in: `<home>/datasets/<name>`.
    pub fn dataset_dir(&self, name: &str) -> PathBuf {
        self.home.join("datasets").join(name)
    }

    /// The mirrors that replace the built-in ones, if any.
    pub fn mirrors(&self) -> Option<&[String]> {
        self.mirrors.as_deref()
    }

    /// Whether download progress may be shown.
    pub fn progress(&self) -> bool {
        self.progress
    }

    /// The mirrors to try for a dataset whose built-in list is `builtin`.
    pub(crate) fn mirrors_or(&self, builtin: &[&str]) -> Vec<String> {
        match &self.mirrors {
            Some(mirrors) => mirrors.clone(),
            None => builtin.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// [`Cache::from_env`] on explicit values, so the rules can be tested without mutating the process
/// environment.
fn from_values(
    kerust_home: Option<OsString>,
    mirror: Option<OsString>,
    user_home: Option<OsString>,
) -> Result<Cache> {
    let non_empty = |v: Option<OsString>| v.filter(|s| !s.is_empty());
    let home =
        match (non_empty(kerust_home), non_empty(user_home)) {
            (Some(home), _) => PathBuf::from(home),
            (None, Some(user)) => PathBuf::from(user).join(".kerust"),
            (None, None) => return Err(Error::invalid_argument(
                HOME_ENV,
                "<unset>",
                "no home folder is known (HOME is unset); set KERUST_HOME to a folder for the dataset cache",
            )),
        };
    let mut cache = Cache::new(home);
    if let Some(mirror) = non_empty(mirror) {
        let mirror = mirror.into_string().map_err(|m| {
            Error::invalid_argument(MIRROR_ENV, m.to_string_lossy(), "must be valid UTF-8 (a base URL)")
        })?;
        let mirrors: Vec<&str> = mirror.split_whitespace().collect();
        if !mirrors.is_empty() {
            cache = cache.with_mirrors(mirrors);
        }
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn kerust_home_wins_over_home() {
        let cache = from_values(os("/k"), None, os("/home/u")).unwrap();
        assert_eq!(cache.home(), Path::new("/k"));
        assert_eq!(cache.mirrors(), None);
    }

    #[test]
    fn default_is_dot_kerust_in_home() {
        let cache = from_values(None, None, os("/home/u")).unwrap();
        assert_eq!(cache.dataset_dir("mnist"), Path::new("/home/u/.kerust/datasets/mnist"));
        // An empty KERUST_HOME is treated as unset, not as the current folder.
        assert_eq!(from_values(os(""), None, os("/home/u")).unwrap(), cache);
    }

    #[test]
    fn no_home_at_all_is_an_error() {
        let err = from_values(None, None, None).unwrap_err();
        assert!(err.to_string().contains("KERUST_HOME"), "{err}");
    }

    #[test]
    fn mirror_variable_replaces_the_list() {
        let cache = from_values(os("/k"), os(" http://a/  http://b/ "), None).unwrap();
        assert_eq!(cache.mirrors(), Some(&["http://a/".to_string(), "http://b/".to_string()][..]));
        assert_eq!(cache.mirrors_or(&["http://builtin/"]), ["http://a/", "http://b/"]);
        let cache = from_values(os("/k"), os("  "), None).unwrap();
        assert_eq!(cache.mirrors_or(&["http://builtin/"]), ["http://builtin/"]);
    }
}
