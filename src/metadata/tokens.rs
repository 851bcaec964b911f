//! Tokens for the metadata server: in memory, one fetch at a time, refreshed
//! before anyone needs a new one.
//!
//! Each distinct token a client asks for (an access token for a scope set,
//! an ID token for an audience) has a [`Slot`]:
//!
//! * **Warm requests never touch the disk**: a slot's token is served from
//!   memory while it is fresh (more than its slack left, the cache's rule:
//!   300 s, or half of a short lifetime).
//! * **Single flight**: a request that finds no fresh token joins the fetch
//!   in flight, or starts one; any number of concurrent requests make one
//!   call of [`TokenService::issued`] between them, which itself reads the
//!   shared on-disk cache first and takes its lock, so other processes are
//!   counted too. The fetch runs as its own task, so a client that hangs up
//!   does not cancel it for the others, and its result (a token or an
//!   error) goes to every waiter. Errors are never kept: the next request
//!   after a failure starts a new fetch.
//! * **Background refresh**: once a slot has a token, a task refreshes it
//!   when [`lead`] seconds are left before the slack, asking the cache for a
//!   token fresh that far ahead, so no request waits on an exchange after the
//!   first. A failed refresh is retried with backoff while the old token is
//!   still fresh. A slot nobody asked for since its last refresh is not
//!   refreshed again (a one-off audience costs one token, not one an hour).
//! * **Bounded**: at most [`MAX_SLOTS`] slots; past that, requests for new
//!   tokens go straight through the disk cache.

use crate::clock::Clock;
use crate::error::{Error, ErrorCode, Result};
use crate::service::{TokenService, Want};
use crate::token::IssuedToken;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Distinct tokens kept in memory.
pub(crate) const MAX_SLOTS: usize = 256;
/// The longest pause between retries of a failed background refresh.
const MAX_RETRY_PAUSE_SECS: i64 = 30;

/// Which token a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// An access token for these scopes (sorted, deduplicated); empty: the
    /// configured `--scopes`.
    Access(Vec<String>),
    /// An ID token for `audience`, with the `email` claim when asked.
    Id {
        audience: String,
        include_email: bool,
    },
}

impl Kind {
    /// What to ask the service for (the scopes are the service's own).
    fn want(&self) -> Want<'_> {
        match self {
            Self::Access(_) => Want::Access,
            Self::Id {
                audience,
                include_email,
            } => Want::Id {
                audience,
                include_email: *include_email,
            },
        }
    }
}

type Outcome = Option<Result<Arc<IssuedToken>>>;

/// One token's memory, fetch in flight and refresher.
struct Slot {
    kind: Kind,
    service: TokenService,
    /// The token. Read on every request (`borrow` is a read lock, so a
    /// preempted reader never holds the others up); [`Tokens::follow`]ers
    /// hear of each new one.
    current: watch::Sender<Option<Arc<IssuedToken>>>,
    flight: Mutex<Option<watch::Receiver<Outcome>>>,
    /// Asked for since the last refresh.
    used: AtomicBool,
    /// A refresher task runs.
    refreshing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long before the slack a token is refreshed in the background: the
/// slack again, or half of what a short lifetime leaves after it (at least
/// one second). A one-hour token is refreshed with 600 s left.
fn lead(t: &IssuedToken) -> i64 {
    let slack = t.slack();
    let life = t.expires_at.saturating_sub(t.issued_at);
    slack.min(life.saturating_sub(slack) / 2).max(1)
}

impl Slot {
    fn fresh(&self, now: i64) -> Option<Arc<IssuedToken>> {
        self.current().filter(|t| t.is_fresh(now))
    }

    fn fresh_ahead(&self, now: i64, ahead: i64) -> Option<Arc<IssuedToken>> {
        self.current().filter(|t| t.is_fresh_ahead(now, ahead))
    }

    fn current(&self) -> Option<Arc<IssuedToken>> {
        self.current.borrow().clone()
    }

    /// Someone [follows](Tokens::follow) it: it is refreshed whether or not
    /// requests ask for it.
    fn followed(&self) -> bool {
        self.current.receiver_count() > 0
    }

