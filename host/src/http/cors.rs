//! Calls from web pages on other origins (CORS). Before a page may call the
//! gateway with a key, its browser asks (a preflight `OPTIONS`), and it
//! lets the page read an answer only when the answer names the page's
//! origin. LiteLLM allows every origin, and pages written for it expect
//! that; `general_settings.cors_allow_origins` narrows it or turns it off.
//! Credentials are never allowed: the gateway sets no cookie, so a page
//! must hold and send a key itself, and another site's page cannot act
//! with a visitor's session.
//!
//! Only requests that carry an `Origin` header go through tower-http's
//! [`CorsLayer`]; SDKs, curl and servers send none and pay nothing for it.

use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::Either;
use http::{HeaderValue, Request, Response, header::ORIGIN};
use tower::{Layer, Service};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, Cors, CorsLayer, ExposeHeaders};

/// The entry of `cors_allow_origins` that allows every origin.
pub const ANY_ORIGIN: &str = "*";
/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Why `origin` can never match a browser's `Origin` header, for the config
/// check; `None` when it can.
pub fn origin_problem(origin: &str) -> Option<String> {
    if origin == ANY_ORIGIN {
        return None;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Some(format!(
            "{origin:?} is not an origin: write scheme://host[:port], or \"*\" for any"
        ));
    };
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) || !host_ok {
        return Some(format!(
            "{origin:?} is not an origin: write scheme://host[:port] with no path, \
             query or trailing slash (a browser sends e.g. https://app.example.com)"
        ));
    }
    None
}

/// The CORS rules for `origins` (`general_settings.cors_allow_origins`;
/// every origin when unset); `None` when the list is empty. Entries the
/// config check refused are skipped.
pub fn layer(origins: Option<&[String]>) -> Option<CorsLayer> {
    let any = [ANY_ORIGIN.to_owned()];
    let origins = origins.unwrap_or(&any);
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == ANY_ORIGIN) {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter(|o| origin_problem(o).is_none())
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            // Whatever the page asks for: `Authorization` and `x-api-key`
            // are never covered by a `*` in an answer.
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            // The request id, cost and cache headers, for the page to read.
            .expose_headers(ExposeHeaders::any())
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Passes requests from browsers (those with an `Origin`) through the CORS
/// rules, and every other request straight on.
#[derive(Clone)]
pub struct CorsGate<S> {
    plain: S,
    cors: Option<Cors<S>>,
}

impl<S: Clone> CorsGate<S> {
    /// Wraps `inner`; without `rules` every request goes straight on.
    pub fn new(inner: S, rules: Option<CorsLayer>) -> Self {
        Self {
            cors: rules.map(|rules| rules.layer(inner.clone())),
            plain: inner,
        }
    }
}

impl<S, B, R> Service<Request<B>> for CorsGate<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        ready!(self.plain.poll_ready(cx))?;
        match &mut self.cors {
            Some(cors) => cors.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match &mut self.cors {
            Some(cors) if request.headers().contains_key(ORIGIN) => {
                Either::Left(cors.call(request))
            }
            _ => Either::Right(self.plain.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_a_browser_can_send_pass_and_others_are_named() {
        for ok in [
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert_eq!(origin_problem(ok), None, "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://",
            "://x",
            "https://a b",
        ] {
            let problem = origin_problem(bad).unwrap();
            assert!(problem.contains(&format!("{bad:?}")), "{problem}");
        }
    }

    #[test]
    fn an_empty_list_turns_cors_off() {
        assert!(layer(Some(&[])).is_none());
        assert!(layer(None).is_some());
    }
}
