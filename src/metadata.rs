//! The Compute Engine metadata server, served from the direct path.
//!
//! Every Google client library, in every language, finds credentials on a
//! Compute Engine VM by asking its metadata server, and each honours an
//! address override for it (`GCE_METADATA_HOST` and friends, see
//! `docs/metadata-server.md`). `wif-helper metadata-server` and
//! `wif-helper exec` answer those requests on loopback with tokens from
//! [`crate::service::TokenService`], so Application Default Credentials
//! hand out service-account access tokens and ID tokens with no credential
//! file, and every process of a host or pod shares one exchange.
//!
//! * [`server`]: the listener (hyper, HTTP/1.1), the per-connection peer
//!   check, resource limits and graceful shutdown;
//! * [`peer`]: who owns the connecting socket (`/proc/net/tcp`, `tcp6`);
//! * [`routes`]: the endpoints, the request rules the real server enforces
//!   (`Metadata-Flavor`, `X-Forwarded-For`) and the `Host` check;
//! * [`tokens`]: tokens in memory, one upstream fetch per token at a time
//!   (single flight), and their refresh before anyone needs it.

mod peer;
mod query;
mod routes;
mod server;
mod tokens;

pub(crate) use peer::Policy;
pub(crate) use routes::{App, Identity};
pub(crate) use server::{Limits, bind};
pub(crate) use tokens::{IDENTITY_RECHECK, Kind, Tokens};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What `METADATA_SERVER_DETECTION` is set to: Node's gcp-metadata then
/// skips its detection probe.
pub(crate) const DETECTION: &str = "assume-present";

/// The address clients connect to for a server listening on `listen`: an
/// unspecified address (`0.0.0.0`, `::`) is reached on loopback.
pub(crate) fn connect_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The environment that points every Google library (and gcloud) at a
/// metadata server listening on `listen`, in a stable order.
pub(crate) fn client_env(listen: SocketAddr, project: Option<&str>) -> Vec<(&'static str, String)> {
    let host = connect_addr(listen).to_string();
    let mut env = vec![
        // Go, Java, .NET, Rust, Python (requests), Node (after GCE_METADATA_IP).
        ("GCE_METADATA_HOST", host.clone()),
        // Python's detection ping and Node's first choice.
        ("GCE_METADATA_IP", host.clone()),
        // gcloud, and Python before GCE_METADATA_HOST existed.
        ("GCE_METADATA_ROOT", host),
        ("METADATA_SERVER_DETECTION", DETECTION.to_owned()),
    ];
    if let Some(p) = project {
        env.push(("GOOGLE_CLOUD_PROJECT", p.to_owned()));
    }
    env
}

/// The project of a service account's email
/// (`NAME@PROJECT.iam.gserviceaccount.com`), if it names one.
pub(crate) fn project_of(service_account: &str) -> Option<&str> {
    let (_, domain) = service_account.rsplit_once('@')?;
    let project = domain.strip_suffix(".iam.gserviceaccount.com")?;
    (!project.is_empty() && !project.contains('.')).then_some(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_reach_an_unspecified_listener_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8954".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(connect_addr(a).to_string(), "127.0.0.1:8954");
        let a: SocketAddr = "[::]:80".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(connect_addr(a).to_string(), "[::1]:80");
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(connect_addr(a), a);
    }

    #[test]
    fn the_environment_names_every_variable_libraries_read() {
        let a: SocketAddr = "127.0.0.1:4242".parse().unwrap_or_else(|e| panic!("{e}"));
        let env = client_env(a, Some("my-proj"));
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "GCE_METADATA_HOST",
                "GCE_METADATA_IP",
                "GCE_METADATA_ROOT",
                "METADATA_SERVER_DETECTION",
                "GOOGLE_CLOUD_PROJECT"
            ]
        );
        assert!(env.iter().take(3).all(|(_, v)| v == "127.0.0.1:4242"));
        assert_eq!(client_env(a, None).len(), 4);
    }

    #[test]
    fn the_project_comes_from_a_service_account_email() {
        assert_eq!(
            project_of("app@my-proj.iam.gserviceaccount.com"),
            Some("my-proj")
        );
        assert_eq!(
            project_of("123-compute@developer.gserviceaccount.com"),
            None
        );
        assert_eq!(project_of("112233445566778899001"), None);
        assert_eq!(project_of("a@.iam.gserviceaccount.com"), None);
    }
}
