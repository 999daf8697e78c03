//! What an operator types as an upstream, checked against the rules and against reality
//! before it becomes a route: names and addresses ([`check_name`], [`check_package`],
//! [`host_port`]), whether the address is one of the gateway's own listeners
//! ([`refuse_own_address`]), whether anything answers there ([`reachable`]), and whether the
//! version agrees with the package it serves ([`version_warnings`]).
//!
//! Names: `[A-Za-z0-9._-]`, 1 to [`MAX_NAME_BYTES`] bytes, so that a name can neither forge a
//! log line nor a terminal escape, nor fill a reply. Addresses: `HOST:PORT`, `http://HOST:PORT`
//! or `https://HOST:PORT`, nothing before or after; HOST is an IPv4 address, an IPv6 address in
//! brackets or a DNS name (letters, digits, `-` and `.`, at most 253 bytes); PORT 1-65535.

use crate::upstream::UpstreamSpec;
use router::{Backend, BackendInfo, RouteTable, quote};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tonic::Status;

/// Longest backend (upstream) name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest `+PACKAGE`, in bytes (a protobuf package: identifiers joined by dots).
pub const MAX_PACKAGE_BYTES: usize = 256;
/// Longest DNS name an address may hold, in bytes (RFC 1035's limit).
const MAX_HOST_BYTES: usize = 253;
/// How long an Add or Replace waits for the upstream to accept a TCP connection.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks that `name` is 1 to [`MAX_NAME_BYTES`] bytes of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the name {} is {} bytes; at most {MAX_NAME_BYTES} are allowed",
            quote(name),
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(bad) => Err(format!(
            "the name {} holds {bad:?}; a name is made of A-Z, a-z, 0-9, '.', '_' and '-'",
            quote(name)
        )),
        None => Ok(()),
    }
}

/// Checks a table backend's name as Drain and Remove take it: `NAME`, or `NAME/PACKAGE` for an
/// upstream implementing several packages.
pub fn check_backend_name(name: &str) -> Result<(), String> {
    match name.split_once('/') {
        None => check_name(name),
        Some((upstream, package)) => check_name(upstream).and_then(|()| check_package(package)),
    }
}

/// Checks that `package` (a `+PACKAGE`) is a protobuf package name: identifiers
/// (`[A-Za-z_][A-Za-z0-9_]*`) joined by dots, at most [`MAX_PACKAGE_BYTES`] bytes.
pub fn check_package(package: &str) -> Result<(), String> {
    let identifier = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if package.len() > MAX_PACKAGE_BYTES {
        return Err(format!(
            "+PACKAGE {} is {} bytes; at most {MAX_PACKAGE_BYTES} are allowed",
            quote(package),
            package.len()
        ));
    }
    match package.split('.').all(identifier) {
        true => Ok(()),
        false => Err(format!(
            "+PACKAGE {} is not a protobuf package name (identifiers joined by dots, e.g. \
             increment.v1)",
            quote(package)
        )),
    }
}

/// Checks that `addr` is exactly `HOST:PORT` (see the module's doc) and returns it.
pub fn host_port(addr: &str) -> Result<String, String> {
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest
                .split_once("]:")
                .ok_or("is not [IPV6]:PORT (no port after the bracket)")?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| format!("is not [IPV6]:PORT ({} is no IPv6 address)", quote(ip)))?;
            (ip, port)
        }
        None => {
            let (host, port) = addr.rsplit_once(':').ok_or("is not HOST:PORT (no port)")?;
            if host.is_empty() {
                return Err("is not HOST:PORT (no host)".into());
            }
            if host.parse::<Ipv6Addr>().is_ok() {
                return Err("is not HOST:PORT (an IPv6 host goes in brackets: [::1]:7001)".into());
            }
            if host.parse::<Ipv4Addr>().is_err() {
                check_host_name(host)?;
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return Err("is not HOST:PORT (no host)".into());
    }
    let number = match port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
        true => port.parse::<u16>().ok(),
        false => None,
    };
    match number {
        Some(1..) => Ok(addr.to_string()),
        _ => Err(format!(
            "is not HOST:PORT (port {} is not a number from 1 to 65535)",
            quote(port)
        )),
    }
}