    /// Joins the fetch in flight, or starts one asking for a token fresh
    /// `ahead` seconds past the slack, and waits for its outcome.
    async fn fetch(self: &Arc<Self>, tokens: &Arc<Tokens>, ahead: i64) -> Result<Arc<IssuedToken>> {
        let mut rx = {
            let mut flight = lock(&self.flight);
            match flight.as_ref() {
                Some(rx) => rx.clone(),
                None => {
                    // A fetch may have ended since the caller looked.
                    if let Some(t) = self.fresh_ahead(tokens.now(), ahead) {
                        return Ok(t);
                    }
                    let (tx, rx) = watch::channel(None);
                    *flight = Some(rx.clone());
                    let (slot, tokens) = (Arc::clone(self), Arc::clone(tokens));
                    tokio::spawn(async move {
                        let outcome = slot
                            .service
                            .issued(slot.kind.want(), ahead)
                            .await
                            .map(Arc::new);
                        if let Ok(t) = &outcome {
                            slot.current.send_replace(Some(Arc::clone(t)));
                        }
                        *lock(&slot.flight) = None;
                        if outcome.is_ok() {
                            tokens.start_refresher(&slot);
                        }
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::new(ErrorCode::Internal, "the token fetch task ended early"))?;
        outcome
            .clone()
            .unwrap_or_else(|| Err(Error::new(ErrorCode::Internal, "no token fetched")))
    }
}

/// How often the AWS identity behind the server is read again (the AWS
/// config and credentials files, the token files): tokens held in memory
/// are dropped when it changes, so none outlives its identity by more.
pub(crate) const IDENTITY_RECHECK: Duration = Duration::from_secs(1);

/// The tokens of one metadata server.
pub(crate) struct Tokens {
    base: TokenService,
    clock: Arc<dyn Clock>,
    slots: RwLock<HashMap<Kind, Arc<Slot>>>,
    /// The identity the slots' tokens were minted for.
    identity: Mutex<String>,
    /// When it was last read, in milliseconds since `born` (an atomic, so
    /// the request path takes no lock in between).
    identity_read_ms: AtomicU64,
    born: std::time::Instant,
    /// Requests are being served past [`MAX_SLOTS`] (said once).
    overflowing: AtomicBool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("slots", &self.slots.read().map_or(0, |s| s.len()))
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens from `base` (its settings: the default scopes and lifetime).
    pub(crate) fn new(base: TokenService) -> Arc<Self> {
        Arc::new(Self {
            clock: Arc::clone(base.clock()),
            identity: Mutex::new(base.identity_digest()),
            identity_read_ms: AtomicU64::new(0),
            born: std::time::Instant::now(),
            overflowing: AtomicBool::new(false),
            base,
            slots: RwLock::new(HashMap::new()),
        })
    }

    /// Now, Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// A fresh token of `kind`: from memory, or the one fetch in flight.
    pub(crate) async fn get(self: &Arc<Self>, kind: &Kind) -> Result<Arc<IssuedToken>> {
        self.follow_identity();
        let slot = match self.slot(kind)? {
            Some(slot) => slot,
            None => return self.unslotted(kind).await,
        };
        // Written only when it changes: every request of every worker reads
        // this line, and a store on each would move it between CPUs.
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        if let Some(t) = slot.fresh(self.now()) {
            return Ok(t);
        }
        slot.fetch(self, 0).await
    }

    /// Drops every token held in memory when the AWS identity behind the
    /// server has changed (an edited profile, a rotated container token …):
    /// a token must never reach an identity it was not minted for. Read at
    /// most every [`IDENTITY_RECHECK`]; the disk cache's keys follow the
    /// identity by themselves. Followers hear `None`. Returns whether it
    /// dropped them.
    pub(crate) fn follow_identity(&self) -> bool {
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let read_ms = self.identity_read_ms.load(Ordering::Relaxed);
        let recheck = u64::try_from(IDENTITY_RECHECK.as_millis()).unwrap_or(u64::MAX);
        // One request reads it again; the others go on meanwhile.
        if now_ms.saturating_sub(read_ms) < recheck
            || self
                .identity_read_ms
                .compare_exchange(read_ms, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let digest = self.base.identity_digest();
        let mut seen = lock(&self.identity);
        if *seen == digest {
            return false;
        }
        *seen = digest;
        tracing::info!("the AWS identity changed: tokens held in memory are dropped");
        let dropped =
            std::mem::take(&mut *self.slots.write().unwrap_or_else(PoisonError::into_inner));
        // Also out of reach of those still holding a slot (a waiter, a
        // refresher, which then stops, a follower).
        for slot in dropped.values() {
            slot.current.send_replace(None);
        }
        true
    }

    /// The slot for `kind`, made on first use; `None` when [`MAX_SLOTS`]
    /// are taken by tokens still in use.
    fn slot(&self, kind: &Kind) -> Result<Option<Arc<Slot>>> {
        // Every request: a read lock.
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
        {
            return Ok(Some(Arc::clone(s)));
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get(kind) {
            return Ok(Some(Arc::clone(s)));
        }
        if slots.len() >= MAX_SLOTS {
            let now = self.now();
            slots.retain(|_, s| {
                s.refreshing.load(Ordering::Relaxed)
                    || s.followed()
                    || lock(&s.flight).is_some()
                    || s.fresh(now).is_some()
            });
            if slots.len() >= MAX_SLOTS {
                return Ok(None);
            }
        }
        let slot = Arc::new(Slot {
            service: self.service_for(kind)?,
            kind: kind.clone(),
            current: watch::Sender::new(None),
            flight: Mutex::new(None),
            used: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        });
        slots.insert(kind.clone(), Arc::clone(&slot));
        self.overflowing.store(false, Ordering::Relaxed);
        Ok(Some(slot))
    }

    fn service_for(&self, kind: &Kind) -> Result<TokenService> {
        match kind {
            Kind::Access(scopes) if !scopes.is_empty() => self.base.with_scopes(scopes.clone()),
            _ => Ok(self.base.clone()),
        }
    }

    /// A token with no slot (too many distinct ones): through the disk cache.
    /// Said once while the slots stay full, not on every such request.
    async fn unslotted(&self, kind: &Kind) -> Result<Arc<IssuedToken>> {
        if !self.overflowing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max = MAX_SLOTS,
                "too many distinct tokens in memory; serving the others from the disk cache"
            );
        }
        let service = self.service_for(kind)?;
        service.issued(kind.want(), 0).await.map(Arc::new)
    }

    /// Every new token of `kind` from now on (the receiver has seen the
    /// current one), or `None` when the slot is dropped with its AWS
    /// identity. While the receiver lives the token is refreshed ahead of
    /// its slack, asked for or not: what `exec` writes to its token file.
    /// The refresher stops when a refresh keeps failing until the token is
    /// stale (as for any slot); a [`get`](Self::get) starts it again.
    pub(crate) fn follow(&self, kind: &Kind) -> Result<watch::Receiver<Option<Arc<IssuedToken>>>> {
        let slot = self.slot(kind)?.ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("more than {MAX_SLOTS} distinct tokens in memory"),
            )
        })?;
        Ok(slot.current.subscribe())
    }

    /// Starts `slot`'s refresher unless one runs.
    fn start_refresher(self: &Arc<Self>, slot: &Arc<Slot>) {
        if slot
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            slot.used.store(false, Ordering::Relaxed);
            let (tokens, slot) = (Arc::clone(self), Arc::clone(slot));
            tokio::spawn(async move { tokens.refresh_loop(&slot).await });
        }
    }

