//! Who may ask: the owner of the connecting socket.
//!
//! On Linux the kernel lists every TCP socket of the network namespace in
//! `/proc/net/tcp` and `/proc/net/tcp6`, with the uid that owns it: the
//! client's socket is the line whose local address is the peer address the
//! server sees and whose remote address is the server's own (identd finds
//! the owner the same way). A loopback connection is served only when that
//! uid is the server's effective uid, unless `--allow-other-users`; a
//! connection from another host only with `--allow-remote` (no owner can be
//! known for it). A socket that cannot be found, or a system without
//! `/proc/net/tcp`, is refused: the check fails closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Who the server serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Serve loopback connections of every user (`--allow-other-users`).
    pub(crate) allow_other_users: bool,
    /// Serve connections from other hosts (`--allow-remote`).
    pub(crate) allow_remote: bool,
}

/// Whether a connection may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// Refused, and why (for the 403 body and the log).
    Refused(String),
}

/// The verdict on a connection from `client` to `server` (both as the
/// server's socket sees them). Reads `/proc` on the blocking pool.
pub(crate) async fn verdict(policy: Policy, server: SocketAddr, client: SocketAddr) -> Verdict {
    let client = unmapped(client);
    if !client.ip().is_loopback() {
        return if policy.allow_remote {
            Verdict::Allowed
        } else {
            Verdict::Refused(format!(
                "connections from other hosts ({}) are not served; start the server with --allow-remote",
                client.ip()
            ))
        };
    }
    if policy.allow_other_users {
        return Verdict::Allowed;
    }
    let me = rustix::process::geteuid().as_raw();
    let owner = tokio::task::spawn_blocking(move || owner(client, unmapped(server))).await;
    match owner {
        Ok(Ok(Some(uid))) if uid == me => Verdict::Allowed,
        Ok(Ok(Some(uid))) => Verdict::Refused(format!(
            "the connection comes from a process of uid {uid}, and this metadata server serves only \
             its own user (uid {me}); run the client as that user, or start the server with \
             --allow-other-users"
        )),
        Ok(Ok(None)) => Verdict::Refused(
            "the connecting socket's owner could not be found in /proc/net/tcp; start the server \
             with --allow-other-users to serve every local user"
                .to_owned(),
        ),
        Ok(Err(e)) => Verdict::Refused(format!(
            "cannot read /proc/net/tcp to find who connects ({e}); start the server with \
             --allow-other-users to serve every local user"
        )),
        Err(e) => Verdict::Refused(format!("the peer check failed: {e}")),
    }
}

/// The uid owning the socket `client` → `server`, from `/proc/net/tcp` and
/// `/proc/net/tcp6`.
fn owner(client: SocketAddr, server: SocketAddr) -> std::io::Result<Option<u32>> {
    let mut last_err = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => {
                if let Some(uid) = find_owner(&text, client, server) {
                    return Ok(Some(uid));
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        // Neither table could be read.
        Some(e) if !std::path::Path::new("/proc/net/tcp").exists() => Err(e),
        _ => Ok(None),
    }
}

/// The uid column of the line of `table` (the text of `/proc/net/tcp` or
/// `tcp6`) for the socket whose local address is `client` and remote
/// address `server`.
pub(crate) fn find_owner(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let (client, server) = (unmapped(client), unmapped(server));
    table.lines().skip(1).find_map(|line| {
        let mut f = line.split_whitespace();
        let _slot = f.next()?;
        let local = parse_addr(f.next()?)?;
        let remote = parse_addr(f.next()?)?;
        if local != client || remote != server {
            return None;
        }
        // st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode.
        // Only a live, open socket counts: a client that closed its end
        // leaves a row in another state with uid 0 and inode 0, which a
        // server running as root would otherwise take for its own user.
        let state = f.next()?;
        let uid = f.nth(3)?.parse().ok()?;
        let inode = f.nth(1)?;
        (state == "01" && inode != "0").then_some(uid)
    })
}

/// An address of `/proc/net/tcp{,6}`: `HEX:PORT`, each 32-bit word of the
/// address printed in host byte order.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(unmapped(SocketAddr::new(ip, port)))
}

