//! The endpoints, and the rules the real metadata server enforces.
//!
//! Shapes follow the Compute Engine metadata server as the client libraries
//! read it (`docs/metadata-server.md` cites the source lines): JSON
//! (`application/json`) for `token` and `?recursive=true`, which Python
//! parses only when so typed; plain text for everything else, the ID token
//! included, which Python must not parse as JSON. Every answer carries
//! `Metadata-Flavor: Google` (Node refuses any without it).
//!
//! Rules, checked in this order before any route:
//! 1. only `GET` and `HEAD` (405), and no request body (400);
//! 2. `X-Forwarded-For` or `Forwarded` present: 403 (a proxy or an SSRF
//!    relay forwarded it);
//! 3. a `Host` that is not an IP literal, `localhost` or
//!    `metadata.google.internal`: 403 (a browser led there by DNS rebinding);
//! 4. no `Metadata-Flavor: Google`: 403, except on `/`, which the real
//!    server also answers without it (detection probes).
//!
//! Unknown paths and accounts get 404. A token that cannot be had is a 5xx
//! with wif-helper's error code and the message that names the fix (503 when
//! a later retry may succeed); a client on another host (`--allow-remote`)
//! gets the code alone, since the message names the AWS role and local
//! paths. Nothing about a failure is kept.

use super::query::{self, Query};
use super::tokens::{Kind, Tokens};
use crate::error::{Error, ErrorCode};
use crate::settings::validate;
use std::net::IpAddr;
use std::sync::Arc;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// What the server says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The service account (its `email`).
    pub(crate) email: String,
    /// The configured scopes (`--scopes`).
    pub(crate) scopes: Vec<String>,
    /// `project/project-id`, when known.
    pub(crate) project_id: Option<String>,
    /// `project/numeric-project-id`, when known.
    pub(crate) project_number: Option<String>,
    /// `universe/universe-domain`.
    pub(crate) universe_domain: String,
}

/// One request, as the routes see it (the server fills it from hyper's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) flavor: Option<&'a [u8]>,
    /// `X-Forwarded-For` or `Forwarded` is present.
    pub(crate) forwarded: bool,
    pub(crate) host: Option<&'a [u8]>,
    pub(crate) has_body: bool,
    /// The client is on another host (served only with `--allow-remote`).
    pub(crate) remote: bool,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
    /// Close the connection after it.
    pub(crate) close: bool,
    /// What a client on another host is told instead of `body`, when that
    /// says more than the host's own users should hear.
    brief: Option<String>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            close: false,
            brief: None,
        }
    }

    /// The reply as a client on another host gets it.
    fn for_remote(self) -> Self {
        match self.brief {
            Some(brief) => Self {
                body: brief,
                brief: None,
                ..self
            },
            None => self,
        }
    }

    fn text(body: impl Into<String>) -> Self {
        Self::new(200, TEXT, body)
    }

    fn json(value: &serde_json::Value) -> Self {
        Self::new(200, JSON, value.to_string())
    }

    fn lines<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        let mut body = String::new();
        for i in items {
            body.push_str(i);
            body.push('\n');
        }
        Self::text(body)
    }

    fn forbidden(why: &str) -> Self {
        Self {
            close: true,
            ..Self::new(403, TEXT, format!("403 Forbidden: {why}\n"))
        }
    }

    fn bad_request(why: &str) -> Self {
        Self::new(400, TEXT, format!("400 Bad Request: {why}\n"))
    }

    fn not_found() -> Self {
        Self::new(
            404,
            HTML,
            "<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)</title>\
             <p><b>404.</b> The requested URL was not found on this metadata server.</p></html>\n",
        )
    }

    /// A token that could not be had: 400 for a bad request value, 503 when
    /// a retry may succeed, else 500. For a 5xx, a client on another host is
    /// told the code and that the server's log says why: the message names
    /// the AWS identity and local paths, which are the host's business.
    fn upstream(e: &Error, what: &str) -> Self {
        let status = match e.code() {
            ErrorCode::InvalidArgument => 400,
            _ if e.is_transient() => 503,
            _ => 500,
        };
        if status >= 500 {
            tracing::warn!(error = %e, "answering {status}: no {what}");
        }
        Self {
            brief: (status >= 500).then(|| {
                format!(
                    "wif-helper could not get {what}: {}; the metadata server's log says why\n",
                    e.code()
                )
            }),
            ..Self::new(
                status,
                TEXT,
                format!("wif-helper could not get {what}: {e}\n"),
            )
        }
    }
}