    /// Refreshes `slot` [`lead`] seconds before its slack while it is used.
    async fn refresh_loop(self: &Arc<Self>, slot: &Arc<Slot>) {
        let mut failures: u32 = 0;
        while let Some(t) = slot.current() {
            let ahead = lead(&t);
            let now = self.now();
            let pause = if failures == 0 {
                t.expires_at
                    .saturating_sub(t.slack())
                    .saturating_sub(ahead)
                    .saturating_sub(now)
            } else {
                (1i64 << failures.min(5)).min(MAX_RETRY_PAUSE_SECS)
            };
            // At least a second between rounds: never a hot loop.
            tokio::time::sleep(Duration::from_secs(
                u64::try_from(pause.max(1)).unwrap_or(1),
            ))
            .await;
            if slot.current().is_none() {
                // Dropped with its AWS identity: not this slot's to renew.
                break;
            }
            if failures == 0 && !slot.used.swap(false, Ordering::Relaxed) && !slot.followed() {
                tracing::debug!("token not asked for since its last refresh; not refreshing it");
                break;
            }
            let now = self.now();
            if slot.current().is_some_and(|c| c.is_fresh_ahead(now, ahead)) {
                failures = 0;
                continue;
            }
            match slot.fetch(self, ahead).await {
                Ok(new) => {
                    tracing::debug!(
                        expires_at = new.expires_at,
                        "token refreshed in the background"
                    );
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "background token refresh failed; retrying");
                    if slot.fresh(self.now()).is_none() {
                        // Requests now fetch in the foreground; they restart this.
                        break;
                    }
                }
            }
        }
        slot.refreshing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Env;
    use crate::secret::Secret;
    use crate::service::ServiceSettings;

