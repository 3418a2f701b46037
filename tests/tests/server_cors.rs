//! Web pages on other origins: a browser's preflight is answered without a
//! key, its answers name the origins `cors_allow_origins` allows (any by
//! default, as LiteLLM), never with credentials, and clients that send no
//! `Origin` get answers without CORS headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::{FakeUpstream, Proxy, chat_body, keyed_config};
use reqwest::{Method, Response};

const MASTER: &str = "sk-cors-master";
const PAGE: &str = "https://app.example";

fn config(up: &FakeUpstream, general: &str) -> String {
    keyed_config(up, MASTER, general)
}

/// The browser's question before a keyed JSON POST from `origin`.
async fn preflight(proxy: &Proxy, origin: &str) -> Response {
    proxy
        .client
        .request(Method::OPTIONS, proxy.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

/// A keyed chat request, from `origin` when given.
async fn chat_from(proxy: &Proxy, origin: Option<&str>) -> Response {
    let mut request = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&chat_body("m", "hi"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn any_page_may_call_by_default_with_its_own_key_and_no_credentials() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "")).await;

    let asked = preflight(&proxy, PAGE).await;
    assert!(asked.status().is_success(), "{}", asked.status());
    assert_eq!(header(&asked, "access-control-allow-origin"), Some("*"));
    let allowed = header(&asked, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert_eq!(header(&asked, "access-control-allow-credentials"), None);

    let answer = chat_from(&proxy, Some(PAGE)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
    assert!(header(&answer, "access-control-expose-headers").is_some());

    // An error is readable by the page too.
    let refused = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("origin", PAGE)
        .json(&chat_body("m", "no key"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, "access-control-allow-origin"), Some("*"));

    let plain = chat_from(&proxy, None).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
    assert_eq!(header(&plain, "vary"), None);
}

#[tokio::test]
async fn only_listed_origins_are_named_in_answers() {
    let up = FakeUpstream::start().await;
    let general = format!("  cors_allow_origins: ['{PAGE}', 'http://localhost:3000']\n");
    let proxy = Proxy::start(&config(&up, &general)).await;

    let asked = preflight(&proxy, PAGE).await;
    assert_eq!(header(&asked, "access-control-allow-origin"), Some(PAGE));
    let answer = chat_from(&proxy, Some(PAGE)).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(PAGE));

    let other = preflight(&proxy, "https://elsewhere.example").await;
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    let answer = chat_from(&proxy, Some("https://elsewhere.example")).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn an_empty_list_answers_no_page() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  cors_allow_origins: []\n")).await;
    let asked = preflight(&proxy, PAGE).await;
    assert_eq!(asked.status(), 405);
    assert_eq!(header(&asked, "access-control-allow-origin"), None);
    let answer = chat_from(&proxy, Some(PAGE)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}
