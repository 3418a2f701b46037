//! `general_settings.allowed_ips`: the client addresses the gateway serves.
//! A client outside the list is answered 403 on every route, probes and
//! admin API included, before its key is looked at, as LiteLLM does.
//!
//! The address judged is the connection's peer, or with
//! `use_x_forwarded_for` the last entry of `X-Forwarded-For`: the one the
//! reverse proxy in front of the gateway added. Earlier entries are the
//! client's own word and are never read. A request without the header is
//! judged by its peer; one whose last entry is not an address is refused.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::{HeaderMap, Request, StatusCode};
use ipnet::IpNet;

use super::error::ApiError;

/// The connection's peer address, which the accept loop puts on every
/// request when an allowlist is configured (and only then: it costs an
/// insertion a request).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub IpAddr);

/// The addresses served, parsed once at start-up.
#[derive(Debug)]
pub struct IpAllowlist {
    nets: Vec<IpNet>,
    use_x_forwarded_for: bool,
}

/// Why an `allowed_ips` entry cannot be used, for the config's key path.
pub fn entry_problem(entry: &str) -> Option<String> {
    parse_entry(entry).err()
}

/// An IP address (a one-address range) or a CIDR range. An IPv4 address
/// written in IPv6's mapped form is read as the IPv4 address, as clients
/// of a dual-stack listener are.
fn parse_entry(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    entry.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!("{entry:?} is neither an IP address nor a CIDR range (such as 10.0.0.0/8)")
    })
}

impl IpAllowlist {
    /// The allowlist of `entries`; the first unusable entry's index and
    /// reason otherwise.
    pub fn new(entries: &[String], use_x_forwarded_for: bool) -> Result<Self, (usize, String)> {
        let nets = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_entry(entry).map_err(|why| (i, why)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            nets,
            use_x_forwarded_for,
        })
    }

    /// Whether `ip` is served. An IPv4 client is also matched in IPv6's
    /// mapped form, so that `::ffff:10.0.0.0/104` or `::/0` take it too.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let mapped = match ip {
            IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
            IpAddr::V6(_) => None,
        };
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
    }

    /// The 403 for a request from an address not served; `None` when it is
    /// served.
    fn refusal<B>(&self, request: &Request<B>) -> Option<Response> {
        let peer = request.extensions().get::<PeerIp>().map(|p| p.0);
        let client = if self.use_x_forwarded_for {
            match last_forwarded(request.headers()) {
                Forwarded::Absent => peer,
                Forwarded::Address(ip) => Some(ip),
                Forwarded::Unreadable => None,
            }
        } else {
            peer
        }
        .map(|ip| ip.to_canonical());
        if client.is_some_and(|ip| self.allows(ip)) {
            return None;
        }
        let path = request.uri().path();
        // Refused before a request context exists: this line is its access log.
        tracing::info!(
            client = %client.map_or_else(|| "unreadable".to_owned(), |ip| ip.to_string()),
            method = %request.method(),
            path,
            status = 403,
            "refused: the client's address is not in general_settings.allowed_ips"
        );
        let error = forbidden(client);
        let response = if super::messages::looks_like_messages_path(path) {
            super::messages::in_anthropic_shape(&error)
        } else {
            error.into_response()
        };
        Some(super::routes::closing_if_body_unread(request, response))
    }
}

/// What the last `X-Forwarded-For` entry says.
enum Forwarded {
    Absent,
    Address(IpAddr),
    Unreadable,
}

/// The last entry of the last `X-Forwarded-For` header: an address, with a
/// port as some proxies write it (`1.2.3.4:5678`, `[::1]:80`) or without.
fn last_forwarded(headers: &HeaderMap) -> Forwarded {
    let Some(value) = headers.get_all("x-forwarded-for").iter().next_back() else {
        return Forwarded::Absent;
    };
    let Some(last) = value
        .to_str()
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
    else {
        return Forwarded::Unreadable;
    };
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|s| s.ip()))
        .map_or(Forwarded::Unreadable, Forwarded::Address)
}

