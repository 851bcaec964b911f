//! A string that must never be printed by accident, and the last line of
//! defence for text that is printed.
//!
//! Tokens, AWS secret keys and session tokens travel through wif-helper as
//! [`Secret`]. `Debug` and `Display` print `[redacted]`; the only way to the
//! value is [`Secret::expose`], which keeps every place that hands a secret on
//! (stdout, an HTTP request, the cache file) easy to find with grep.
//!
//! Every secret value the process holds is also remembered (see [`remember`])
//! so that [`redact`] can scrub it from text that comes from elsewhere: error
//! messages quoting AWS or Google (or a proxy pretending to be them) and log
//! lines. [`redact`] also masks anything shaped like a JWT, a Google access
//! token, an AWS session token or a SigV4 signature. Every
//! [`crate::error::Error`] message and every log line passes through it.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

/// What replaces a secret in printed text.
pub(crate) const REDACTED: &str = "[redacted]";
/// Shorter values are not remembered: they could match ordinary words.
const MIN_REMEMBERED: usize = 8;
/// A long-running process keeps at most this many values of each tier (the
/// newest): keys are few and rotate hourly at most, tokens are many.
const MAX_KEYS: usize = 1024;
const MAX_TOKENS: usize = 256;

/// Credentials ([`remember`]): never pushed out by a flood of tokens.
static KEYS: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// Token values ([`Secret::new`]).
static TOKENS: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// A secret string with a redacted `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (and remembers it for [`redact`]).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        push(&TOKENS, MAX_TOKENS, &value);
        Self(value)
    }

    /// The value itself; call only where the secret is meant to leave.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Like [`Secret::new`]: a secret read from disk is remembered too.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Remembers a credential (an AWS secret key, a session token) so
/// [`redact`] removes it from printed text.
pub(crate) fn remember(value: &str) {
    push(&KEYS, MAX_KEYS, value);
}

fn push(tier: &Mutex<VecDeque<String>>, max: usize, value: &str) {
    if value.len() < MIN_REMEMBERED {
        return;
    }
    let mut known = tier.lock().unwrap_or_else(|p| p.into_inner());
    if known.iter().any(|k| k == value) {
        return;
    }
    if known.len() >= max {
        known.pop_front();
    }
    known.push_back(value.to_owned());
}

/// Remembers the secrets an environment carries (AWS keys and tokens).
pub(crate) fn remember_env(env: &crate::env::Env) {
    for var in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ] {
        if let Some(v) = env.get(var) {
            remember(v);
        }
    }
}

/// `text` with every remembered secret and everything shaped like a token,
/// session token or signature replaced by `[redacted]`.
pub(crate) fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for tier in [&KEYS, &TOKENS] {
        let known = tier.lock().unwrap_or_else(|p| p.into_inner());
        for k in known.iter() {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), REDACTED);
            }
        }
    }
    redact_shapes(&out)
}

/// Characters of a token-like run: base64, base64url, dots and `=`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | '=')
}

/// Where, in a token-like run, a secret starts (so the rest is masked).
fn secret_start(run: &str) -> Option<usize> {
    // A JWT: a base64url JSON header (`eyJ…`, 10+ characters), a dot, more.
    let jwt = run.match_indices("eyJ").map(|(i, _)| i).find(|&i| {
        let mut parts = run.get(i..).unwrap_or_default().split('.');
        parts.next().is_some_and(|h| h.len() >= 10) && parts.next().is_some_and(|p| !p.is_empty())
    });
    let prefixed = ["ya29.", "IQoJb3JpZ2lu", "FwoGZXIvYXdz"]
        .iter()
        .filter_map(|p| run.find(p))
        .min();
    let signature = run
        .find("Signature=")
        .map(|i| i + "Signature=".len())
        .filter(|&i| i < run.len());
    [jwt, prefixed, signature].into_iter().flatten().min()
}

fn redact_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_token_char) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let end = from.find(|c: char| !is_token_char(c)).unwrap_or(from.len());
        let (run, after) = from.split_at(end);
        match secret_start(run) {
            Some(i) => {
                out.push_str(run.get(..i).unwrap_or_default());
                out.push_str(REDACTED);
            }
            None => out.push_str(run),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("ya29.very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(!format!("{s}").contains("very-secret"));
        assert_eq!(s.expose(), "ya29.very-secret");
    }

    #[test]
    fn remembered_values_are_scrubbed_wherever_they_appear() {
        remember("k3y-material-only-this-test-knows");
        let text = "AWS said: bad key k3y-material-only-this-test-knows (really)";
        assert_eq!(redact(text), "AWS said: bad key [redacted] (really)");
        remember("wJalrXUtnFEMI/K7MDENG+only-this-test");
        assert_eq!(
            redact("x=wJalrXUtnFEMI/K7MDENG+only-this-test;"),
            "x=[redacted];"
        );
        // Too short to be remembered: ordinary words survive.
        remember("short");
        assert_eq!(redact("a short word"), "a short word");
    }

    // One test, so no other test's tokens are pushed out meanwhile.
    #[test]
    fn tokens_are_remembered_and_a_flood_of_them_never_pushes_out_a_credential() {
        let s: Secret = serde_json::from_str("\"from-disk-only-this-test-knows\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.expose(), "from-disk-only-this-test-knows");
        let t = Secret::new("fresh-token-only-this-test-knows");
        assert_eq!(
            redact(&format!(
                "echo from-disk-only-this-test-knows {}",
                t.expose()
            )),
            "echo [redacted] [redacted]"
        );
        remember("credential-that-must-stay-remembered");
        for i in 0..(MAX_TOKENS * 3) {
            let _ = Secret::new(format!("flood-token-number-{i}"));
        }
        assert_eq!(
            redact("key credential-that-must-stay-remembered"),
            "key [redacted]"
        );
    }

    #[test]
    fn token_shapes_are_masked_and_identifiers_are_not() {
        let cases = [
            (
                "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here",
                "token [redacted] here",
            ),
            (
                "bearer ya29.a0AfB_byC-xyz rejected",
                "bearer [redacted] rejected",
            ),
            (
                "Credential=AKIDEXAMPLE/20260102/us-east-2/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
                "Credential=AKIDEXAMPLE/20260102/us-east-2/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=[redacted]",
            ),
            (
                "session IQoJb3JpZ2luX2VjEJr//////////wEaCXVz",
                "session [redacted]",
            ),
            ("old FwoGZXIvYXdzEJr/abc", "old [redacted]"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_shapes(text), want, "{text}");
        }
        for keep in [
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/p/providers/q",
            "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/attribute.aws_role/arn:aws:sts::111122223333:assumed-role/r",
            "app@my-project.iam.gserviceaccount.com needs roles/iam.workloadIdentityUser",
            "constraints/iam.allowServiceAccountCredentialLifetimeExtension",
            "HTTP 403 PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied",
            "keyJ.x",
            "Signature= (empty)",
            "",
        ] {
            assert_eq!(redact_shapes(keep), keep);
        }
    }
}
