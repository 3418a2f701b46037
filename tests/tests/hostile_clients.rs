//! Hostile request bodies, sent to the real binary: whatever their shape,
//! each is answered quickly with an OpenAI-shaped 4xx, nothing reaches the
//! upstream, and the gateway goes on serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{FakeUpstream, Proxy, chat_body, deployment, error_object};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// The most the gateway may have resident at any time during a case here.
/// A debug build starts at about 40 MiB and these cases peak at 40-45 MiB:
/// a 1 MiB hostile body costs a few MiB while it is parsed and refused.
/// The bound, about twice the start, catches amplification: a hostile body
/// held in dozens of copies or expanded into structures many times its size
/// before it is refused.
const PEAK_RSS_BOUND: u64 = 96 << 20;

/// The gateway's peak RSS stayed under [`PEAK_RSS_BOUND`].
fn assert_peak_rss(proxy: &Proxy) {
    proxy.assert_peak_rss_below(PEAK_RSS_BOUND);
}

async fn proxy(up: &FakeUpstream) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n",
        deployment("m", "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await
}

/// Posts `body` as it is; returns status, parsed body and how long it took.
async fn post_bytes(proxy: &Proxy, body: Vec<u8>) -> (u16, Value, Duration) {
    let started = Instant::now();
    let send = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send();
    let r = tokio::time::timeout(LIMIT, send)
        .await
        .expect("answered within the limit")
        .expect("the gateway answered (it did not crash or drop the connection)");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json, started.elapsed())
}

/// A normal request still gets a normal answer.
async fn assert_serving(proxy: &Proxy) {
    let (status, _, body) = tokio::time::timeout(LIMIT, proxy.chat(&chat_body("m", "hi")))
        .await
        .expect("a normal request is answered");
    assert_eq!(status, 200, "{body}");
}

/// A body of `n` distinct top-level keys around `model` and `messages`.
fn many_keys(n: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]"#);
    for i in 0..n {
        body.push_str(&format!(",\"k{i:06}\":\"abcd\""));
    }
    body.push('}');
    body.into_bytes()
}

#[tokio::test]
async fn a_megabyte_of_sixty_thousand_keys_is_refused_in_milliseconds_while_others_are_served() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    let hostile = many_keys(60_000);
    assert!(hostile.len() > 1_000_000, "{}", hostile.len());
    let normal_body = chat_body("m", "hi");
    let (hostile, normal) = tokio::join!(
        post_bytes(&proxy, hostile),
        tokio::time::timeout(LIMIT, proxy.chat(&normal_body))
    );
    let (status, body, took) = hostile;
    assert_eq!(status, 400, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("1024"), "{body}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (status, _, body) = normal.expect("the concurrent request is answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("a"), 1, "only the normal request went upstream");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_body_at_the_field_limit_is_served_and_one_more_field_is_400() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    // `model` and `messages` are two of the 1024.
    let (status, body, _) = post_bytes(&proxy, many_keys(1022)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = post_bytes(&proxy, many_keys(1023)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("1024"),
        "{body}"
    );
    assert_eq!(up.calls("a"), 1);
    assert_peak_rss(&proxy);
}

/// The Messages, token-count and Responses routes hold bodies to the same
/// field limit, each answering in its own error shape.
#[tokio::test]
async fn the_translated_routes_refuse_a_body_past_the_field_limit() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    let mut fields = serde_json::Map::new();
    fields.insert("model".into(), json!("m"));
    fields.insert("max_tokens".into(), json!(5));
    fields.insert("input".into(), json!("hi"));
    fields.insert(
        "messages".into(),
        json!([{"role": "user", "content": "hi"}]),
    );
    for i in 0..2_000 {
        fields.insert(format!("k{i:05}"), json!("abcd"));
    }
    let body = Value::Object(fields);
    for (path, shape) in [
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/responses", "openai"),
    ] {
        let r = proxy.post(path, &body).await;
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let answer: Value = r.json().await.unwrap();
        let message = if shape == "anthropic" {
            assert_eq!(answer["type"], "error", "{path}: {answer}");
            answer["error"]["message"].as_str().unwrap_or("").to_owned()
        } else {
            error_object(&answer)["message"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        assert!(message.contains("1024"), "{path}: {answer}");
    }
    assert_eq!(up.calls("a"), 0);
}

#[tokio::test]
async fn a_deeply_nested_body_is_400_not_a_crash_and_never_forwarded() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    let depth = 200_000;
    let arrays = format!(
        r#"{{"model":"m","messages":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let objects = format!(
        r#"{{"model":"m","messages":[],"metadata":{}1{}}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    let just_over = format!(
        r#"{{"model":"m","messages":[{}{}]}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    for body in [arrays, objects, just_over] {
        let (status, json, took) = post_bytes(&proxy, body.into_bytes()).await;
        assert_eq!(status, 400, "{json}");
        let e = error_object(&json);
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains("128"), "{json}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    assert_eq!(up.calls("a"), 0);
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn malformed_and_odd_bodies_get_openai_errors_and_the_gateway_keeps_serving() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    let huge_string = format!(r#"{{"model":"m","messages":"{}""#, "x".repeat(1 << 20));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe\x00{".to_vec(),
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{\"model\":\"m\",\"messages\":[],\"a\":".to_vec(),
        b"{\"model\":\"m\",\"messages\":[],\"s\":\"\\ud800\"".to_vec(),
        b"{\"model\":\"m\",\"messages\":[]}{\"model\":\"m\"}".to_vec(),
        b"{\"model\":\"m\",\"messages\":[\"\x00\"]}".to_vec(),
        huge_string.into_bytes(),
    ];
    for body in bodies {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (status, json, took) = post_bytes(&proxy, body).await;
        assert_eq!(status, 400, "{shown}: {json}");
        error_object(&json);
        assert!(took < Duration::from_secs(2), "{shown}: took {took:?}");
    }
    assert_eq!(up.calls("a"), 0);
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_404_or_405_that_leaves_a_body_unread_closes_the_connection_and_says_so() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up).await;
    let body = vec![b'x'; 100 * 1024];
    for (path, status) in [("/v1/nope", 404), ("/health/liveliness", 405)] {
        for _ in 0..20 {
            let r = proxy
                .client
                .post(proxy.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("answered");
            assert_eq!(r.status().as_u16(), status, "{path}");
            assert_eq!(r.headers()["connection"], "close", "{path}");
            // The next request on this client finds a connection that works.
            let next = proxy
                .client
                .get(proxy.url("/health/liveliness"))
                .send()
                .await
                .expect("the next request is answered");
            assert_eq!(next.status(), 200);
        }
    }
    // Without a body there is nothing left unread, and the connection stays.
    let r = proxy
        .client
        .get(proxy.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("connection").is_none());
}

#[tokio::test]
async fn a_refusal_before_the_body_is_read_closes_the_connection_and_says_so() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  master_key: sk-hostile-master\n",
        deployment("m", "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await;
    let body = vec![b'x'; 100 * 1024];
    for path in ["/v1/chat/completions", "/admin/reload", "/v1/messages"] {
        let r = proxy
            .client
            .post(proxy.url(path))
            .bearer_auth("sk-wrong")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["connection"], "close", "{path}");
    }
}