/// The refusal, in LiteLLM's words with the address judged after them.
#[cold]
fn forbidden(client: Option<IpAddr>) -> ApiError {
    let which = client.map_or_else(
        || "the client's address could not be read".to_owned(),
        |ip| format!("{ip} is not in general_settings.allowed_ips"),
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        "auth_error",
        format!("Access forbidden: IP address not allowed. ({which})"),
        None,
        Some("ip_not_allowed"),
    )
}

/// The service that refuses clients outside the allowlist, around the
/// routes. Without an allowlist it only passes requests on.
#[derive(Clone)]
pub struct IpGate<S> {
    inner: S,
    allowlist: Option<Arc<IpAllowlist>>,
}

impl<S> IpGate<S> {
    /// Wraps `inner` (the routes).
    pub fn new(inner: S, allowlist: Option<Arc<IpAllowlist>>) -> Self {
        Self { inner, allowlist }
    }
}

impl<S, B> tower::Service<Request<B>> for IpGate<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(refused) = self
            .allowlist
            .as_ref()
            .and_then(|list| list.refusal(&request))
        {
            return Either::Right(ready(Ok(refused)));
        }
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], xff: bool) -> IpAllowlist {
        let entries: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        IpAllowlist::new(&entries, xff).unwrap()
    }

    fn request(peer: &str, forwarded: &[&str]) -> Request<()> {
        let mut builder = Request::builder().uri("/v1/chat/completions");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerIp(peer.parse().unwrap()));
        request
    }

    #[test]
    fn addresses_and_ranges_are_served_and_others_are_not() {
        let list = list(&["192.168.1.1", "10.0.0.0/8", "2001:db8::/32"], false);
        for ip in [
            "192.168.1.1",
            "10.20.30.40",
            "2001:db8::7",
            "::ffff:10.1.2.3",
        ] {
            assert!(list.allows(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.1.2", "11.0.0.1", "2001:db9::1", "127.0.0.1"] {
            assert!(!list.allows(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_mapped_ipv4_entry_serves_the_ipv4_client() {
        let mapped_address = list(&["::ffff:127.0.0.1"], false);
        assert!(mapped_address.allows("127.0.0.1".parse().unwrap()));
        let mapped_range = list(&["::ffff:10.0.0.0/104"], false);
        assert!(mapped_range.allows("10.1.2.3".parse().unwrap()));
        assert!(!mapped_range.allows("11.1.2.3".parse().unwrap()));
        assert!(list(&["::/0"], false).allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn unusable_entries_are_named() {
        let entries = vec!["127.0.0.1".to_owned(), "10.0.0.300".to_owned()];
        let (i, why) = IpAllowlist::new(&entries, false).unwrap_err();
        assert_eq!(i, 1);
        assert!(why.contains("\"10.0.0.300\""), "{why}");
        assert!(entry_problem("localhost").is_some());
        assert!(entry_problem(" 10.0.0.0/8 ").is_none());
    }

    #[test]
    fn the_peer_is_judged_without_forwarding() {
        let list = list(&["127.0.0.1"], false);
        assert!(list.refusal(&request("127.0.0.1", &["10.9.9.9"])).is_none());
        let refused = list.refusal(&request("10.9.9.9", &["127.0.0.1"])).unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn with_forwarding_only_the_last_entry_counts() {
        let list = list(&["203.0.113.7"], true);
        // The proxy appended the real client after what the client claimed.
        assert!(
            list.refusal(&request("127.0.0.1", &["203.0.113.7, 10.0.0.1"]))
                .is_some()
        );
        assert!(
            list.refusal(&request("127.0.0.1", &["10.0.0.1, 203.0.113.7"]))
                .is_none()
        );
        assert!(
            list.refusal(&request("127.0.0.1", &["10.0.0.1", "203.0.113.7:4411"]))
                .is_none()
        );
        assert!(
            list.refusal(&request("127.0.0.1", &["not an address"]))
                .is_some()
        );
        // No header: the peer is judged.
        assert!(list.refusal(&request("203.0.113.7", &[])).is_none());
        assert!(list.refusal(&request("127.0.0.1", &[])).is_some());
    }

    #[test]
    fn without_a_peer_address_a_request_is_refused() {
        let list = list(&["127.0.0.1"], false);
        let request = Request::builder().uri("/health").body(()).unwrap();
        assert!(list.refusal(&request).is_some());
    }
}
