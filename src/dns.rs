//! Host names resolved without the C library, for the static binary
//! (feature `static-dns`, which `scripts/release` turns on).
//!
//! A glibc binary linked with `crt-static` still resolves through NSS: since
//! glibc 2.34 the `files` and `dns` sources are built in, but any other
//! source the host's `/etc/nsswitch.conf` names (`resolve`, `myhostname`,
//! `mdns4_minimal`, `sss`: the defaults of Ubuntu, Fedora and RHEL) is
//! `dlopen`ed from the host's `/lib`, a shared library built for the host's
//! glibc, not the one linked into the binary — which glibc does not support.
//! [`Resolver`] does what `hosts: files dns` does, with hickory-resolver and
//! no C library: `/etc/hosts` first, then the name servers of
//! `/etc/resolv.conf` (or, as glibc and musl do when that file is missing,
//! one on `127.0.0.1`).
//!
//! Both HTTP clients take it: reqwest for Google (`ClientBuilder::dns_resolver`)
//! and the AWS SDK's hyper client (`ResolveDns`). The default, dynamically
//! linked build does not compile this module and resolves with
//! `getaddrinfo`, as before.
//!
//! Each lookup reads both files again and builds its own hickory resolver
//! on the runtime that awaits it: the Rust API runs each call on a runtime
//! of its own, and a resolver's connections must not outlive theirs. A run
//! makes two or three lookups, so nothing is lost by not caching answers.

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The hosts file and resolver configuration of the root the process sees.
const HOSTS: &str = "/etc/hosts";
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// A lookup that found nothing or failed; the message names the host.
#[derive(Debug)]
pub(crate) struct LookupError(String);

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LookupError {}

/// `/etc/hosts`, then DNS as `/etc/resolv.conf` configures it.
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    hosts: PathBuf,
    resolv_conf: PathBuf,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::with_files(Path::new(HOSTS), Path::new(RESOLV_CONF))
    }
}

impl Resolver {
    /// A resolver reading these two files (tests point them elsewhere).
    pub(crate) fn with_files(hosts: &Path, resolv_conf: &Path) -> Self {
        Self {
            hosts: hosts.to_owned(),
            resolv_conf: resolv_conf.to_owned(),
        }
    }

    /// The addresses of `host`: those the hosts file gives it if it names
    /// it at all, otherwise the name servers' A and AAAA answers.
    pub(crate) async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let fail = |why: String| LookupError(format!("cannot resolve {host:?}: {why}"));
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = Name::from_utf8(host).map_err(|e| fail(e.to_string()))?;
        let from_hosts = self.in_hosts_file(&name);
        if !from_hosts.is_empty() {
            return Ok(from_hosts);
        }
        let resolver = self.dns().map_err(fail)?;
        let found = resolver
            .lookup_ip(name)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err(fail("no address".into()));
        }
        Ok(ips)
    }

    /// The A and AAAA addresses the hosts file gives `name` (none when the
    /// file is missing or unreadable, as for glibc).
    fn in_hosts_file(&self, name: &Name) -> Vec<IpAddr> {
        let mut hosts = Hosts::default();
        let Ok(file) = std::fs::File::open(&self.hosts) else {
            return Vec::new();
        };
        if hosts.read_hosts_conf(file).is_err() {
            return Vec::new();
        }
        [RecordType::A, RecordType::AAAA]
            .into_iter()
            .filter_map(|t| hosts.lookup_static_host(&Query::query(name.clone(), t)))
            .flat_map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| r.data.ip_addr())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A hickory resolver for the name servers of the resolver
    /// configuration; without that file, the local host's (glibc's and
    /// musl's default). Hosts-file lookups are ours, not hickory's.
    fn dns(&self) -> Result<TokioResolver, String> {
        let (config, options) = self.dns_config()?;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options;
        builder.build().map_err(|e| e.to_string())
    }

    /// What [`dns`](Self::dns) builds its resolver from.
    fn dns_config(&self) -> Result<(ResolverConfig, ResolverOpts), String> {
        let (config, mut options) = match std::fs::read(&self.resolv_conf) {
            Ok(text) => hickory_resolver::system_conf::parse_resolv_conf(text)
                .map_err(|e| format!("{}: {e}", self.resolv_conf.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                ResolverConfig::from_parts(
                    None,
                    Vec::new(),
                    vec![NameServerConfig::udp_and_tcp(IpAddr::V4(
                        Ipv4Addr::LOCALHOST,
                    ))],
                ),
                ResolverOpts::default(),
            ),
            Err(e) => return Err(format!("{}: {e}", self.resolv_conf.display())),
        };
        options.use_hosts_file = ResolveHosts::Never;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Ok((config, options))
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let ips = resolver.lookup(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| std::net::SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

impl aws_smithy_runtime_api::client::dns::ResolveDns for Resolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            self.lookup(name)
                .await
                .map_err(aws_smithy_runtime_api::client::dns::ResolveDnsError::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
            .block_on(f)
    }

    /// A resolver whose hosts file says `hosts` and whose only name server
    /// is on loopback, so nothing leaves the machine.
    fn resolver(dir: &Path, hosts: &str) -> Resolver {
        let h = dir.join("hosts");
        let r = dir.join("resolv.conf");
        std::fs::write(&h, hosts).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&r, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        Resolver::with_files(&h, &r)
    }

    #[test]
    fn the_hosts_file_answers_first_with_both_families() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = resolver(
            dir.path(),
            "# comment\n127.0.0.1 localhost\n127.0.0.1 emu.test emu\n::1 emu.test\n",
        );
        let mut ips = block_on(r.lookup("emu.test")).unwrap_or_else(|e| panic!("{e}"));
        ips.sort();
        assert_eq!(
            ips,
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(
            block_on(r.lookup("EMU")).unwrap_or_else(|e| panic!("{e}")),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
    }

    #[test]
    fn addresses_need_no_lookup() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = resolver(dir.path(), "");
        assert_eq!(
            block_on(r.lookup("127.0.0.1")).unwrap_or_else(|e| panic!("{e}")),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it_not_a_panic() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = resolver(dir.path(), "127.0.0.1 emu.test\n");
        let e = block_on(r.lookup("nowhere.invalid")).err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("\"nowhere.invalid\""), "{e}");
    }

    #[test]
    fn without_either_file_the_local_name_server_is_asked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let none = Resolver::with_files(&dir.path().join("no-hosts"), &dir.path().join("no-conf"));
        let name = Name::from_utf8("emu.test").unwrap_or_else(|e| panic!("{e}"));
        assert!(none.in_hosts_file(&name).is_empty());
        assert!(block_on(async { none.dns() }).is_ok());
        let servers = |r: &Resolver| -> Vec<IpAddr> {
            let (config, options) = r.dns_config().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(options.use_hosts_file, ResolveHosts::Never);
            config.name_servers().iter().map(|n| n.ip).collect()
        };
        assert_eq!(servers(&none), [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        // With the file, its name servers, in its order.
        let conf = dir.path().join("resolv.conf");
        std::fs::write(&conf, "nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let listed = Resolver::with_files(&dir.path().join("no-hosts"), &conf);
        let want: [IpAddr; 2] = [
            "192.0.2.53".parse().unwrap_or_else(|e| panic!("{e}")),
            "2001:db8::53".parse().unwrap_or_else(|e| panic!("{e}")),
        ];
        assert_eq!(servers(&listed), want);
        let unreadable = Resolver::with_files(dir.path(), dir.path());
        assert!(
            block_on(async { unreadable.dns() }).is_err(),
            "a directory is no resolv.conf"
        );
    }
}
