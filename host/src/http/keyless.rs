//! Keyless access to what is normally the master key's (the admin API with
//! `admin_without_key_on_loopback`, the dashboard of a gateway without a
//! master key) trusts whoever can reach the socket. A web page the operator
//! happens to visit can reach it too, through the operator's browser: a
//! cross-site form post needs no preflight, and DNS rebinding gives a foreign
//! name a loopback address. So such access is refused to a request a page on
//! another origin sent (its `Origin` header names neither the gateway nor a
//! loopback host) and, on a loopback-only server, to one addressed to a
//! name that is not loopback (its `Host` header).

use std::net::IpAddr;

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::error::ApiError;

/// Why keyless access is refused to this request, if it is: sent by a page
/// of another origin, or (with `loopback_only`) addressed to a name that
/// is not loopback.
pub(super) fn page_refusal(headers: &HeaderMap, loopback_only: bool) -> Option<ApiError> {
    // A repeated header would let a check read one value while something
    // else (a proxy, a browser's own rules) acts on another.
    let (Some(host), Some(origin)) = (only_one(headers, HOST), only_one(headers, ORIGIN)) else {
        return Some(refusal(
            "the request repeats its Host or Origin header; \
             without a key this route answers only requests that name each once",
        ));
    };
    let host = host.and_then(|v| v.to_str().ok());
    if loopback_only && host.is_some_and(|h| !is_loopback_host(h)) {
        return Some(refusal(
            "the request is addressed to a name that is not loopback (its Host header); \
             without a key this route answers only requests to localhost, 127.0.0.1 or [::1]",
        ));
    }
    let origin = origin?;
    let site = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, site)| site);
    let same_origin = site.is_some_and(|site| host.is_some_and(|h| h.eq_ignore_ascii_case(site)));
    let loopback_page = loopback_only && site.is_some_and(is_loopback_host);
    if same_origin || loopback_page {
        return None;
    }
    Some(refusal(
        "a web page of another origin sent this request (its Origin header); \
         without a key this route answers only programs and the gateway's own pages",
    ))
}

/// The header's value when it appears at most once (`Some(None)` when
/// absent); `None` when it is repeated.
fn only_one(headers: &HeaderMap, name: HeaderName) -> Option<Option<&HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    values.next().is_none().then_some(first)
}

/// Whether `authority` (`host[:port]`, an IPv6 address in brackets) names
/// this machine whatever the resolver says.
fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refusal(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        message,
        None,
        Some("keyless_access_refused"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn programs_and_the_gateways_own_pages_are_admitted() {
        for pairs in [
            vec![],
            vec![("host", "127.0.0.1:4000")],
            vec![("host", "localhost")],
            vec![("host", "[::1]:4000")],
            vec![
                ("host", "127.0.0.1:4000"),
                ("origin", "http://127.0.0.1:4000"),
            ],
            vec![
                ("host", "localhost:4000"),
                ("origin", "http://localhost:3000"),
            ],
        ] {
            assert!(page_refusal(&headers(&pairs), true).is_none(), "{pairs:?}");
        }
    }

    #[test]
    fn a_foreign_page_or_a_rebound_name_is_refused() {
        for pairs in [
            vec![
                ("host", "127.0.0.1:4000"),
                ("origin", "https://evil.example"),
            ],
            vec![("host", "127.0.0.1:4000"), ("origin", "null")],
            vec![
                ("host", "evil.example:4000"),
                ("origin", "http://evil.example:4000"),
            ],
            vec![("host", "evil.example:4000")],
            vec![("host", "localhost.evil.example")],
        ] {
            let refused = page_refusal(&headers(&pairs), true).expect("refused");
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{pairs:?}");
        }
    }

    #[test]
    fn off_loopback_only_another_origin_is_refused() {
        let lan = [("host", "gateway.lan:4000")];
        assert!(page_refusal(&headers(&lan), false).is_none());
        let own = [
            ("host", "gateway.lan:4000"),
            ("origin", "http://gateway.lan:4000"),
        ];
        assert!(page_refusal(&headers(&own), false).is_none());
        let foreign = [
            ("host", "gateway.lan:4000"),
            ("origin", "http://127.0.0.1:9"),
        ];
        assert!(page_refusal(&headers(&foreign), false).is_some());
    }

    #[test]
    fn a_repeated_host_or_origin_is_refused() {
        for pairs in [
            [
                ("origin", "http://127.0.0.1:4000"),
                ("origin", "https://evil.example"),
            ],
            [("host", "127.0.0.1:4000"), ("host", "evil.example")],
        ] {
            assert!(page_refusal(&headers(&pairs), true).is_some(), "{pairs:?}");
        }
    }
}
