//! `wif-helper cache list` and `cache clear`: what is cached (never a
//! token) and forgetting it. Deleting the cache is always safe: the next call
//! fetches anew.

use super::Format;
use crate::clock::{Clock, SystemClock};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::output;
use crate::settings::CacheSettings;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(super) enum CacheCommand {
    /// List cached tokens: kind, provider, service account, scopes or audience, and when each
    /// expires (never a token)
    List(CacheCmdArgs),
    /// Forget every cached token; safe while other wif-helper processes run (they fetch anew)
    Clear(CacheCmdArgs),
}

#[derive(Debug, Args)]
pub(super) struct CacheCmdArgs {
    /// Token cache directory (default: $XDG_CACHE_HOME/wif-helper or ~/.cache/wif-helper)
    #[arg(long, env = "WIF_HELPER_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Output format
    #[arg(long, env = "WIF_HELPER_FORMAT", value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) fn run(cmd: &CacheCommand, env: &Env) -> Result<()> {
    let (CacheCommand::List(a) | CacheCommand::Clear(a)) = cmd;
    let settings = CacheSettings {
        dir: a.cache_dir.clone(),
        disabled: false,
    };
    let cache = settings
        .open(env)?
        .ok_or_else(|| Error::invalid("no usable cache directory: pass --cache-dir"))?;
    let dir = cache.dir().display().to_string();
    match cmd {
        CacheCommand::List(_) => {
            let now = SystemClock.now_unix();
            let entries = cache.list()?;
            match a.format {
                Format::Json => output::stdout(
                    &serde_json::json!({
                        "cache_dir": dir,
                        "entries": entries.iter().map(|e| serde_json::json!({
                            "kind": e.kind,
                            "about": e.about,
                            "expires_at": e.expires_at,
                            "expires_in": e.expires_at.map(|t| t - now),
                        })).collect::<Vec<_>>(),
                    })
                    .to_string(),
                ),
                Format::Text => {
                    let mut out = format!("{dir}: {} entries\n", entries.len());
                    for e in &entries {
                        let get = |k: &str| e.about.get(k).map(String::as_str).unwrap_or("-");
                        let what = match e.kind.as_str() {
                            "access" => get("scopes"),
                            "id" => get("audience"),
                            "sts" => get("provider_type"),
                            _ => "",
                        };
                        out.push_str(&format!(
                            "{:<6} {:<16} {} {} {}\n",
                            e.kind,
                            expires_in(e.expires_at, now),
                            get("provider").trim_start_matches("//iam.googleapis.com/"),
                            get("service_account"),
                            what
                        ));
                    }
                    output::stdout(out.trim_end());
                }
            }
        }
        CacheCommand::Clear(_) => {
            let removed = cache.clear()?;
            match a.format {
                Format::Json => output::stdout(
                    &serde_json::json!({"cache_dir": dir, "removed": removed}).to_string(),
                ),
                Format::Text => output::stdout(&format!("removed {removed} entries from {dir}")),
            }
        }
    }
    Ok(())
}

/// `expires in 59m 12s`, `expired 3m 2s ago`, or `unreadable`.
fn expires_in(expires_at: Option<i64>, now: i64) -> String {
    let Some(t) = expires_at else {
        return "unreadable".into();
    };
    let left = t - now;
    let span = |s: i64| {
        let s = s.abs();
        match (s / 3600, s % 3600 / 60, s % 60) {
            (0, 0, sec) => format!("{sec}s"),
            (0, m, sec) => format!("{m}m{sec:02}s"),
            (h, m, _) => format!("{h}h{m:02}m"),
        }
    };
    if left >= 0 {
        format!("in {}", span(left))
    } else {
        format!("expired {} ago", span(left))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiry_reads_like_a_person_writes_it() {
        assert_eq!(super::expires_in(Some(1000 + 3552), 1000), "in 59m12s");
        assert_eq!(super::expires_in(Some(1000 + 7300), 1000), "in 2h01m");
        assert_eq!(super::expires_in(Some(995), 1000), "expired 5s ago");
        assert_eq!(super::expires_in(None, 1000), "unreadable");
    }
}
