//! The dashboard in a real headless Chromium against the real binary on the
//! offline demo config (with a master key, so keys can be made): log in, a
//! request appears in the live table, a council run is drawn, a key made in
//! the page works, the playground streams a composite answer, and every page
//! renders on a phone in dark mode without a console error. Each test leaves
//! screenshots under the target directory (`tmp/dashboard-screenshots`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::Proxy;
use conclave_e2e::browser::Browser;
use fantoccini::Locator;
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../config/demo.yaml");
const MASTER_KEY: &str = "sk-demo-dashboard";

async fn demo() -> Proxy {
    Proxy::start_with(DEMO, &[("CONCLAVE_MASTER_KEY", MASTER_KEY)], &[]).await
}

/// Signs in through the login form with `key`.
async fn log_in(browser: &Browser, proxy: &Proxy, key: &str) {
    browser.open(&proxy.url("/ui/")).await;
    browser
        .type_into("#login-key", "the login form's key field", key)
        .await;
    browser.click("#login-submit", "the login button").await;
    browser
        .wait_for(
            "#nav:not([hidden]) a[data-nav=\"requests\"]",
            "the navigation after login",
        )
        .await;
}

/// Sends a chat request as `key` and returns its request id.
async fn ask(proxy: &Proxy, key: &str, model: &str, prompt: &str) -> String {
    let response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{model} did not answer");
    response.headers()["x-conclave-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The status of a chat request made with `key`.
async fn status_as(proxy: &Proxy, key: &str) -> u16 {
    proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "demo-fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_request_made_after_login_appears_in_the_live_table_within_two_seconds() {
    let Some(browser) = Browser::start("live-table", 1280, 900).await else {
        return;
    };
    let proxy = demo().await;
    log_in(&browser, &proxy, MASTER_KEY).await;
    // The key lives in session storage only: not in the URL, not in local storage.
    let stored = browser
        .eval(
            "return [location.href, JSON.stringify(sessionStorage), JSON.stringify(localStorage)]",
        )
        .await;
    assert!(
        !stored[0].as_str().unwrap().contains(MASTER_KEY),
        "{stored}"
    );
    assert!(stored[1].as_str().unwrap().contains(MASTER_KEY), "{stored}");
    assert!(
        !stored[2].as_str().unwrap().contains(MASTER_KEY),
        "{stored}"
    );

    browser.open(&proxy.url("/ui/#/requests")).await;
    browser
        .wait_for("#requests-table", "the requests table")
        .await;
    let id = ask(
        &proxy,
        MASTER_KEY,
        "demo-fast",
        "hello from the browser test",
    )
    .await;
    let asked = Instant::now();
    browser
        .wait_for_within(
            &format!("tr[data-request-id=\"{id}\"]"),
            "the new request's row in the live table",
            Duration::from_secs(2),
        )
        .await;
    assert!(asked.elapsed() <= Duration::from_secs(2));
    let row = browser
        .client
        .find(Locator::Css(&format!("tr[data-request-id=\"{id}\"]")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(row.contains("demo-fast"), "{row}");
    assert!(row.contains("200"), "{row}");
    browser.screenshot("requests").await;

    // The models page: live state per deployment, and the reload button works.
    browser.open(&proxy.url("/ui/#/models")).await;
    browser
        .wait_for(
            "#models-table tr[data-deployment][data-state=\"healthy\"]",
            "a healthy deployment's row",
        )
        .await;
    browser
        .wait_for(
            "#profiles-table tr[data-profile=\"council_demo\"]",
            "the council profile's row",
        )
        .await;
    browser.click("#reload-button", "the reload button").await;
    browser
        .wait_for_text("#reload-result", "Reloaded", "the reload's result")
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_council_request_page_draws_its_stages_member_calls_and_ranking() {
    let Some(browser) = Browser::start("council-trace", 1280, 1000).await else {
        return;
    };
    let proxy = demo().await;
    // Streamed, so the chairman's answer takes the time its chunks take.
    let response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"model": "demo-council", "stream": true, "messages": [{"role": "user", "content": "What is six times seven?"}]}))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-conclave-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response.text().await.unwrap().contains("[DONE]"));
    log_in(&browser, &proxy, MASTER_KEY).await;
    browser
        .open(&proxy.url(&format!("/ui/#/requests/{id}")))
        .await;
    browser
        .wait_for(
            &format!("#request-detail[data-request-id=\"{id}\"]"),
            "the council request's page",
        )
        .await;
    for stage in [
        "stage 1: answers",
        "stage 2: rankings",
        "stage 3: synthesis",
    ] {
        browser
            .wait_for(
                &format!("#trace-timeline [data-stage=\"{stage}\"]"),
                &format!("the timeline lane of {stage:?}"),
            )
            .await;
        browser
            .wait_for(
                &format!("#trace-tree [data-stage=\"{stage}\"]"),
                &format!("the tree node of {stage:?}"),
            )
            .await;
    }
    for (stage, model) in [
        ("stage 1: answers", "demo-proposer-a"),
        ("stage 1: answers", "demo-proposer-b"),
        ("stage 2: rankings", "demo-reviewer-a"),
        ("stage 2: rankings", "demo-reviewer-b"),
        ("stage 3: synthesis", "demo-chairman"),
    ] {
        browser
            .wait_for(
                &format!("#trace-timeline g[data-call][data-model=\"{model}\"]"),
                &format!("the timeline bar of {model}"),
            )
            .await;
        browser
            .wait_for(
                &format!(
                    "#trace-tree [data-stage=\"{stage}\"] [data-call][data-model=\"{model}\"]"
                ),
                &format!("{model}'s call under {stage:?} in the tree"),
            )
            .await;
    }
    let map = browser
        .wait_for_text(
            "#anonymization-map",
            "demo-proposer-a",
            "the anonymisation map",
        )
        .await;
    assert!(map.contains("demo-proposer-b"), "{map}");
    // Both demo reviewers put Response B (proposer B) first.
    let ranking = browser
        .wait_for("#ranking-table", "the aggregate ranking table")
        .await;
    let first_place = ranking
        .find(Locator::Css("tbody tr"))
        .await
        .expect("the ranking table has rows")
        .text()
        .await
        .unwrap();
    assert!(first_place.contains("demo-proposer-b"), "{first_place}");
    browser
        .eval(
            "const run = [...document.querySelectorAll('h2')].find(e => e.textContent.startsWith('Composite run')); \
             window.scrollTo(0, run.getBoundingClientRect().top + window.scrollY - 60); return true",
        )
        .await;
    browser.screenshot("timeline").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_key_created_in_the_page_is_shown_once_and_works() {
    let Some(browser) = Browser::start("create-key", 1280, 900).await else {
        return;
    };
    let proxy = demo().await;
    log_in(&browser, &proxy, MASTER_KEY).await;
    browser.open(&proxy.url("/ui/#/keys")).await;
    browser
        .type_into("#key-alias", "the new key's alias field", "browser-made")
        .await;
    browser
        .click("#key-create-submit", "the create-key button")
        .await;
    let shown = browser
        .wait_for("#new-key-value", "the new key, shown once")
        .await
        .text()
        .await
        .unwrap();
    let new_key = shown.trim().to_owned();
    assert!(new_key.starts_with("sk-"), "{new_key:?}");
    browser
        .wait_for("#new-key-copy", "the new key's copy button")
        .await;
    browser
        .wait_for("tr[data-key-alias=\"browser-made\"]", "the new key's row")
        .await;
    browser.screenshot("keys").await;

    // Blocked from the page, the key is refused; unblocked, it works again.
    let row = "tr[data-key-alias=\"browser-made\"]";
    browser
        .click(
            &format!("{row} [data-action=\"block\"]"),
            "the new key's block button",
        )
        .await;
    browser
        .wait_for(
            &format!("{row}.blocked [data-action=\"unblock\"]"),
            "the key shown as blocked",
        )
        .await;
    assert_eq!(status_as(&proxy, &new_key).await, 401);
    browser
        .click(
            &format!("{row} [data-action=\"unblock\"]"),
            "the unblock button",
        )
        .await;
    browser
        .wait_for(
            &format!("{row}:not(.blocked) [data-action=\"block\"]"),
            "the key shown as active again",
        )
        .await;
    assert_eq!(status_as(&proxy, &new_key).await, 200);
    // The audit log card lists the changes just made from the page.
    for action in ["created", "blocked", "unblocked"] {
        browser
            .wait_for(
                &format!("#audit-table tr[data-audit-action=\"{action}\"]"),
                &format!("the audit log's {action} row"),
            )
            .await;
    }

    // The key's own view of the dashboard shows its request and nobody else's.
    let master_request = ask(&proxy, MASTER_KEY, "demo-fast", "the master's question").await;
    let own = ask(&proxy, &new_key, "demo-fast", "asked with the new key").await;
    browser.eval("sessionStorage.clear(); return true").await;
    log_in(&browser, &proxy, &new_key).await;
    browser.open(&proxy.url("/ui/#/requests")).await;
    browser
        .wait_for(
            &format!("tr[data-request-id=\"{own}\"]"),
            "the key's own request",
        )
        .await;
    let others = browser
        .client
        .find_all(Locator::Css(&format!(
            "tr[data-request-id=\"{master_request}\"]"
        )))
        .await
        .unwrap();
    assert!(
        others.is_empty(),
        "a virtual key sees the master key's request"
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_playground_streams_a_composite_answer_beside_its_stage_trace() {
    let Some(browser) = Browser::start("playground", 1280, 1000).await else {
        return;
    };
    let proxy = demo().await;
    log_in(&browser, &proxy, MASTER_KEY).await;
    browser.open(&proxy.url("/ui/#/playground")).await;
    browser
        .wait_for(
            "#pg-model option[value=\"demo-council\"]",
            "demo-council among the playground's models",
        )
        .await;
    browser
        .wait_for("#pg-model", "the model picker")
        .await
        .select_by_value("demo-council")
        .await
        .unwrap();
    browser
        .type_into("#pg-prompt", "the prompt field", "What is six times seven?")
        .await;
    browser.click("#pg-send", "the send button").await;
    browser
        .wait_for_text("#pg-trace", "stage 1: answers", "the streamed stage trace")
        .await;
    browser
        .wait_for_text("#pg-status", "done", "the playground's status")
        .await;
    let answer = browser
        .wait_for_text("#pg-answer", "the answer is 42", "the streamed answer")
        .await;
    assert!(answer.contains("After hearing the council"), "{answer}");
    let trace = browser
        .wait_for("#pg-trace", "the stage trace")
        .await
        .text()
        .await
        .unwrap();
    assert!(trace.contains("stage 3: synthesis"), "{trace}");
    browser
        .wait_for(
            "#pg-timeline g[data-call][data-model=\"demo-chairman\"]",
            "the chairman's bar in the playground's timeline",
        )
        .await;
    browser.screenshot("playground").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn every_page_renders_on_a_phone_in_dark_mode_without_console_errors() {
    let Some(browser) = Browser::start("phone-dark", 390, 844).await else {
        return;
    };
    let proxy = demo().await;
    ask(&proxy, MASTER_KEY, "demo-vote", "What is six times seven?").await;
    browser.prefer_color_scheme("dark").await;
    log_in(&browser, &proxy, MASTER_KEY).await;
    for page in ["overview", "requests", "models", "keys", "playground"] {
        browser.open(&proxy.url(&format!("/ui/#/{page}"))).await;
        browser
            .wait_for("[data-ready=\"true\"]", &format!("the {page} page, loaded"))
            .await;
        // Nothing wider than the phone's screen but what scrolls on its own.
        let overflow: Value = browser
            .eval("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await;
        assert!(
            overflow.as_i64().unwrap() <= 1,
            "the {page} page is wider than a phone: {overflow}"
        );
        browser.screenshot(page).await;
    }
    // Dark mode: the page's background is dark.
    let luminance: Value = browser
        .eval(
            "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number); \
             return (0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]) / 255",
        )
        .await;
    assert!(
        luminance.as_f64().unwrap() < 0.3,
        "the background is not dark: {luminance}"
    );
    // The navigation is reachable from the keyboard.
    browser.open(&proxy.url("/ui/#/overview")).await;
    browser
        .wait_for("[data-ready=\"true\"]", "the overview, loaded")
        .await;
    // Tab from the top of the page reaches the navigation, and Enter on a
    // link opens its page.
    let key = |k: fantoccini::key::Key| char::from(k).to_string();
    let mut reached = None;
    for _ in 0..12 {
        browser
            .client
            .active_element()
            .await
            .unwrap()
            .send_keys(&key(fantoccini::key::Key::Tab))
            .await
            .unwrap();
        let nav = browser
            .eval("return document.activeElement.getAttribute('data-nav')")
            .await;
        if nav == json!("models") {
            reached = Some(nav);
            break;
        }
    }
    assert!(reached.is_some(), "Tab never reached the Models link");
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys(&key(fantoccini::key::Key::Enter))
        .await
        .unwrap();
    browser
        .wait_for("#models-table", "the models page, opened from the keyboard")
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}
