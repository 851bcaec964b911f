//! Text from elsewhere (an upstream's error, an error chain) made safe for a
//! one-line message: secrets redacted, control characters flattened, length
//! bounded.
//!
//! Redaction ([`crate::secret::redact`]) comes first: cut first, a secret
//! split at the cut would no longer match and its first half would be kept.

/// At most this many characters of an upstream's error text go into a message.
const MAX_QUOTED: usize = 400;
/// At most this many characters of an error chain.
const MAX_CHAIN: usize = 1000;

/// An upstream-supplied text, redacted, shortened and stripped of control
/// characters, safe to put in a one-line message.
pub(crate) fn quote(text: &str) -> String {
    quote_at_most(text, MAX_QUOTED)
}

/// [`quote`] with another bound: at most `max` characters.
pub(crate) fn quote_at_most(text: &str, max: usize) -> String {
    let text = crate::secret::redact(text);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

/// An error and its sources on one line, what happened first and then why;
/// whitespace collapsed, a cause already contained in the text before it
/// skipped, redacted, at most [`MAX_CHAIN`] characters.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    let text = crate::secret::redact(&parts.join(": "));
    match text.char_indices().nth(MAX_CHAIN) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_shortens_and_flattens() {
        assert_eq!(quote("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        let q = quote(&long);
        assert!(q.chars().count() <= MAX_QUOTED + 1);
        assert!(q.ends_with('…'));
    }

    #[test]
    fn secrets_are_redacted_before_the_text_is_cut() {
        // A remembered secret straddling the cut: cut first, its first half
        // would stay.
        let secret = "straddling-secret-only-text-tests-know";
        crate::secret::remember(secret);
        let text = format!("{}{secret}", "x".repeat(MAX_QUOTED - 10));
        let q = quote(&text);
        assert!(!q.contains(&secret[..10]), "{q}");
        assert!(q.contains("[redacted]"), "{q}");
        let text = format!("{}: {secret}", "y".repeat(MAX_CHAIN - 12));
        let c = error_chain(&std::io::Error::other(text));
        assert!(!c.contains(&secret[..10]), "{c}");
    }

    #[test]
    fn error_chain_joins_causes_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("outer: io  failed", Some(Box::new(E("io failed", None))));
        assert_eq!(error_chain(&e), "outer: io failed");
        let e = E("outer", Some(Box::new(E("inner\nline", None))));
        assert_eq!(error_chain(&e), "outer: inner line");
    }
}
