//! TLS to upstreams, as LiteLLM users set it: an upstream whose certificate
//! an internal CA signed is refused until `ssl_verify` names that CA (or
//! turns checks off, in the config or with `SSL_VERIFY`); an upstream that
//! asks for a client certificate gets `ssl_certificate`'s. A file that
//! cannot be used stops the start, naming the setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::tls::{acceptor, fixture};
use conclave_e2e::{Behavior, FakeUpstream, Launch, Proxy, chat_body, deployments, failed_check};

fn config(up: &FakeUpstream, litellm_settings: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(up, &[("m", &[][..])]));
    yaml.push_str("router_settings:\n  num_retries: 0\n");
    if !litellm_settings.is_empty() {
        yaml.push_str(&format!("litellm_settings:\n{litellm_settings}"));
    }
    yaml
}

fn ca() -> String {
    fixture("ca.pem").display().to_string()
}

async fn tls_upstream(client_certificates: bool) -> FakeUpstream {
    let up = FakeUpstream::start_tls(acceptor(client_certificates)).await;
    up.set("m", Behavior::ok("over tls"));
    up
}

#[tokio::test]
async fn an_internal_ca_is_trusted_only_when_ssl_verify_names_it() {
    let up = tls_upstream(false).await;

    let unverified = Proxy::start(&config(&up, "")).await;
    let (status, _, body) = unverified.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 502, "an unknown issuer is refused: {body}");
    assert_eq!(up.calls("m"), 0);

    let trusting = Proxy::start(&config(&up, &format!("  ssl_verify: {}\n", ca()))).await;
    let (status, _, body) = trusting.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "over tls");
}

#[tokio::test]
async fn ssl_verify_false_in_the_config_or_the_environment_skips_the_checks() {
    let up = tls_upstream(false).await;

    let off = Proxy::start(&config(&up, "  ssl_verify: false\n")).await;
    let (status, _, body) = off.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert!(off.logs().contains("not checked"), "a warning says so");

    let by_env = Proxy::start_with(&config(&up, ""), &[("SSL_VERIFY", "False")], &[]).await;
    let (status, _, body) = by_env.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_upstream_that_asks_for_a_client_certificate_gets_ssl_certificates() {
    let up = tls_upstream(true).await;

    let without = Proxy::start(&config(&up, &format!("  ssl_verify: {}\n", ca()))).await;
    let (status, _, _) = without.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 502, "no client certificate, no answer");

    let with = Proxy::launch(
        &config(&up, ""),
        Launch::with(
            &[],
            &[
                ("SSL_CERT_FILE", &ca()),
                (
                    "SSL_CERTIFICATE",
                    &fixture("client.pem").display().to_string(),
                ),
            ],
        ),
    )
    .await;
    let (status, _, body) = with.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_unusable_file_stops_the_start_naming_its_setting() {
    let up = FakeUpstream::start().await;
    let stderr = failed_check(&config(&up, "  ssl_verify: /no/such/ca.pem\n")).await;
    assert!(
        stderr.contains("litellm_settings.ssl_verify: cannot read /no/such/ca.pem"),
        "{stderr}"
    );
    let not_a_key = fixture("ca.pem").display().to_string();
    let stderr = failed_check(&config(&up, &format!("  ssl_certificate: {not_a_key}\n"))).await;
    assert!(
        stderr.contains("litellm_settings.ssl_certificate:")
            && stderr.contains("client certificate and its private key"),
        "{stderr}"
    );
}