/// Eight hex digits printed from a 32-bit word in host byte order, as the
/// four bytes it holds in memory (network order for an address).
fn word(hex: &str) -> Option<[u8; 4]> {
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    // Host byte order as printed on little-endian machines (x86_64, aarch64).
    #[cfg(target_endian = "little")]
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:22FA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 636 1 0000000032eb205e 100 0 0 10 0
   1: 0100007F:D431 0100007F:22FA 01 00000000:00000000 00:00000000 00000000 65534        0 999 1 0000000032eb205e 20 4 30 10 -1
   2: 0100007F:22FA 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 998 1 0000000032eb205e 20 4 30 10 -1
";

    #[cfg(target_endian = "little")]
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:22FA 01 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:9C41 0000000000000000FFFF00000100007F:22FA 01 00000000:00000000 00:00000000 00000000  1001        0 1 1 0 20 4 30 10 -1
";

    #[test]
    #[cfg(target_endian = "little")]
    fn the_clients_socket_is_found_by_both_ends() {
        let server = sa("127.0.0.1:8954");
        // The client's socket (local = the peer address), not the server's side.
        assert_eq!(find_owner(TCP, sa("127.0.0.1:54321"), server), Some(65534));
        assert_eq!(find_owner(TCP, sa("127.0.0.1:54322"), server), None);
        // The listening socket is never taken for a client.
        assert_eq!(find_owner(TCP, sa("0.0.0.0:0"), server), None);
        // IPv6 loopback, and an IPv4-mapped peer seen by a dual-stack listener.
        assert_eq!(
            find_owner(TCP6, sa("[::1]:40000"), sa("[::1]:8954")),
            Some(1000)
        );
        assert_eq!(
            find_owner(
                TCP6,
                sa("[::ffff:127.0.0.1]:40001"),
                sa("[::ffff:127.0.0.1]:8954")
            ),
            Some(1001)
        );
    }

    /// A client that closed its end leaves a row in another state, with
    /// uid 0 and inode 0: never taken for root (or anyone).
    #[test]
    #[cfg(target_endian = "little")]
    fn a_closed_clients_row_is_nobodys() {
        let server = sa("127.0.0.1:8954");
        let closing = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:D431 0100007F:22FA 08 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000032eb205e 20 4 30 10 -1
";
        assert_eq!(find_owner(closing, sa("127.0.0.1:54321"), server), None);
        let no_inode = closing.replace(" 08 ", " 01 ");
        assert_eq!(find_owner(&no_inode, sa("127.0.0.1:54321"), server), None);
        let live = no_inode.replace("        0 0 1 ", "        0 4242 1 ");
        assert_eq!(find_owner(&live, sa("127.0.0.1:54321"), server), Some(0));
    }

    #[test]
    fn garbage_tables_find_nobody() {
        let (c, s) = (sa("127.0.0.1:1"), sa("127.0.0.1:2"));
        for table in [
            "",
            "header only",
            "h\n 0: x y z",
            "h\n 0: 0100007F:0001 0100007F:0002 01 a b c",
            "h\n 0: 0100007F:0001",
        ] {
            assert_eq!(find_owner(table, c, s), None, "{table:?}");
        }
    }

    /// The verdict on a live connection to a listener on `listen`, reached
    /// at `connect` (`None`: the listener's own address); `None` when this
    /// host cannot listen there (no IPv6).
    async fn live(listen: &str, connect: Option<&str>) -> Option<Verdict> {
        let listener = tokio::net::TcpListener::bind(listen).await.ok()?;
        let bound = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let to = connect.map_or(bound, |ip| {
            SocketAddr::new(ip.parse().unwrap_or_else(|e| panic!("{e}")), bound.port())
        });
        let client = tokio::net::TcpStream::connect(to).await;
        let _client = client.unwrap_or_else(|e| panic!("{to}: {e}"));
        let (conn, peer) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        // What the server does: the address this connection reached.
        let here = conn.local_addr().unwrap_or_else(|e| panic!("{e}"));
        Some(verdict(Policy::default(), here, peer).await)
    }

    /// The same user is found over IPv6 loopback, and through a dual-stack
    /// `[::]` listener reached at 127.0.0.1 (an IPv4-mapped peer).
    #[tokio::test]
    async fn the_same_user_is_found_over_ipv6_and_dual_stack() {
        if !std::path::Path::new("/proc/net/tcp6").exists() {
            return;
        }
        for (listen, connect) in [
            ("[::1]:0", None),
            ("[::]:0", Some("::1")),
            ("[::]:0", Some("127.0.0.1")),
            ("0.0.0.0:0", Some("127.0.0.1")),
        ] {
            if let Some(v) = live(listen, connect).await {
                assert_eq!(v, Verdict::Allowed, "{listen} reached at {connect:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_connection_of_this_user_is_allowed_and_others_need_a_flag() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.unwrap_or_else(|e| panic!("{e}"));
        let server = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client = tokio::net::TcpStream::connect(server).await;
        let client = client.unwrap_or_else(|e| panic!("{e}"));
        let (_conn, peer) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(peer, client.local_addr().unwrap_or_else(|e| panic!("{e}")));
        if std::path::Path::new("/proc/net/tcp").exists() {
            assert_eq!(
                verdict(Policy::default(), server, peer).await,
                Verdict::Allowed
            );
        }
        // A remote peer needs --allow-remote, whatever else is allowed.
        let remote = sa("192.0.2.7:5000");
        let all_users = Policy {
            allow_other_users: true,
            allow_remote: false,
        };
        assert!(
            matches!(verdict(all_users, server, remote).await, Verdict::Refused(m) if m.contains("--allow-remote"))
        );
        let remote_ok = Policy {
            allow_other_users: false,
            allow_remote: true,
        };
        assert_eq!(verdict(remote_ok, server, remote).await, Verdict::Allowed);
        // A loopback socket nobody owns (no such connection) is refused.
        let ghost = sa("127.0.0.1:1");
        assert!(matches!(
            verdict(Policy::default(), server, ghost).await,
            Verdict::Refused(_)
        ));
    }
}
