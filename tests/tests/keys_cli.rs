//! `conclave keys` and `conclave spend` against a running gateway: the
//! commands make the management calls and print their answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_mgmt_support;

use conclave_e2e::{FakeUpstream, run_conclave};
use keys_mgmt_support::{MASTER, config, get, start};
use serde_json::Value;

async fn cli(base: &str, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = run_conclave(
        args,
        &[("CONCLAVE_BASE_URL", base), ("CONCLAVE_MASTER_KEY", key)],
    )
    .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn keys_commands_create_list_update_block_and_delete_a_key() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let base = proxy.base.clone();

    let (ok, out, err) = cli(
        &base,
        MASTER,
        &[
            "keys",
            "new",
            "--alias",
            "cli-key",
            "--models",
            "echo,other",
            "--rpm",
            "5",
            "--duration",
            "1d",
            "--allowed-routes",
            "/v1/chat/completions,/key/info",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    assert_eq!(made["models"], serde_json::json!(["echo", "other"]));
    assert_eq!(made["rpm_limit"], 5);
    assert_eq!(
        made["allowed_routes"],
        serde_json::json!(["/v1/chat/completions", "/key/info"])
    );
    assert!(err.contains("shown this once"), "{err}");

    let (ok, out, err) = cli(&base, MASTER, &["keys", "list"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("cli-key") && out.contains(made["key_name"].as_str().unwrap()),
        "{out}"
    );
    assert!(!out.contains(&key), "the list never shows a key: {out}");

    let (ok, out, err) = cli(
        &base,
        MASTER,
        &["keys", "update", &key, "--rpm", "9", "--max-budget", "2.5"],
    )
    .await;
    assert!(ok, "{err}");
    let updated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (updated["rpm_limit"].clone(), updated["max_budget"].clone()),
        (9.into(), 2.5.into())
    );

    let (ok, out, _) = cli(&base, MASTER, &["keys", "info", &key]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["info"]["rpm_limit"],
        9
    );

    let (ok, _, err) = cli(&base, MASTER, &["keys", "block", &key]).await;
    assert!(ok, "{err}");
    let (_, info) = get(&proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["blocked"], true);
    let (ok, _, _) = cli(&base, MASTER, &["keys", "block", "--unblock", &key]).await;
    assert!(ok);

    let (ok, out, err) = cli(&base, MASTER, &["spend"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("START"), "{out}");
    let (ok, out, err) = cli(&base, MASTER, &["spend", "--report", "--json"]).await;
    assert!(ok, "{err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap().is_array());

    let (ok, out, err) = cli(&base, MASTER, &["keys", "delete", "--alias", "cli-key"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("deleted_keys"));
    let (status, _) = get(&proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keys_commands_fail_with_the_gateways_message() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let (ok, _, err) = cli(&proxy.base, "sk-not-the-master", &["keys", "list"]).await;
    assert!(!ok);
    assert!(
        err.contains("401") && err.contains("invalid API key"),
        "{err}"
    );
    let (ok, _, err) = cli(&proxy.base, MASTER, &["keys", "info", "sk-unknown-key"]).await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
}

#[tokio::test]
async fn the_commands_take_litellms_master_key_variable() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let out = run_conclave(
        &["keys", "list"],
        &[
            ("CONCLAVE_BASE_URL", proxy.base.as_str()),
            ("LITELLM_MASTER_KEY", MASTER),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
