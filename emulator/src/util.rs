//! Small helpers: randomness, identifiers, time formats, XML escaping, form parsing.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;
use time::macros::format_description;

/// RFC 4648 base32 alphabet (AWS key ids use it).
pub(crate) const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Fills `buf` from the OS RNG (via aws-lc); if that ever fails, from a hash
/// of the time and a counter (good enough for an emulator, never panics).
pub(crate) fn fill_random(buf: &mut [u8]) {
    if aws_lc_rs::rand::fill(buf).is_ok() {
        return;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for chunk in buf.chunks_mut(32) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let digest = Sha256::digest(format!("{n}/{t}").as_bytes());
        chunk.copy_from_slice(&digest[..chunk.len()]);
    }
}

fn random_vec(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill_random(&mut v);
    v
}

/// `n` random characters of the base32 alphabet.
pub(crate) fn random_base32(n: usize) -> String {
    random_vec(n)
        .iter()
        .map(|b| BASE32[usize::from(b % 32)] as char)
        .collect()
}

/// Standard base64 (with `+`, `/`, `=`) of `n` random bytes.
pub(crate) fn random_b64(n: usize) -> String {
    STANDARD.encode(random_vec(n))
}

/// URL-safe unpadded base64 of `n` random bytes.
pub(crate) fn random_b64url(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_vec(n))
}

/// Lowercase hex of `n` random bytes.
pub(crate) fn random_hex(n: usize) -> String {
    hex::encode(random_vec(n))
}

/// A random version-4 UUID string.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `2026-01-02T03:04:05Z` (RFC 3339, UTC, no fraction).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// `20260102T030405Z` (SigV4 `x-amz-date`).
pub(crate) fn amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// Parses a SigV4 `x-amz-date` (`20260102T030405Z`).
pub(crate) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|p| p.assume_utc())
}

/// Parses a SigV4 scope date (`20260102`) to midnight UTC.
pub(crate) fn parse_scope_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]");
    if s.len() != 8 {
        return None;
    }
    time::Date::parse(s, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// Escapes text for XML element content and attributes.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Parses an `application/x-www-form-urlencoded` body into ordered pairs.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// First value of `key` in form pairs.
pub(crate) fn form_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.678 UTC);
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
        assert_eq!(amz_date(t), "20260102T030405Z");
        assert_eq!(
            parse_amz_date("20260102T030405Z"),
            Some(time::macros::datetime!(2026-01-02 03:04:05 UTC))
        );
        assert_eq!(
            parse_scope_date("20260102"),
            Some(time::macros::datetime!(2026-01-02 00:00 UTC))
        );
        assert!(parse_amz_date("2026-01-02").is_none());
        assert_eq!(uuid_v4().len(), 36);
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