    fn tokens() -> Arc<Tokens> {
        let provider = "projects/1/locations/global/workloadIdentityPools/p/providers/aws"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s = ServiceSettings::new(provider, "app@p.iam.gserviceaccount.com");
        s.cache.disabled = true;
        Tokens::new(TokenService::new(s, Env::from_pairs([])).unwrap_or_else(|e| panic!("{e}")))
    }

    fn audience(i: usize) -> Kind {
        Kind::Id {
            audience: format!("https://svc-{i}.example.com"),
            include_email: false,
        }
    }

    fn slot_of(tokens: &Tokens, kind: &Kind) -> Option<Arc<Slot>> {
        tokens.slot(kind).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Past [`MAX_SLOTS`] tokens still in use, a new kind gets no slot (it
    /// goes through the disk cache); slots whose token went stale are given
    /// up first, and the fresh ones are kept.
    #[test]
    fn slots_are_bounded_and_stale_ones_give_way() {
        let tokens = tokens();
        let now = tokens.now();
        let full: Vec<Arc<Slot>> = (0..MAX_SLOTS)
            .map(|i| {
                let slot = slot_of(&tokens, &audience(i)).unwrap_or_else(|| panic!("slot {i}"));
                slot.current.send_replace(Some(Arc::new(t(now, 3600))));
                slot
            })
            .collect();
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_none());
        // The same kind again is the same slot, full or not.
        let again = slot_of(&tokens, &audience(7)).unwrap_or_else(|| panic!("slot 7"));
        assert!(Arc::ptr_eq(&again, &full[7]));
        // One token expires: its slot gives way to the new kind.
        full[3]
            .current
            .send_replace(Some(Arc::new(t(now - 7200, 3600))));
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_some());
        let slots = tokens.slots.read().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(slots.len(), MAX_SLOTS);
        assert!(!slots.contains_key(&audience(3)));
        assert!(slots.contains_key(&audience(4)));
    }

    /// A slot with a fetch in flight, a refresher running or a follower is
    /// kept even without a fresh token: they still need it.
    #[test]
    fn a_slot_being_fetched_or_refreshed_is_not_given_up() {
        let tokens = tokens();
        let full: Vec<Arc<Slot>> = (0..MAX_SLOTS)
            .map(|i| slot_of(&tokens, &audience(i)).unwrap_or_else(|| panic!("slot {i}")))
            .collect();
        for slot in &full {
            slot.refreshing.store(true, Ordering::Relaxed);
        }
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_none());
        full[0].refreshing.store(false, Ordering::Relaxed);
        let (_tx, rx) = watch::channel(None);
        *lock(&full[0].flight) = Some(rx);
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_none());
        *lock(&full[0].flight) = None;
        let follower = full[0].current.subscribe();
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_none());
        drop(follower);
        assert!(slot_of(&tokens, &audience(MAX_SLOTS)).is_some());
    }

    #[test]
    fn a_kind_asks_for_its_own_token() {
        assert!(matches!(
            Kind::Access(vec!["s".into()]).want(),
            Want::Access
        ));
        let id = Kind::Id {
            audience: "https://a".into(),
            include_email: true,
        };
        assert!(matches!(
            id.want(),
            Want::Id {
                audience: "https://a",
                include_email: true
            }
        ));
    }

    fn t(issued: i64, life: i64) -> IssuedToken {
        IssuedToken {
            token: Secret::new("t"),
            issued_at: issued,
            expires_at: issued + life,
        }
    }

    #[test]
    fn refresh_starts_before_the_slack_is_reached() {
        // One hour: slack 300 s, refreshed with 600 s left.
        assert_eq!(lead(&t(0, 3600)), 300);
        // Two minutes: slack 60 s, refreshed with 90 s left.
        assert_eq!(lead(&t(0, 120)), 30);
        // Tiny lifetimes still get a second.
        assert_eq!(lead(&t(0, 2)), 1);
        assert_eq!(lead(&t(0, 0)), 1);
    }
}
