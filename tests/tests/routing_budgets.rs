//! LiteLLM's budget routing, through the real binary: a provider whose
//! `provider_budget_config` cap is spent, or a deployment whose own
//! `max_budget` is, is passed over for the group's other deployments; a
//! group with none left is a 429 `budget_exceeded` naming the spent caps,
//! after which its fallbacks are tried; `/provider/budgets` lists the
//! provider caps; a cap that cannot be read stops the start naming its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::proxy::check_config;
use conclave_e2e::{FakeUpstream, Proxy};
use routing_support::{ask, config, error_message, header, model_id};

/// USD per prompt and per completion token; a fake answer has 5 and 7.
const PRICES: [(&str, &str); 2] = [
    ("input_cost_per_token", "0.001"),
    ("output_cost_per_token", "0.002"),
];
const CALL_COST: f64 = 5.0 * 0.001 + 7.0 * 0.002;

/// A priced deployment `dep` of `group` on the fake, called through
/// `provider`, with more `litellm_params`.
fn priced(up: &FakeUpstream, group: &str, dep: &str, provider: &str, more: &[&str]) -> String {
    let mut s = format!(
        "  - model_name: {group}\n    litellm_params:\n      model: {provider}/{dep}-model\n      api_base: {}\n      api_key: sk-test\n",
        up.api_base(dep)
    );
    for (k, v) in PRICES {
        s.push_str(&format!("      {k}: {v}\n"));
    }
    for line in more {
        s.push_str(&format!("      {line}\n"));
    }
    s.push_str(&format!("    model_info:\n      id: {dep}\n"));
    s
}

#[tokio::test]
async fn a_provider_whose_cap_is_spent_is_passed_over_for_the_groups_other_deployments() {
    let up = FakeUpstream::start().await;
    let cap = CALL_COST * 1.5;
    let proxy = Proxy::start(&config(
        &[
            priced(&up, "chat", "first", "openai", &["order: 1"]),
            priced(&up, "chat", "second", "groq", &["order: 2"]),
        ],
        &format!(
            "num_retries: 0\nprovider_budget_config: {{openai: {{budget_limit: {cap}, time_period: 1d}}}}"
        ),
    ))
    .await;
    let mut answered_by = Vec::new();
    for _ in 0..4 {
        let (status, headers, body) = ask(&proxy, "chat").await;
        assert_eq!(status, 200, "{body}");
        answered_by.push(model_id(&headers));
    }
    // The second openai call spends the cap: later calls go to groq.
    assert_eq!(answered_by, ["first", "first", "second", "second"]);
    assert_eq!((up.calls("first"), up.calls("second")), (2, 2));
    let listing = proxy.get_json("/provider/budgets").await;
    let openai = &listing["providers"]["openai"];
    assert_eq!(openai["time_period"], "1d", "{listing}");
    assert!((openai["budget_limit"].as_f64().unwrap() - cap).abs() < 1e-9);
    assert!(
        (openai["spend"].as_f64().unwrap() - 2.0 * CALL_COST).abs() < 1e-9,
        "{listing}"
    );
    assert!(openai["budget_reset_at"].is_string(), "{listing}");
    assert!(listing["providers"].get("groq").is_none(), "{listing}");
}

#[tokio::test]
async fn a_group_whose_caps_are_all_spent_is_refused_with_429_naming_them() {
    let up = FakeUpstream::start().await;
    let cap = CALL_COST / 2.0;
    let proxy = Proxy::start(&config(
        &[priced(
            &up,
            "solo",
            "only",
            "openai",
            &[&format!("max_budget: {cap}"), "budget_duration: 1h"],
        )],
        "num_retries: 0",
    ))
    .await;
    assert_eq!(ask(&proxy, "solo").await.0, 200);
    let (status, headers, body) = ask(&proxy, "solo").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    assert_eq!(body["error"]["code"], "model_group_over_budget", "{body}");
    let message = error_message(&body);
    assert!(message.contains("deployment only"), "{message}");
    assert!(message.contains(&format!("${cap:.6} per 1h")), "{message}");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((3000..=3600).contains(&retry), "retry-after {retry}");
    assert_eq!(up.calls("only"), 1);
}

