//! One deadline per run, and the per-attempt timeout policies of the two
//! kinds of upstream call made under it.
//!
//! A run (one `executable` answer, one `access_token()`) has a single
//! [`Deadline`]; waiting for another process's cache lock, loading AWS
//! credentials and every HTTP attempt all fit inside it. Each upstream
//! attempt gets only part of what is left, so a stalled attempt is abandoned
//! while there is still time to retry:
//!
//! * [`Deadline::aws_attempt`]: 60 % of what is left, at least 1 s. The AWS
//!   SDK fixes this when the configuration is loaded and retries by itself
//!   (standard mode); with no higher floor, one attempt stalled under a 5 s
//!   budget is cut at 3 s and the retry still fits.
//! * [`Deadline::google_attempt`]: 60 % of what is left, at least 5 s (or
//!   all of it when less is left). `http::send_with_retry` recomputes it
//!   before every attempt and checks the deadline itself, so a slow but
//!   working Google endpoint is not cut off early.

use crate::error::{Error, ErrorCode, Result};
use std::future::Future;
use std::time::{Duration, Instant};

/// When a run must be finished, successfully or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `budget` from now.
    pub(crate) fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The instant itself.
    pub(crate) fn instant(self) -> Instant {
        self.0
    }

    /// Time left (zero once passed).
    pub(crate) fn left(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The per-attempt timeout of AWS SDK calls made now.
    pub(crate) fn aws_attempt(self) -> Duration {
        aws_attempt_timeout(self.left())
    }

    /// The per-attempt timeout of a Google call made now.
    pub(crate) fn google_attempt(self) -> Duration {
        google_attempt_timeout(self.left())
    }

    /// Runs `work` until the deadline, failing with [`ErrorCode::Timeout`].
    pub(crate) async fn within<T>(self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let left = self.left();
        match tokio::time::timeout(left, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorCode::Timeout,
                format!(
                    "gave up after the {} ms deadline; AWS, Google STS or IAM Credentials did not answer in \
                     time, or another wif-helper process held the cache lock (raise --timeout-millis, or check \
                     connectivity)",
                    left.as_millis()
                ),
            )),
        }
    }

    /// Runs `work` on a fresh single-threaded runtime, until the deadline.
    pub(crate) fn block_on<T>(self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("cannot start the async runtime: {e}"),
                )
            })?;
        rt.block_on(self.within(work))
    }
}

/// AWS policy: 60 % of `left`, at least 1 s.
pub(crate) fn aws_attempt_timeout(left: Duration) -> Duration {
    left.mul_f64(0.6).max(Duration::from_secs(1))
}

/// Google policy: 60 % of `left`, but at least 5 s (or all of `left` when
/// less is left).
pub(crate) fn google_attempt_timeout(left: Duration) -> Duration {
    left.mul_f64(0.6).max(left.min(Duration::from_secs(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_attempts_leave_room_for_a_retry_but_never_pass_the_deadline() {
        let g = google_attempt_timeout;
        assert_eq!(g(Duration::from_secs(30)), Duration::from_secs(18));
        assert_eq!(g(Duration::from_secs(6)), Duration::from_secs(5));
        assert_eq!(g(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(g(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn aws_attempts_under_a_5s_budget_leave_room_for_a_retry() {
        let a = aws_attempt_timeout;
        assert_eq!(a(Duration::from_secs(5)), Duration::from_secs(3));
        assert_eq!(a(Duration::from_secs(30)), Duration::from_secs(18));
        assert_eq!(a(Duration::ZERO), Duration::from_secs(1));
        // Under the same 5 s budget the Google policy would take all of it.
        assert_eq!(
            google_attempt_timeout(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[tokio::test]
    async fn within_gives_up_at_the_deadline_with_a_timeout() {
        let d = Deadline::after(Duration::from_millis(50));
        let r: Result<()> = d
            .within(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        let e = r.err().map(|e| e.code());
        assert_eq!(e, Some(ErrorCode::Timeout));
        assert!(d.left().is_zero());
    }
}
