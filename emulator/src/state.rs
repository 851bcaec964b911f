//! Shared emulator state: the world (config and keys), the clock, issued
//! credentials and tokens, counters, the request log and pending faults.

use crate::config::{EmulatorConfig, RoleConfig};
use crate::jwt::SigningKey;
use crate::principal::Principal;
use crate::sigv4::KeyInfo;
use crate::util;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use time::{Duration, OffsetDateTime};

/// Most recent requests kept in the log.
const LOG_CAPACITY: usize = 100_000;

/// One request the emulator answered. Never contains secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// Operation name (`sts:GetCallerIdentity`, ...) or `unknown`.
    pub operation: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// Error code answered, if any (`SignatureDoesNotMatch`, `invalid_grant`, ...).
    pub error: Option<String>,
    /// When (emulator clock).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// Makes the next `count` calls of `operation` answer `status` with `body`
/// after `delay_ms`; `status` 0 only delays, then answers normally.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Operation name, e.g. `google:sts.token`.
    pub operation: String,
    /// How many calls are affected.
    pub count: u32,
    /// HTTP status to answer; 0 = answer normally after the delay.
    pub status: u16,
    /// Response body.
    pub body: String,
    /// Delay before answering, in milliseconds.
    pub delay_ms: u64,
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            operation: String::new(),
            count: 1,
            status: 0,
            body: String::new(),
            delay_ms: 0,
        }
    }
}

/// Temporary AWS credentials handed out by one of the credential sources.
#[derive(Clone, Debug)]
pub(crate) struct IssuedCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: String,
    pub(crate) expiration: OffsetDateTime,
    pub(crate) principal: Principal,
}

/// A federated access token issued by the emulated Google STS.
#[derive(Clone, Debug)]
pub(crate) struct FederatedToken {
    /// `principal://iam.googleapis.com/.../subject/SUB`.
    pub(crate) principal: String,
    /// `principalSet://...` identifiers the principal belongs to.
    pub(crate) principal_sets: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires: OffsetDateTime,
}

#[derive(Default)]
struct State {
    clock: Option<OffsetDateTime>,
    outbound_federation: bool,
    counters: BTreeMap<String, u64>,
    log: VecDeque<RequestRecord>,
    faults: VecDeque<Fault>,
    keys: HashMap<String, KeyInfo>,
    imds_tokens: HashMap<String, OffsetDateTime>,
    federated: HashMap<String, FederatedToken>,
    secrets: Vec<String>,
}

/// Everything the HTTP handlers and the [`crate::Emulator`] handle share.
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) url: String,
    pub(crate) aws_issuer_key: SigningKey,
    pub(crate) eks_key: SigningKey,
    pub(crate) google_key: SigningKey,
    pub(crate) container_token: String,
    state: Mutex<State>,
}

