//! The token every upstream returns: a secret with its issue and expiry
//! times, in Unix seconds UTC.
//!
//! AWS `GetWebIdentityToken`, Google STS and IAM Credentials all answer with
//! an [`IssuedToken`]; the cache stores it, the executable protocol and the
//! public [`crate::service::Token`] are made from it. Freshness (the 300 s
//! refresh slack) and plausibility checks live here, once.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Refresh this long before expiry (the product's promise: 300 s).
pub(crate) const REFRESH_SLACK_SECS: i64 = 300;
/// No token wif-helper handles lives longer (Google's longest is 12 h); a
/// longer claimed lifetime means a broken clock or a forged answer.
pub(crate) const MAX_TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;
/// How far in the future an entry's issue time may be (clock adjustments,
/// another host's clock on a shared volume) before it is not believed.
pub(crate) const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// Google's ID tokens live one hour.
pub(crate) const ID_TOKEN_LIFETIME_SECS: i64 = 3600;
/// 9999-12-31T23:59:59Z: the last instant every expiry must be before.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// A token with its wall-clock issue and expiry times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IssuedToken {
    /// The token.
    pub(crate) token: Secret,
    /// When it stops working, Unix seconds UTC.
    pub(crate) expires_at: i64,
    /// When it was obtained, Unix seconds UTC.
    pub(crate) issued_at: i64,
}

impl IssuedToken {
    /// The refresh slack of this token: [`REFRESH_SLACK_SECS`], or half the
    /// lifetime of a token shorter-lived than twice that.
    pub(crate) fn slack(&self) -> i64 {
        let lifetime = self.expires_at.saturating_sub(self.issued_at);
        REFRESH_SLACK_SECS.min(lifetime / 2)
    }

    /// Whether the token can still be served at `now`: issued no later than
    /// [`MAX_CLOCK_SKEW_SECS`] from now (an entry from the future means a
    /// clock that was wrong, or a forgery), and more than its
    /// [`slack`](Self::slack) left.
    pub(crate) fn is_fresh(&self, now: i64) -> bool {
        self.is_fresh_ahead(now, 0)
    }

    /// [`is_fresh`](Self::is_fresh) with `ahead` more seconds required: what
    /// a refresher that wants a token before the slack is reached asks for
    /// (the metadata server's background refresh).
    pub(crate) fn is_fresh_ahead(&self, now: i64, ahead: i64) -> bool {
        self.issued_at <= now.saturating_add(MAX_CLOCK_SKEW_SECS)
            && self.expires_at.saturating_sub(now) > self.slack().saturating_add(ahead.max(0))
    }

    /// The token with its expiry no later than `max_lifetime` seconds after
    /// it was issued (plus [`MAX_CLOCK_SKEW_SECS`] between the upstream's
    /// clock and ours): what was asked for bounds what an upstream's
    /// absolute expiry time can claim, whatever its clock says.
    pub(crate) fn capped(mut self, max_lifetime: i64) -> Self {
        self.expires_at = self.expires_at.min(
            self.issued_at
                .saturating_add(max_lifetime)
                .saturating_add(MAX_CLOCK_SKEW_SECS),
        );
        self
    }

    /// Checks what every token wif-helper stores or prints must be: one
    /// non-empty run of printable ASCII without spaces (so it fits on one
    /// line, in an HTTP header and in JSON unescaped), issued before it
    /// expires, living at most [`MAX_TOKEN_LIFETIME_SECS`], expiring before
    /// the year 10000. The error says what is wrong, never the token.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let t = self.token.expose();
        if t.is_empty() {
            return Err("the token is empty".into());
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token has spaces, control or non-ASCII characters".into());
        }
        if !(0..=MAX_UNIX_SECS).contains(&self.issued_at)
            || !(0..=MAX_UNIX_SECS).contains(&self.expires_at)
        {
            return Err(format!(
                "the expiry ({}) or issue time ({}) is not a plausible Unix time",
                self.expires_at, self.issued_at
            ));
        }
        if self.expires_at.saturating_sub(self.issued_at) > MAX_TOKEN_LIFETIME_SECS {
            return Err(format!(
                "the token claims to live {} s, more than {MAX_TOKEN_LIFETIME_SECS} s; check the system clock",
                self.expires_at.saturating_sub(self.issued_at)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(now: i64, life: i64) -> IssuedToken {
        IssuedToken {
            token: Secret::new(format!("tok-{now}")),
            expires_at: now + life,
            issued_at: now,
        }
    }

    #[test]
    fn freshness_uses_the_300s_slack_or_half_a_short_lifetime() {
        let t = token(1000, 3600);
        assert!(t.is_fresh(1000 + 3600 - 301));
        assert!(!t.is_fresh(1000 + 3600 - 300));
        let short = token(1000, 120);
        assert!(short.is_fresh(1059));
        assert!(!short.is_fresh(1060));
    }

    #[test]
    fn fresh_ahead_asks_for_more_than_the_slack() {
        let t = token(1000, 3600);
        assert!(t.is_fresh_ahead(1000 + 3600 - 601, 300));
        assert!(!t.is_fresh_ahead(1000 + 3600 - 600, 300));
        assert_eq!(
            t.is_fresh_ahead(1000 + 3600 - 301, 0),
            t.is_fresh(1000 + 3600 - 301)
        );
        // A negative lead is no lead.
        assert!(!t.is_fresh_ahead(1000 + 3600 - 300, -100));
    }

    #[test]
    fn an_entry_issued_in_the_future_is_not_fresh() {
        let t = token(1000 + 86_400, 6 * 86_400);
        assert!(!t.is_fresh(1000));
        assert!(token(1000 + MAX_CLOCK_SKEW_SECS, 3600).is_fresh(1000));
        assert!(!token(1001 + MAX_CLOCK_SKEW_SECS, 3600).is_fresh(1000));
    }

    #[test]
    fn capping_never_extends_and_bounds_the_lifetime() {
        assert_eq!(
            token(1000, 6 * 86_400).capped(3600).expires_at,
            4600 + MAX_CLOCK_SKEW_SECS
        );
        assert_eq!(token(1000, 600).capped(3600).expires_at, 1600);
        // A second or two between AWS's clock and ours changes nothing.
        assert_eq!(token(1000, 3602).capped(3600).expires_at, 4602);
    }
}
