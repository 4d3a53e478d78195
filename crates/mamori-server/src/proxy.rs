//! The client's address behind a reverse proxy.
//!
//! Behind a TLS-terminating proxy on the same host, every connection comes from 127.0.0.1:
//! without this, every caller would look like a trusted-network caller (no second factor
//! needed, `auth.trusted_networks`), share one login-throttle bucket, and be logged under the
//! proxy's address. With `trusted_proxies` set, a connection *from* one of those networks is
//! attributed to the address its `X-Forwarded-For` names: the right-most entry that is not
//! itself a trusted proxy (entries further left were written by the client and prove
//! nothing). A trusted proxy that sends no usable entry gets the unspecified address —
//! never trusted, one shared throttle bucket — rather than its own loopback address.
//! Connections from anywhere else keep their socket address, whatever headers they send —
//! except that a loopback connection carrying `X-Forwarded-For` while no proxy is configured
//! is an unconfigured local proxy: it too gets the unspecified address (fail closed: a second
//! factor is asked of everyone), and a warning says what to set.
//! Measures: 001-20-tech-1-5 (lockout and throttling per source), 000-8-access-11 (records of
//! where access came from).

use crate::tls::Peer;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Once;

const FORWARDED_FOR: &str = "x-forwarded-for";
/// A caller whose address is not known: outside every trusted network.
const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The caller's address: the socket's, or for a connection from a trusted proxy the client
/// its `X-Forwarded-For` names. `None` only for a router served without connect info.
/// Resolved where it is read rather than by a middleware layer, which would cost every
/// request a service clone (measured: BENCHMARKS.md, session 12).
pub(crate) fn client_ip(proxies: &[IpNet], parts: &Parts) -> Option<IpAddr> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<Peer>>()?;
    // IPv4 callers of a dual-stack listener arrive as `::ffff:a.b.c.d`: networks, windows and
    // policies are written in IPv4.
    let ip = peer.addr.ip().to_canonical();
    if trusted(proxies, ip) {
        let client = forwarded_client(proxies, &parts.headers);
        if client.is_none() {
            // Once per process: a client can send such requests at will.
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                tracing::warn!(proxy = %ip, "a trusted proxy sent no usable X-Forwarded-For; such callers are unknown")
            });
        }
        return Some(client.unwrap_or(UNKNOWN));
    }
    if proxies.is_empty() && ip.is_loopback() && parts.headers.contains_key(FORWARDED_FOR) {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "requests from {ip} carry X-Forwarded-For, but no trusted_proxies are configured: they are treated as \
                 coming from an unknown, untrusted address; list the proxy in trusted_proxies (mamori.toml)"
            )
        });
        return Some(UNKNOWN);
    }
    Some(ip)
}

fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    proxies.iter().any(|n| n.contains(&ip.to_canonical()))
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy; `None` when there is
/// none, or when the first such entry is not an address. Entries are read from the right
/// as bytes and only as far as needed: what the client wrote further left (any bytes at all)
/// cannot change the answer.
fn forwarded_client(proxies: &[IpNet], headers: &HeaderMap) -> Option<IpAddr> {
    let mut entries = headers.get_all(FORWARDED_FOR).iter().rev().flat_map(|v| v.as_bytes().rsplit(|b| *b == b','));
    let right_most = parse_entry(entries.next()?)?;
    if !trusted(proxies, right_most) {
        return Some(right_most);
    }
    let mut hops = 1;
    for entry in entries {
        hops += 1;
        let ip = parse_entry(entry)?;
        if !trusted(proxies, ip) {
            return Some(ip);
        }
    }
    // Every entry claims a proxy address. One alone is a caller on a proxy host (a script on
    // the proxy's machine) as the proxy saw it. With several, those left of the right-most
    // could be a caller's own, written to pass as a trusted network from inside a (too) broad
    // proxy range: nobody is believed.
    (hops == 1).then_some(right_most)
}

/// `192.0.2.7`, `2001:db8::7`, `192.0.2.7:51234` or `[2001:db8::7]:51234`, with optional
/// surrounding spaces.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry.trim_ascii()).ok()?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let proxies: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/24".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let cases: &[(&[&str], Option<IpAddr>)] = &[
            (&["192.0.2.7"], ip("192.0.2.7")),
            // The client wrote the left part: it cannot pick a trusted address for itself.
            (&["127.0.0.1, 192.0.2.7"], ip("192.0.2.7")),
            (&["198.51.100.1, 192.0.2.7, 10.0.0.5"], ip("192.0.2.7")),
            (&["198.51.100.1", "192.0.2.7"], ip("192.0.2.7")),
            (&["[2001:db8::7]:443"], ip("2001:db8::7")),
            (&["192.0.2.7:51234"], ip("192.0.2.7")),
            (&["::ffff:192.0.2.7"], ip("192.0.2.7")),
            (&["10.0.0.9, 127.0.0.1"], None),
            (&["127.0.0.1"], ip("127.0.0.1")),
            (&["127.0.0.1", "10.0.0.9"], None),
            (&[" 192.0.2.7 ,10.0.0.5 "], ip("192.0.2.7")),
            (&[], None),
            (&["unknown"], None),
            (&["192.0.2.7, garbage"], None),
            // Garbage left of the client's entry was the client's own doing.
            (&["garbage, 192.0.2.7"], ip("192.0.2.7")),
        ];
        for (values, expected) in cases {
            assert_eq!(forwarded_client(&proxies, &headers(values)), *expected, "{values:?}");
        }
        // Bytes the client wrote left of the entries examined do not matter.
        let mut raw = HeaderMap::new();
        raw.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.7").unwrap());
        assert_eq!(forwarded_client(&proxies, &raw), ip("192.0.2.7"));
        let mut raw = HeaderMap::new();
        raw.append("x-forwarded-for", HeaderValue::from_bytes(b"192.0.2.7, \xff").unwrap());
        assert_eq!(forwarded_client(&proxies, &raw), None);
        assert!(trusted(&proxies, "::ffff:127.0.0.1".parse().unwrap()), "IPv4-mapped loopback");
        assert!(!trusted(&proxies, "192.0.2.7".parse().unwrap()));
    }
}
