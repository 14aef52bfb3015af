//! The address of the client a request comes from, for the sign-in
//! throttle.
//!
//! Under the Functions host the handler's TCP peer is the host itself, on
//! 127.0.0.1, for every request: the client is only in the headers. In
//! Azure the request reaches the host through the App Service front end,
//! which sets `CLIENT-IP` (`ip:port`) to the TCP peer it saw, overwriting
//! whatever the client sent (documented), and appends that peer
//! (`ip:port`) to `X-Forwarded-For`; the host forwards every header as it
//! is. So, under the host, in this order: `CLIENT-IP`, else the last entry
//! of `X-Forwarded-For`, its port stripped. `X-Client-IP` is not
//! documented as overwritten on every plan, so a client could choose it:
//! never read. Earlier `X-Forwarded-For` entries are whatever the client
//! sent: never read either.
//! Behind another proxy in front (Front Door, a gateway) these name that
//! proxy, and everyone behind it shares one budget.
//!
//! Not under the host (`handler serve`), nothing stands in front to
//! overwrite these headers, so anyone could set them: only the TCP peer
//! counts. A request without a usable address (a router served without
//! connect info, headers missing under the host) counts as the peer, or
//! else as `0.0.0.0`: one shared budget, never none.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Once;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

/// The client address the sign-in throttle found for a request, in its
/// extensions for the handlers after it (the login back-off keys by it).
/// A handler reached without the throttle sees `0.0.0.0`: one shared key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddress>()
            .copied()
            .unwrap_or(ClientAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

/// Which of a request's facts name its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddresses {
    /// Under the Functions host: the front end's headers, else the peer.
    FromFrontEnd,
    /// Locally: the TCP peer only.
    PeerOnly,
}

pub const CLIENT_IP: &str = "client-ip";
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address: see the module's documentation for which.
pub fn client_address(
    source: ClientAddresses,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> IpAddr {
    let from_headers = match source {
        ClientAddresses::FromFrontEnd => from_front_end(headers),
        ClientAddresses::PeerOnly => None,
    };
    from_headers
        .or(peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .to_canonical()
}

fn from_front_end(headers: &HeaderMap) -> Option<IpAddr> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(ip_of)
    };
    let forwarded = || {
        // The last header line's last entry: the one the front end appended.
        let last = headers.get_all(X_FORWARDED_FOR).iter().next_back()?;
        ip_of(last.to_str().ok()?.rsplit(',').next()?)
    };
    let (found, from) = if let Some(ip) = header(CLIENT_IP) {
        (Some(ip), CLIENT_IP)
    } else if let Some(ip) = forwarded() {
        (Some(ip), X_FORWARDED_FOR)
    } else {
        (None, "none: the TCP peer")
    };
    // Which header names clients here is not documented for every plan:
    // say once which one did (never the address).
    static SAID: Once = Once::new();
    SAID.call_once(|| tracing::info!(header = from, "client addresses come from this header"));
    found
}

/// An address as the headers write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]` or `[::1]:443`.
pub fn ip_of(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn peer() -> Option<SocketAddr> {
        Some("127.0.0.1:50000".parse().unwrap())
    }

    fn under_host(pairs: &[(&'static str, &str)]) -> String {
        client_address(ClientAddresses::FromFrontEnd, &headers(pairs), peer()).to_string()
    }

    #[test]
    fn addresses_with_and_without_ports() {
        for (text, ip) in [
            ("203.0.113.9", "203.0.113.9"),
            (" 203.0.113.9:51234 ", "203.0.113.9"),
            ("2001:db8::7", "2001:db8::7"),
            ("[::1]:443", "::1"),
            ("[2001:db8::7]", "2001:db8::7"),
        ] {
            assert_eq!(ip_of(text), Some(ip.parse().unwrap()), "{text}");
        }
        for garbage in ["", "unknown", "1.2.3", "[::1", "1.2.3.4:port", "::1]:443"] {
            assert_eq!(ip_of(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn under_the_host_the_front_ends_headers_in_order() {
        let all = [
            (CLIENT_IP, "203.0.113.2:4000"),
            (X_FORWARDED_FOR, "203.0.113.3:5000"),
        ];
        assert_eq!(under_host(&all), "203.0.113.2");
        assert_eq!(under_host(&all[1..]), "203.0.113.3");
        let chosen = [
            ("x-client-ip", "198.51.100.66"),
            (X_FORWARDED_FOR, "203.0.113.3:5000"),
        ];
        assert_eq!(
            under_host(&chosen),
            "203.0.113.3",
            "X-Client-IP is never read"
        );
        assert_eq!(under_host(&[]), "127.0.0.1", "no header: the peer");
    }

    #[test]
    fn only_the_last_forwarded_entry_counts() {
        let spoofed = [(
            X_FORWARDED_FOR,
            "198.51.100.66, 10.0.0.1, [2001:db8::5]:443",
        )];
        assert_eq!(under_host(&spoofed), "2001:db8::5");
        let two_lines = [
            (X_FORWARDED_FOR, "198.51.100.66"),
            (X_FORWARDED_FOR, "192.0.2.44:1234"),
        ];
        assert_eq!(under_host(&two_lines), "192.0.2.44");
    }

    #[test]
    fn garbage_falls_back_to_the_next_source_then_the_peer() {
        assert_eq!(
            under_host(&[(CLIENT_IP, "not an ip"), (X_FORWARDED_FOR, "192.0.2.8:1")]),
            "192.0.2.8"
        );
        assert_eq!(
            under_host(&[(CLIENT_IP, "nope"), (X_FORWARDED_FOR, "1.2.3.4, garbage")]),
            "127.0.0.1"
        );
        let none = client_address(ClientAddresses::FromFrontEnd, &HeaderMap::new(), None);
        assert_eq!(none, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn locally_headers_are_ignored() {
        let h = headers(&[(CLIENT_IP, "203.0.113.1"), (X_FORWARDED_FOR, "203.0.113.3")]);
        let peer: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().unwrap();
        assert_eq!(
            client_address(ClientAddresses::PeerOnly, &h, Some(peer)).to_string(),
            "192.0.2.1"
        );
    }
}
