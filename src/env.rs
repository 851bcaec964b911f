//! The process environment, captured once so that library code never reads
//! `std::env` behind the caller's back and tests can pass their own.

use std::collections::HashMap;
use std::path::PathBuf;

/// A snapshot of environment variables. Its `Debug` names the variables,
/// never their values (they include AWS secrets).
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    /// The current process environment (variables that are not UTF-8 are skipped).
    #[allow(clippy::disallowed_methods)] // the one place that reads the process environment
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of the given pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The same snapshot for aws-config, which then reads nothing else.
    pub(crate) fn to_aws(&self) -> aws_types::os_shim_internal::Env {
        aws_types::os_shim_internal::Env::from(self.vars.clone())
    }

    /// The XDG cache directory for wif-helper: `$XDG_CACHE_HOME/wif-helper`,
    /// else `$HOME/.cache/wif-helper`.
    pub fn default_cache_dir(&self) -> Option<PathBuf> {
        if let Some(x) = self.get("XDG_CACHE_HOME").map(PathBuf::from)
            && x.is_absolute()
        {
            return Some(x.join("wif-helper"));
        }
        let home = PathBuf::from(self.get("HOME")?);
        home.is_absolute()
            .then(|| home.join(".cache").join("wif-helper"))
    }
}

#[cfg(test)]
mod tests {
    use super::Env;
    use std::path::PathBuf;

    #[test]
    fn xdg_cache_home_wins_over_home_and_must_be_absolute() {
        let e = Env::from_pairs([("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(e.default_cache_dir(), Some(PathBuf::from("/x/wif-helper")));
        let e = Env::from_pairs([("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]);
        assert_eq!(
            e.default_cache_dir(),
            Some(PathBuf::from("/h/.cache/wif-helper"))
        );
        assert_eq!(Env::from_pairs([]).default_cache_dir(), None);
    }

    #[test]
    fn debug_names_variables_but_never_prints_values() {
        let e = Env::from_pairs([("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-very-secret")]);
        let d = format!("{e:?}");
        assert!(d.contains("AWS_SECRET_ACCESS_KEY"), "{d}");
        assert!(!d.contains("very-secret"), "{d}");
    }
}