/// Checks a DNS name: labels of letters, digits and `-`, joined by dots.
fn check_host_name(host: &str) -> Result<(), String> {
    let label = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    match host.len() <= MAX_HOST_BYTES && host.split('.').all(label) {
        true => Ok(()),
        false => Err(format!(
            "is not HOST:PORT (host {} is neither an IP address nor a DNS name; no path or \
             anything else may follow the port)",
            quote(host)
        )),
    }
}

/// Refuses `host_port` (of upstream `name`) when it is one of the gateway's own listening
/// addresses `own` (its port, its admin listener): every call routed there would come back to
/// the gateway itself. A listener on `0.0.0.0` or `[::]` is also reached on loopback and on
/// every address of this host; an IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]`) is its IPv4
/// one. The name is resolved within [`REACH_TIMEOUT`].
pub async fn refuse_own_address(
    name: &str,
    host_port: &str,
    own: &[SocketAddr],
) -> Result<(), String> {
    if own.is_empty() {
        return Ok(());
    }
    // A name that does not resolve is no loop; the reachability check reports it.
    let Ok(Ok(resolved)) =
        tokio::time::timeout(REACH_TIMEOUT, tokio::net::lookup_host(host_port)).await
    else {
        return Ok(());
    };
    for target in resolved {
        let target = SocketAddr::new(target.ip().to_canonical(), target.port());
        let mine = own.iter().find(|mine| {
            let mine_ip = mine.ip().to_canonical();
            mine.port() == target.port()
                && (mine_ip == target.ip()
                    || (mine_ip.is_unspecified() && of_this_host(target.ip()))
                    || (target.ip().is_unspecified() && of_this_host(mine_ip)))
        });
        if let Some(mine) = mine {
            return Err(format!(
                "upstream {name} at {host_port} is this gateway's own listener ({mine}): calls \
                 routed there would loop back into the gateway; name the backend's own address"
            ));
        }
    }
    Ok(())
}

/// Whether `ip` is an address of this host: loopback, unspecified, or one a socket can be
/// bound to (the kernel allows that only for local addresses; nothing is sent).
fn of_this_host(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether something accepts a TCP connection at `host_port` within [`REACH_TIMEOUT`]; the
/// error names the address and what failed, and tells the operator to start the upstream.
pub async fn reachable(name: &str, host_port: &str) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(host_port);
    let failed = match tokio::time::timeout(REACH_TIMEOUT, connect).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {} ms", REACH_TIMEOUT.as_millis()),
    };
    Err(format!(
        "upstream {name} at {host_port} cannot be reached ({failed}); a route is added only to \
         an upstream that answers: start it first, then add it"
    ))
}

