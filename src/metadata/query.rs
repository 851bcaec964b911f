//! Query strings as the libraries send them.
//!
//! Python, Go, Java, .NET and Rust URL-encode query values; Node's
//! google-auth-library puts the ID-token audience into the URL as it is
//! (`…/identity?format=full&audience=${targetAudience}`), so an audience
//! with its own `&` or `=` arrives split. The rule here: after `audience=`,
//! every `&`-separated part that is not one of the identity endpoint's other
//! parameters (`format`, `licenses`) belongs to the audience. `+` is kept as
//! a `+` (an audience never holds a space, and Node's raw `+` must survive);
//! `%XX` is decoded.

use percent_encoding::percent_decode_str;

/// The parameters the identity endpoint knows besides `audience`.
const IDENTITY_PARAMS: [&str; 2] = ["format", "licenses"];

/// A parsed query: names and decoded values, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw` (the part after `?`, if any).
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut raw_pairs: Vec<(String, String)> = Vec::new();
        let mut in_audience = false;
        for part in raw.unwrap_or_default().split('&') {
            if part.is_empty() {
                continue;
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = decode(name);
            if in_audience && name != "audience" && !IDENTITY_PARAMS.contains(&name.as_str()) {
                // Part of an audience Node did not encode.
                if let Some((_, v)) = raw_pairs.last_mut() {
                    v.push('&');
                    v.push_str(part);
                }
                continue;
            }
            in_audience = name == "audience";
            raw_pairs.push((name, value.to_owned()));
        }
        Self {
            pairs: raw_pairs
                .into_iter()
                .map(|(n, v)| (n, decode(&v)))
                .collect(),
        }
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is `true` (any case).
    pub(crate) fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The scopes of a `?scopes=` value (comma- or space-separated, as
/// libraries join them), sorted and without duplicates.
pub(crate) fn scopes(value: &str) -> Vec<String> {
    let mut v: Vec<String> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_values_are_decoded() {
        // Python's urlencode, Java's GenericUrl, Rust's reqwest.
        let q = Query::parse(Some(
            "audience=https%3A%2F%2Fsvc.example.com%2Fa%3Fb%3Dc%26d%3De&format=full",
        ));
        assert_eq!(q.get("audience"), Some("https://svc.example.com/a?b=c&d=e"));
        assert_eq!(q.get("format"), Some("full"));
        assert_eq!(q.get("licenses"), None);
    }

    #[test]
    fn nodes_unencoded_audience_is_read_whole() {
        let q = Query::parse(Some(
            "format=full&audience=https://svc.example.com/a?b=c&d=e",
        ));
        assert_eq!(q.get("audience"), Some("https://svc.example.com/a?b=c&d=e"));
        assert_eq!(q.get("format"), Some("full"));
        // A known parameter after it still ends it.
        let q = Query::parse(Some("audience=https://x/?y=1&licenses=TRUE&format=full"));
        assert_eq!(q.get("audience"), Some("https://x/?y=1"));
        assert_eq!(q.get("licenses"), Some("TRUE"));
        assert_eq!(q.get("format"), Some("full"));
    }

    #[test]
    fn plus_is_a_plus_and_odd_input_does_not_panic() {
        let q = Query::parse(Some("audience=a+b"));
        assert_eq!(q.get("audience"), Some("a+b"));
        for raw in [
            "",
            "&",
            "=",
            "&&=&",
            "a",
            "%",
            "%zz=%ff",
            "audience=&audience=x",
        ] {
            let _ = Query::parse(Some(raw));
        }
        assert_eq!(Query::parse(None), Query::default());
        assert!(Query::parse(Some("recursive=TRUE")).is_true("recursive"));
        assert!(!Query::parse(Some("recursive=1")).is_true("recursive"));
    }

    #[test]
    fn scopes_are_split_sorted_and_deduplicated() {
        assert_eq!(
            scopes("https://b,https://a https://b,,"),
            ["https://a", "https://b"]
        );
        assert!(scopes("").is_empty());
    }
}