/// Whether `host` (a `Host` header) names this server: an IP literal,
/// `localhost` or `metadata.google.internal`, with or without a port.
pub(crate) fn host_allowed(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((ip, tail))
                if tail.is_empty() || tail.strip_prefix(':').is_some_and(valid_port) =>
            {
                return ip.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("metadata.google.internal")
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The server's routes.
#[derive(Debug)]
pub(crate) struct App {
    tokens: Arc<Tokens>,
    id: Identity,
    /// `id.scopes`, sorted: a `?scopes=` equal to them is the default token.
    default_scopes: Vec<String>,
}

impl App {
    pub(crate) fn new(tokens: Arc<Tokens>, id: Identity) -> Self {
        let default_scopes = query::scopes(&id.scopes.join(","));
        Self {
            tokens,
            id,
            default_scopes,
        }
    }

    /// What the server says about itself.
    pub(crate) fn identity(&self) -> &Identity {
        &self.id
    }

    /// The tokens behind the routes.
    pub(crate) fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// The answer to `ask`.
    pub(crate) async fn answer(&self, ask: &Ask<'_>) -> Reply {
        if ask.method != "GET" && ask.method != "HEAD" {
            return Reply {
                close: true,
                ..Reply::new(
                    405,
                    TEXT,
                    "405 Method Not Allowed: the metadata server answers GET\n",
                )
            };
        }
        if ask.has_body {
            return Reply {
                close: true,
                ..Reply::bad_request("requests to the metadata server have no body")
            };
        }
        if ask.forwarded {
            return Reply::forbidden(
                "the request carries X-Forwarded-For or Forwarded: the metadata server refuses requests a proxy forwarded",
            );
        }
        if let Some(h) = ask.host
            && !host_allowed(h)
        {
            return Reply::forbidden(
                "the Host header names neither an IP address, localhost nor metadata.google.internal",
            );
        }
        if ask.path == "/" {
            return Reply::lines(["computeMetadata/"]);
        }
        if ask.flavor != Some(b"Google".as_slice()) {
            return Reply::forbidden("the request lacks the header `Metadata-Flavor: Google`");
        }
        let q = Query::parse(ask.query);
        let reply = match ask.path {
            "/computeMetadata" | "/computeMetadata/" => Reply::lines(["v1/"]),
            p => match p.strip_prefix("/computeMetadata/v1") {
                Some(v1) => self.v1(v1, &q).await,
                None => Reply::not_found(),
            },
        };
        if ask.remote {
            reply.for_remote()
        } else {
            reply
        }
    }

    async fn v1(&self, path: &str, q: &Query) -> Reply {
        let recursive = q.is_true("recursive");
        if let Some(rest) = path.strip_prefix("/instance/service-accounts/")
            && !rest.is_empty()
        {
            return self.account(rest, q).await;
        }
        let dir = path.strip_suffix('/').unwrap_or(path);
        match (dir, path.ends_with('/') || dir.is_empty()) {
            ("", _) if recursive => Reply::json(&serde_json::json!({
                "instance": {"serviceAccounts": self.accounts_json()},
                "project": self.project_json(),
                "universe": {"universeDomain": self.id.universe_domain},
            })),
            ("", _) => Reply::lines(["instance/", "project/", "universe/"]),
            ("/instance", _) if recursive => {
                Reply::json(&serde_json::json!({"serviceAccounts": self.accounts_json()}))
            }
            ("/instance", _) => Reply::lines(["service-accounts/"]),
            ("/instance/service-accounts", _) if recursive => Reply::json(&self.accounts_json()),
            ("/instance/service-accounts", _) => {
                let email = format!("{}/", self.id.email);
                Reply::lines(["default/", email.as_str()])
            }
            ("/project", _) if recursive => Reply::json(&self.project_json()),
            ("/project", _) => {
                let mut items = Vec::new();
                if self.id.project_number.is_some() {
                    items.push("numeric-project-id");
                }
                if self.id.project_id.is_some() {
                    items.push("project-id");
                }
                Reply::lines(items)
            }
            ("/project/project-id", false) => self
                .id
                .project_id
                .as_ref()
                .map_or_else(Reply::not_found, Reply::text),
            ("/project/numeric-project-id", false) => self
                .id
                .project_number
                .as_ref()
                .map_or_else(Reply::not_found, Reply::text),
            ("/universe", _) if recursive => {
                Reply::json(&serde_json::json!({"universeDomain": self.id.universe_domain}))
            }
            ("/universe", _) => Reply::lines(["universe-domain"]),
            // gcloud and .NET spell it with an underscore.
            ("/universe/universe-domain" | "/universe/universe_domain", false) => {
                Reply::text(self.id.universe_domain.clone())
            }
            _ => Reply::not_found(),
        }
    }

    fn account_json(&self) -> serde_json::Value {
        serde_json::json!({
            "aliases": ["default"],
            "email": self.id.email,
            "scopes": self.id.scopes,
        })
    }

    fn accounts_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("default".into(), self.account_json());
        m.insert(self.id.email.clone(), self.account_json());
        serde_json::Value::Object(m)
    }

    fn project_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(n) = &self.id.project_number {
            // The real server gives a number; keep the digits exact.
            let v = n
                .parse::<u64>()
                .map_or_else(|_| n.clone().into(), serde_json::Value::from);
            m.insert("numericProjectId".into(), v);
        }
        if let Some(p) = &self.id.project_id {
            m.insert("projectId".into(), p.clone().into());
        }
        serde_json::Value::Object(m)
    }

    /// `…/service-accounts/{default|EMAIL}/…`.
    async fn account(&self, rest: &str, q: &Query) -> Reply {
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if name != "default" && !name.eq_ignore_ascii_case(&self.id.email) {
            return Reply::not_found();
        }
        match tail {
            "" if q.is_true("recursive") => Reply::json(&self.account_json()),
            "" => Reply::lines(["aliases", "email", "identity", "scopes", "token"]),
            "email" => Reply::text(self.id.email.clone()),
            "aliases" => Reply::lines(["default"]),
            "scopes" => Reply::lines(self.id.scopes.iter().map(String::as_str)),
            "token" => self.token(q).await,
            "identity" => self.id_token(q).await,
            _ => Reply::not_found(),
        }
    }

    async fn token(&self, q: &Query) -> Reply {
        let scopes = q.get("scopes").map(query::scopes).unwrap_or_default();
        let kind = if scopes.is_empty() || scopes == self.default_scopes {
            Kind::Access(Vec::new())
        } else {
            Kind::Access(scopes)
        };
        match self.tokens.get(&kind).await {
            Ok(t) => {
                // Written by hand: every request of a warm server comes here.
                let expires_in = t.expires_at.saturating_sub(self.tokens.now()).max(0);
                let token = serde_json::Value::from(t.token.expose()).to_string();
                Reply::new(
                    200,
                    JSON,
                    format!(
                        "{{\"access_token\":{token},\"expires_in\":{expires_in},\"token_type\":\"Bearer\"}}"
                    ),
                )
            }
            Err(e) => Reply::upstream(&e, "an access token"),
        }
    }

    async fn id_token(&self, q: &Query) -> Reply {
        let Some(audience) = q.get("audience").filter(|a| !a.is_empty()) else {
            return Reply::bad_request("non-empty audience parameter required");
        };
        if let Err(e) = validate::id_audience("audience", audience) {
            return Reply::upstream(&e, "an ID token");
        }
        let kind = Kind::Id {
            audience: audience.to_owned(),
            // What google-cloud-auth asks for when it wants the email claim.
            include_email: q.get("format") == Some("full"),
        };
        match self.tokens.get(&kind).await {
            Ok(t) => Reply::text(t.token.expose()),
            Err(e) => Reply::upstream(&e, "an ID token"),
        }
    }
}

#[cfg(test)]
mod tests;