/// Whether table backend `backend` belongs to upstream `upstream`: named `upstream`, or
/// `upstream/PACKAGE` for an upstream implementing several packages.
pub fn belongs_to(backend: &str, upstream: &str) -> bool {
    backend == upstream
        || backend
            .strip_prefix(upstream)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Add (`adding`): `spec`'s name is free in `table`, else `ALREADY_EXISTS`; Replace: it is
/// there, else `NOT_FOUND`.
pub fn name_is_free(spec: &UpstreamSpec, table: &RouteTable, adding: bool) -> Result<(), Status> {
    let taken = table
        .backends()
        .iter()
        .any(|b| belongs_to(&b.name, &spec.name));
    match (adding, taken) {
        (true, true) => Err(Status::already_exists(format!(
            "a backend named {:?} is already in the route table",
            spec.name
        ))),
        (false, false) => Err(Status::not_found(format!(
            "no backend named {:?} is in the route table; Replace changes an existing backend \
             (use Add for a new one)",
            spec.name
        ))),
        _ => Ok(()),
    }
}

/// What the admin API's Add (`adding`) or Replace checks before reading upstream `spec`:
/// [`name_is_free`] in `table`, its address not one of the gateway's own listeners `own`, and
/// something listening there, at every replica's address (both `FAILED_PRECONDITION`). `--upstream` at start is not checked
/// for reachability: the router may start before its upstreams.
pub async fn admit(
    spec: &UpstreamSpec,
    table: &RouteTable,
    adding: bool,
    own: &[SocketAddr],
) -> Result<(), Status> {
    name_is_free(spec, table, adding)?;
    for host_port in spec.host_ports() {
        refuse_own_address(&spec.name, host_port, own)
            .await
            .map_err(Status::failed_precondition)?;
    }
    // Every replica: a typo in one address is refused as a dead upstream would be.
    for host_port in spec.host_ports() {
        reachable(&spec.name, host_port)
            .await
            .map_err(Status::failed_precondition)?;
    }
    Ok(())
}

/// Refuses (`FAILED_PRECONDITION`) a Replace of upstream `spec` whose `backends` would serve
/// another package than the backend of the same name in `present` does: its callers would be
/// answered by another API under the name they were routed to.
pub fn same_packages(
    spec: &UpstreamSpec,
    present: &[BackendInfo],
    backends: &[Backend],
) -> Result<(), Status> {
    let changed = backends.iter().find_map(|new| {
        present
            .iter()
            .find(|old| old.name == new.name && old.api != new.api)
            .map(|old| (new, old))
    });
    match changed {
        None => Ok(()),
        Some((new, old)) => Err(Status::failed_precondition(format!(
            "upstream {} at {} serves {}, but backend {} serves {}: Replace keeps the package a \
             backend serves (its {} callers would reach a server of {}); if that address is \
             meant, Add it under a new name, then drain and remove {}",
            spec.name, spec.addr, new.api, old.name, old.api, old.api, new.api, old.name
        ))),
    }
}

/// [`version_warnings`] of a change bringing `backends`, each also logged.
pub fn warnings(backends: &[Backend]) -> Vec<String> {
    let warnings = version_warnings(backends);
    for warning in &warnings {
        tracing::warn!(warning = %warning, "admin change accepted with a warning");
    }
    warnings
}

/// `shop.v2` → `Some(2)`, `shop.v2beta1` → `Some(2)`: the major version a package's last
/// component names, if it names one.
fn package_major(package: &str) -> Option<u64> {
    let last = package.rsplit('.').next()?.strip_prefix('v')?;
    let digits: String = last.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A warning for each backend whose version's major disagrees with the `vN` of the package it
/// implements (version `1.0.0` serving `increment.v2`): clients pinning `^1` would then be
/// answered by a `v2` API. A warning, not a refusal: a server's release version need not
/// follow its API package (an app at `3.4.0` may still serve `shop.v1`), and versions `0.x`
/// are not checked.
pub fn version_warnings(backends: &[Backend]) -> Vec<String> {
    backends
        .iter()
        .filter_map(|backend| {
            let major = package_major(&backend.api)?;
            let version = backend.version.major;
            (version != 0 && version != major).then(|| {
                format!(
                    "backend {} has version {} but serves {}: a client pinning x-api-version \
                     ^{version} is answered by the v{major} API; check that the version and the \
                     address are the ones meant",
                    backend.name, backend.version, backend.api
                )
            })
        })
        .collect()
}

/// `text` with every control character (newline, escape, ...) written as an escape (`\n`,
/// `\u{1b}`), for printing what a remote table holds on a terminal.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["v1", "v2-rc.1", "shop_v2", &"a".repeat(64)] {
            check_name(good).unwrap();
        }
        for (bad, says) in [
            ("", "empty"),
            ("v1\nforged", "'\\n'"),
            ("v\u{1b}[31m", "'\\u{1b}'"),
            ("a/b", "'/'"),
            (&"a".repeat(65), "at most 64"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
        }
    }

    #[test]
    fn addresses_are_exactly_host_and_port() {
        for good in [
            "127.0.0.1:7001",
            "localhost:1",
            "[::1]:65535",
            "a-b.example:80",
        ] {
            assert_eq!(host_port(good).unwrap(), good);
        }
        for bad in [
            "127.0.0.1:17001/:17099",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            "::1:7001",
            "[::1]7001",
            "[nope]:1",
            "host/path:80",
            "host name:80",
            ":80",
            "localhost",
        ] {
            assert!(host_port(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn packages_name_their_major() {
        assert_eq!(package_major("increment.v2"), Some(2));
        assert_eq!(package_major("shop.v1beta1"), Some(1));
        assert_eq!(package_major("shop"), None);
        check_package("increment.v1").unwrap();
        assert!(check_package("increment.v1\n").is_err());
        assert!(check_package("a..b").is_err());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\nb\u{1b}[0m"), "a\\nb\\u{1b}[0m");
        assert_eq!(escape_controls("plain é"), "plain é");
    }
}