#[tokio::test]
async fn a_group_over_its_caps_falls_back_to_the_next_group() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[
            priced(
                &up,
                "capped",
                "dear",
                "openai",
                &[
                    &format!("max_budget: {}", CALL_COST / 2.0),
                    "budget_duration: 1d",
                ],
            ),
            priced(&up, "spare", "cheap", "openai", &[]),
        ],
        "num_retries: 0\nfallbacks: [{capped: [spare]}]",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(ask(&proxy, "capped").await.0, 200);
    }
    assert_eq!((up.calls("dear"), up.calls("cheap")), (1, 2));
}

#[tokio::test]
async fn a_reload_keeps_what_an_unchanged_cap_has_spent() {
    let up = FakeUpstream::start().await;
    let yaml = config(
        &[priced(
            &up,
            "solo",
            "only",
            "openai",
            &[
                &format!("max_budget: {}", CALL_COST / 2.0),
                "budget_duration: 1d",
            ],
        )],
        "num_retries: 0",
    ) + "general_settings:\n  admin_without_key_on_loopback: true\n";
    let proxy = Proxy::start(&yaml).await;
    assert_eq!(ask(&proxy, "solo").await.0, 200);
    // The same cap in a new version (another setting changed).
    let reloaded = yaml.replace("num_retries: 0", "num_retries: 0\n  timeout: 30");
    conclave_e2e::proxy::replace_atomically(&proxy.config_path(), reloaded.as_bytes());
    let r = proxy.post("/admin/reload", &serde_json::json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(ask(&proxy, "solo").await.0, 429);
    assert_eq!(up.calls("only"), 1);
}

#[tokio::test]
async fn a_lowered_cap_holds_against_what_its_window_has_counted() {
    let up = FakeUpstream::start().await;
    let capped = |cap: f64| {
        config(
            &[priced(
                &up,
                "solo",
                "only",
                "openai",
                &[&format!("max_budget: {cap}"), "budget_duration: 1d"],
            )],
            "num_retries: 0",
        ) + "general_settings:\n  admin_without_key_on_loopback: true\n"
    };
    let proxy = Proxy::start(&capped(CALL_COST * 1.5)).await;
    assert_eq!(ask(&proxy, "solo").await.0, 200);
    conclave_e2e::proxy::replace_atomically(
        &proxy.config_path(),
        capped(CALL_COST / 2.0).as_bytes(),
    );
    let r = proxy.post("/admin/reload", &serde_json::json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (status, _, body) = ask(&proxy, "solo").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(up.calls("only"), 1);
}

#[tokio::test]
async fn a_cap_that_cannot_be_read_stops_the_start_naming_its_key() {
    let up = FakeUpstream::start().await;
    let provider_caps = [
        (
            "provider_budget_config: {openai: {budget_limit: 1, time_period: fortnightly}}",
            "router_settings.provider_budget_config.openai.time_period",
        ),
        (
            "provider_budget_config: {openai: {time_period: 1d}}",
            "router_settings.provider_budget_config.openai.budget_limit",
        ),
    ];
    let mut cases: Vec<(String, &str)> = provider_caps
        .iter()
        .map(|(settings, key)| {
            let yaml = config(&[priced(&up, "chat", "first", "openai", &[])], settings);
            (yaml, *key)
        })
        .collect();
    cases.push((
        config(
            &[priced(&up, "chat", "first", "openai", &["max_budget: 1"])],
            "num_retries: 0",
        ),
        "model_list[0].litellm_params.budget_duration",
    ));
    for (yaml, key) in cases {
        let (passed, text) = check_config(&yaml).await;
        assert!(!passed, "{text}");
        assert!(text.contains(key), "{key}: {text}");
    }
}