impl Shared {
    /// Builds the world for `config`, served at `url`.
    pub(crate) fn new(config: EmulatorConfig, url: String) -> std::io::Result<Shared> {
        let (aws_issuer_key, eks_key, google_key) = generate_keys()?;
        let mut state = State {
            outbound_federation: config.aws.outbound_federation,
            ..State::default()
        };
        let account = &config.aws.account_id;
        for u in &config.aws.users {
            let principal = Principal::User {
                account: account.clone(),
                name: u.name.clone(),
            };
            state.keys.insert(
                u.access_key_id.clone(),
                KeyInfo {
                    secret: u.secret_access_key.clone(),
                    session_token: None,
                    expiration: None,
                    principal,
                },
            );
            state.secrets.push(u.secret_access_key.clone());
        }
        for c in &config.aws.static_credentials {
            let principal = Principal::parse(&c.principal).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad principal ARN")
            })?;
            state.keys.insert(
                c.access_key_id.clone(),
                KeyInfo {
                    secret: c.secret_access_key.clone(),
                    session_token: c.session_token.clone(),
                    expiration: c.expiration,
                    principal,
                },
            );
            state.secrets.push(c.secret_access_key.clone());
            state.secrets.extend(c.session_token.clone());
        }
        let container_token = format!("emu-container-{}", util::random_b64url(24));
        state.secrets.push(container_token.clone());
        Ok(Shared {
            config,
            url,
            aws_issuer_key,
            eks_key,
            google_key,
            container_token,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Emulator time: the frozen clock if set, else the system clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.lock().clock.unwrap_or_else(OffsetDateTime::now_utc)
    }

    pub(crate) fn set_clock(&self, t: Option<OffsetDateTime>) {
        self.lock().clock = t;
    }

    /// The AWS outbound-federation issuer URL.
    pub(crate) fn issuer(&self) -> String {
        format!("{}/aws/issuer", self.url)
    }

    /// The emulated EKS cluster OIDC issuer (for AssumeRoleWithWebIdentity).
    pub(crate) fn eks_issuer(&self) -> String {
        format!("{}/eks/oidc", self.url)
    }

    pub(crate) fn outbound_federation(&self) -> bool {
        self.lock().outbound_federation
    }

    pub(crate) fn set_outbound_federation(&self, enabled: bool) {
        self.lock().outbound_federation = enabled;
    }

    pub(crate) fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.config.aws.roles.iter().find(|r| r.name == name)
    }

    /// What is known about an access key id.
    pub(crate) fn key_info(&self, access_key_id: &str) -> Option<KeyInfo> {
        self.lock().keys.get(access_key_id).cloned()
    }

    /// Issues fresh temporary credentials for a role session.
    pub(crate) fn issue_role_credentials(
        &self,
        role: &str,
        session: &str,
        lifetime: Duration,
    ) -> IssuedCredentials {
        let principal = Principal::AssumedRole {
            account: self.config.aws.account_id.clone(),
            role: role.into(),
            session: session.into(),
        };
        let creds = IssuedCredentials {
            access_key_id: format!("ASIA{}", util::random_base32(16)),
            secret_access_key: util::random_b64(30),
            session_token: format!("IQoJZW11bGF0b3IQ{}", util::random_b64(180)),
            expiration: self.now() + lifetime,
            principal,
        };
        let mut st = self.lock();
        st.keys.insert(
            creds.access_key_id.clone(),
            KeyInfo {
                secret: creds.secret_access_key.clone(),
                session_token: Some(creds.session_token.clone()),
                expiration: Some(creds.expiration),
                principal: creds.principal.clone(),
            },
        );
        st.secrets.push(creds.secret_access_key.clone());
        st.secrets.push(creds.session_token.clone());
        creds
    }

    /// Remembers a secret the emulator handed out (for leak scans).
    pub(crate) fn record_secret(&self, secret: &str) {
        self.lock().secrets.push(secret.to_string());
    }

    pub(crate) fn issued_secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }

    pub(crate) fn add_imds_token(&self, token: &str, expires: OffsetDateTime) {
        let mut st = self.lock();
        st.imds_tokens.insert(token.to_string(), expires);
        st.secrets.push(token.to_string());
    }

    pub(crate) fn imds_token_valid(&self, token: &str) -> bool {
        let now = self.now();
        self.lock()
            .imds_tokens
            .get(token)
            .is_some_and(|exp| *exp > now)
    }

    pub(crate) fn add_federated_token(&self, token: &str, info: FederatedToken) {
        let mut st = self.lock();
        st.federated.insert(token.to_string(), info);
        st.secrets.push(token.to_string());
    }

    /// A federated token that is known and not expired.
    pub(crate) fn federated_token(&self, token: &str) -> Option<FederatedToken> {
        let now = self.now();
        self.lock()
            .federated
            .get(token)
            .filter(|t| t.expires > now)
            .cloned()
    }

    /// Counts one call of `operation` and pops a pending fault for it, if any.
    pub(crate) fn enter(&self, operation: &str) -> Option<Fault> {
        let mut st = self.lock();
        *st.counters.entry(operation.to_string()).or_default() += 1;
        let idx = st
            .faults
            .iter()
            .position(|f| f.operation == operation && f.count > 0)?;
        let fault = st.faults.get_mut(idx)?;
        fault.count -= 1;
        let out = fault.clone();
        if fault.count == 0 {
            st.faults.remove(idx);
        }
        Some(out)
    }

    pub(crate) fn inject_fault(&self, fault: Fault) {
        if fault.count > 0 {
            self.lock().faults.push_back(fault);
        }
    }

    pub(crate) fn log(&self, record: RequestRecord) {
        let mut st = self.lock();
        if st.log.len() >= LOG_CAPACITY {
            st.log.pop_front();
        }
        st.log.push_back(record);
    }

    pub(crate) fn count(&self, operation: &str) -> u64 {
        self.lock().counters.get(operation).copied().unwrap_or(0)
    }

    pub(crate) fn stats(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// Clears counters, the request log and pending faults.
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        st.counters.clear();
        st.log.clear();
        st.faults.clear();
    }
}

/// Generates the three RSA keys in parallel (AWS issuer, EKS issuer, Google).
fn generate_keys() -> std::io::Result<(SigningKey, SigningKey, SigningKey)> {
    std::thread::scope(|s| {
        let a = s.spawn(|| SigningKey::generate(16));
        let b = s.spawn(|| SigningKey::generate(16));
        let g = SigningKey::generate(20)?;
        let join = |h: std::thread::ScopedJoinHandle<'_, std::io::Result<SigningKey>>| {
            h.join()
                .map_err(|_| std::io::Error::other("key generation thread panicked"))?
        };
        Ok((join(a)?, join(b)?, g))
    })
}
