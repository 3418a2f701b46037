//! `general_settings.allowed_ips`: clients from listed addresses are
//! served; every other client is answered 403 on every route, in the API's
//! own error shape, before its key is looked at. With
//! `use_x_forwarded_for`, the address the reverse proxy appended last is
//! judged, never what the client wrote before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use conclave_e2e::{FakeUpstream, Proxy, chat_body, keyed_config};
use serde_json::Value;

const MASTER: &str = "sk-ip-master";

fn config(up: &FakeUpstream, general: &str) -> String {
    keyed_config(up, MASTER, general)
}

/// A client whose connections come from `source` (any 127/8 address is
/// the loopback interface's).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn chat(
    proxy: &Proxy,
    client: &reqwest::Client,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&chat_body("m", "hi"));
    if let Some(value) = forwarded {
        request = request.header("x-forwarded-for", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn listed_addresses_are_served_and_others_refused_on_every_route() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  allowed_ips: ['127.0.0.2', '10.0.0.0/8']\n")).await;
    let listed = client_from("127.0.0.2");
    let other = client_from("127.0.0.1");

    assert_eq!(chat(&proxy, &listed, None).await.status(), 200);

    let refused = chat(&proxy, &other, None).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().contains_key("x-conclave-request-id"));
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Access forbidden: IP address not allowed."),
        "{body}"
    );
    assert!(message.contains("127.0.0.1"), "{body}");
    assert_eq!(body["error"]["code"], "ip_not_allowed");
    assert_eq!(up.calls("m"), 1, "the refused request reached no upstream");

    // Probes, the admin API and unknown paths are refused alike.
    for path in [
        "/health/liveliness",
        "/admin/status",
        "/v1/models",
        "/nowhere",
    ] {
        let r = other
            .get(proxy.url(path))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let listed_probe = listed
        .get(proxy.url("/health/liveliness"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed_probe.status(), 200);
}

#[tokio::test]
async fn the_messages_api_refuses_in_anthropics_shape() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  allowed_ips: ['127.0.0.2']\n")).await;
    let refused = client_from("127.0.0.1")
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", MASTER)
        .json(&serde_json::json!({
            "model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not allowed")
    );
}

#[tokio::test]
async fn behind_a_proxy_the_last_forwarded_address_is_judged() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        "  allowed_ips: ['203.0.113.7']\n  use_x_forwarded_for: true\n",
    ))
    .await;
    let client = reqwest::Client::new();

    assert_eq!(
        chat(&proxy, &client, Some("203.0.113.7")).await.status(),
        200
    );
    // A proxy that appends: the client's own claim comes first.
    assert_eq!(
        chat(&proxy, &client, Some("10.1.1.1, 203.0.113.7"))
            .await
            .status(),
        200
    );
    assert_eq!(
        chat(&proxy, &client, Some("203.0.113.7, 198.51.100.4"))
            .await
            .status(),
        403,
        "an address the client wrote before the proxy's is not believed"
    );
    assert_eq!(chat(&proxy, &client, Some("garbage")).await.status(), 403);
    // Without the header the connection's own address is judged.
    assert_eq!(chat(&proxy, &client, None).await.status(), 403);
}
