//! The way out for a sandboxed command when `[sandbox] allow_domains` names where it may go
//! (a package index, say): an HTTPS proxy that gaffer runs outside the sandbox, on a Unix
//! socket mounted inside, where gaffer's init relays `127.0.0.1:3128` to it. Only `CONNECT` to
//! port 443 of an allowed domain passes, and only when every address the domain resolves to is
//! public (not loopback, private, link-local, shared or multicast) unless the user allowed that
//! range: a name that resolves to the host itself or the office network is refused after DNS,
//! whatever the list says. The tunnel goes to the address that was checked.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// The largest request head read before the proxy gives up on a client.
const MAX_HEAD: usize = 8 * 1024;
/// The only port a tunnel may go to.
const HTTPS_PORT: u16 = 443;

/// Where commands may go through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Domains, lower case: `example.org` allows itself only, `.example.org` (or
    /// `*.example.org`) its subdomains too.
    pub allow_domains: Vec<String>,
    /// Address ranges allowed although they are not public (an internal package mirror).
    pub allow_addresses: Vec<IpNet>,
    /// The port tunnels go to (443; another only in tests).
    pub port: u16,
}

impl Default for ProxyPolicy {
    /// No domain: no proxy.
    fn default() -> Self {
        ProxyPolicy::https(Vec::new(), Vec::new())
    }
}

impl ProxyPolicy {
    /// A policy for HTTPS to these domains.
    pub fn https(allow_domains: Vec<String>, allow_addresses: Vec<IpNet>) -> ProxyPolicy {
        ProxyPolicy {
            allow_domains,
            allow_addresses,
            port: HTTPS_PORT,
        }
    }

    /// Whether `host` is on the list.
    pub fn allows_domain(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_domains.iter().any(|allowed| {
            let allowed = allowed.trim_start_matches('*');
            match allowed.strip_prefix('.') {
                Some(parent) => host == parent || host.ends_with(allowed),
                None => host == allowed,
            }
        })
    }

    /// Why `ip` may not be reached, if it may not.
    pub fn refuses_address(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_addresses.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        not_public(ip)
    }
}

/// Why an address is not a public one, if it is not.
fn not_public(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || a == 0 {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

/// A running proxy; stopped (and its socket removed) when dropped.
#[derive(Debug)]
pub struct NetworkProxy {
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl NetworkProxy {
    /// Serve `policy` on a Unix socket at `socket`.
    pub fn start(socket: &Path, policy: ProxyPolicy) -> std::io::Result<NetworkProxy> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let policy = Arc::new(policy);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let policy = Arc::clone(&policy);
                tokio::spawn(async move {
                    if let Err(error) = serve(client, &policy).await {
                        tracing::debug!(%error, "a proxied connection ended with an error");
                    }
                });
            }
        });
        Ok(NetworkProxy {
            socket: socket.to_path_buf(),
            task,
        })
    }

    /// The socket's path on the host.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for NetworkProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client: its `CONNECT`, the checks, then the tunnel.
async fn serve(mut client: UnixStream, policy: &ProxyPolicy) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return refuse(
                &mut client,
                "400 Bad Request",
                "the request head is too long",
            )
            .await;
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let request_line = text.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        return refuse(
            &mut client,
            "405 Method Not Allowed",
            "only HTTPS (CONNECT) goes through gaffer's proxy",
        )
        .await;
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return refuse(&mut client, "400 Bad Request", "CONNECT needs host:port").await;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if port.parse::<u16>().ok() != Some(policy.port) {
        let why = format!("only port {} is allowed, not {port}", policy.port);
        return refuse(&mut client, "403 Forbidden", &why).await;
    }
    if !policy.allows_domain(host) {
        let why = format!("`{host}` is not in [sandbox] allow_domains");
        tracing::info!(host, "proxy refused a domain");
        return refuse(&mut client, "403 Forbidden", &why).await;
    }
    let addresses: Vec<SocketAddr> = match tokio::net::lookup_host((host, policy.port)).await {
        Ok(found) => found.collect(),
        Err(e) => {
            let why = format!("`{host}` does not resolve: {e}");
            return refuse(&mut client, "502 Bad Gateway", &why).await;
        }
    };
    // Every address must pass: a name that also resolves to an internal one is refused.
    if let Some((address, why)) = addresses
        .iter()
        .find_map(|a| policy.refuses_address(a.ip()).map(|why| (a, why)))
    {
        let why = format!("`{host}` resolves to {}, {why}", address.ip());
        tracing::info!(host, %address, "proxy refused an address");
        return refuse(&mut client, "403 Forbidden", &why).await;
    }
    let Some(address) = addresses.first() else {
        let why = format!("`{host}` resolves to nothing");
        return refuse(&mut client, "502 Bad Gateway", &why).await;
    };
    let mut upstream = match TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(e) => {
            let why = format!("cannot reach `{host}` ({address}): {e}");
            return refuse(&mut client, "502 Bad Gateway", &why).await;
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    // Bytes the client sent after its head belong to the tunnel.
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |p| p + 4);
    upstream.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn refuse(client: &mut UnixStream, status: &str, why: &str) -> std::io::Result<()> {
    let body = format!("gaffer's sandbox proxy: {why}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(domains: &[&str], addresses: &[&str]) -> ProxyPolicy {
        ProxyPolicy::https(
            domains.iter().map(|d| d.to_string()).collect(),
            addresses.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn domains_match_exactly_or_as_subdomains_when_asked() {
        let p = policy(&["pypi.org", ".crates.io", "*.npmjs.org"], &[]);
        assert!(p.allows_domain("pypi.org"));
        assert!(p.allows_domain("PyPI.org."));
        assert!(!p.allows_domain("files.pypi.org"));
        assert!(!p.allows_domain("evilpypi.org"));
        assert!(p.allows_domain("crates.io"));
        assert!(p.allows_domain("static.crates.io"));
        assert!(!p.allows_domain("notcrates.io"));
        assert!(p.allows_domain("registry.npmjs.org"));
        assert!(!p.allows_domain("npmjs.org.evil.com"));
    }

    #[test]
    fn only_public_addresses_pass_unless_a_range_is_allowed() {
        let p = policy(&[], &["10.1.0.0/16"]);
        for (ip, refused) in [
            ("127.0.0.1", true),
            ("10.0.0.5", true),
            ("10.1.2.3", false),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("93.184.215.14", false),
            ("2606:4700::1111", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(p.refuses_address(ip).is_some(), refused, "{ip}");
        }
    }
}
