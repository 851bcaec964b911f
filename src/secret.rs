//! A string that must never be printed by accident.
//!
//! Tokens, AWS secret keys and session tokens travel through wif-helper as
//! [`Secret`]. `Debug` and `Display` print `[redacted]`; the only way to the
//! value is [`Secret::expose`], which keeps every place that hands a secret on
//! (stdout, an HTTP request, the cache file) easy to find with grep.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret string with a redacted `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call only where the secret is meant to leave.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("ya29.very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(!format!("{s}").contains("very-secret"));
        assert_eq!(s.expose(), "ya29.very-secret");
    }
}
