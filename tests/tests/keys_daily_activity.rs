//! LiteLLM's daily activity routes through the real binary:
//! `/user/daily/activity` and `/team/daily/activity` (per day, with the
//! breakdown by model, provider, key and user or team, and their pages)
//! and `/global/spend/logs`, read by the master key and by users' keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::Duration;

use conclave_e2e::services::postgres_database;
use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use keys_support::{CALL_COST, MASTER, chat_as, close, config, manage, new_key};
use reqwest::Method;
use serde_json::{Value, json};

/// A gateway with two priced models and one that always fails, users ada
/// (four calls: three answered, one failed) and bob (one), and a team key
/// (one call), its store in `database_url` (SQLite beside the config when
/// `None`). Returns the gateway, ada's key, bob's key, the team key and
/// today's date as the spend log has it.
async fn busy_gateway(
    up: &FakeUpstream,
    database_url: Option<&str>,
) -> (Proxy, String, String, String, String) {
    up.set("gpt-f", Behavior::status(500, "down"));
    let mut yaml = config(up, &["gpt-a", "gpt-b", "gpt-f"], "");
    if let Some(url) = database_url {
        // The config ends with its general_settings.
        yaml.push_str(&format!("  database_url: {url}\n"));
    }
    let proxy = Proxy::start(&yaml).await;
    for user in ["ada", "bob"] {
        manage(
            &proxy,
            "/user/new",
            json!({"user_id": user, "auto_create_key": false}),
        )
        .await;
    }
    manage(
        &proxy,
        "/team/new",
        json!({"team_id": "t1", "team_alias": "Team One"}),
    )
    .await;
    let ada = new_key(&proxy, json!({"user_id": "ada", "key_alias": "ada-key"})).await;
    let bob = new_key(&proxy, json!({"user_id": "bob"})).await;
    let team = new_key(&proxy, json!({"team_id": "t1"})).await;
    for (key, model, answered) in [
        (&ada, "gpt-a", true),
        (&ada, "gpt-a", true),
        (&ada, "gpt-b", true),
        (&ada, "gpt-f", false),
        (&bob, "gpt-a", true),
        (&team, "gpt-b", true),
    ] {
        let (status, _, body) = chat_as(&proxy, key, model).await;
        assert_eq!(status == 200, answered, "{model}: {status} {body}");
    }
    let today = written_day(&proxy, 6).await;
    (proxy, ada, bob, team, today)
}

/// Waits until the spend log holds `rows` rows; the day of the newest.
async fn written_day(proxy: &Proxy, rows: usize) -> String {
    for _ in 0..100 {
        let (_, logs) = proxy
            .call(Method::GET, "/spend/logs", None, Some(MASTER))
            .await;
        if let Some(all) = logs.as_array().filter(|l| l.len() >= rows) {
            return all[0]["startTime"].as_str().unwrap()[..10].to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the spend log never held {rows} rows");
}

async fn activity(proxy: &Proxy, query: &str, key: &str) -> (u16, Value) {
    proxy
        .call(
            Method::GET,
            &format!("/user/daily/activity?{query}"),
            None,
            Some(key),
        )
        .await
}

fn requests(metrics: &Value) -> (u64, u64, u64) {
    (
        metrics["api_requests"].as_u64().unwrap(),
        metrics["successful_requests"].as_u64().unwrap(),
        metrics["failed_requests"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn daily_activity_sums_a_day_with_its_breakdown_in_litellms_shape() {
    sums_a_day_with_its_breakdown(None).await;
}

#[tokio::test]
async fn daily_activity_sums_a_day_with_its_breakdown_in_postgres() {
    let test = "daily_activity_sums_a_day_with_its_breakdown_in_postgres";
    let Some(url) = postgres_database(test).await else {
        return;
    };
    sums_a_day_with_its_breakdown(Some(&url)).await;
}

async fn sums_a_day_with_its_breakdown(database_url: Option<&str>) {
    let up = FakeUpstream::start().await;
    let (proxy, ada, _bob, _team, today) = busy_gateway(&up, database_url).await;
    let dates = format!("start_date={today}&end_date={today}");
    let (status, all) = activity(&proxy, &dates, MASTER).await;
    assert_eq!(status, 200, "{all}");
    let results = all["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{all}");
    let day = &results[0];
    assert_eq!(day["date"], today.as_str());
    assert_eq!(requests(&day["metrics"]), (6, 5, 1), "{day}");
    assert!(close(
        day["metrics"]["spend"].as_f64().unwrap(),
        5.0 * CALL_COST
    ));
    assert_eq!(day["metrics"]["total_tokens"], 5 * 12);
    let breakdown = &day["breakdown"];
    assert_eq!(
        requests(&breakdown["models"]["gpt-a"]["metrics"]),
        (3, 3, 0)
    );
    assert_eq!(
        requests(&breakdown["model_groups"]["gpt-f"]["metrics"]),
        (1, 0, 1)
    );
    assert_eq!(
        requests(&breakdown["providers"]["openai"]["metrics"]),
        (6, 5, 1)
    );
    assert_eq!(
        requests(&breakdown["entities"]["ada"]["metrics"]),
        (4, 3, 1)
    );
    assert_eq!(
        requests(&breakdown["entities"]["Unassigned"]["metrics"]),
        (1, 1, 0)
    );
    let ada_keys: Vec<&Value> = breakdown["api_keys"]
        .as_object()
        .unwrap()
        .values()
        .filter(|k| k["metadata"]["key_alias"] == "ada-key")
        .collect();
    assert_eq!(ada_keys.len(), 1, "{breakdown}");
    assert_eq!(requests(&ada_keys[0]["metrics"]), (4, 3, 1));
    let per_key = breakdown["models"]["gpt-a"]["api_key_breakdown"]
        .as_object()
        .unwrap();
    assert_eq!(per_key.len(), 2, "ada's and bob's keys: {per_key:?}");
    let meta = &all["metadata"];
    assert_eq!(meta["total_api_requests"], 6);
    assert_eq!(meta["total_failed_requests"], 1);
    assert_eq!(
        (meta["page"].as_u64(), meta["has_more"].as_bool()),
        (Some(1), Some(false))
    );

    // A user's own key reads its user's activity, and no one else's.
    let (status, own) = activity(&proxy, &dates, &ada).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(requests(&own["results"][0]["metrics"]), (4, 3, 1));
    let (status, other) = activity(&proxy, &format!("{dates}&user_id=bob"), &ada).await;
    assert_eq!(status, 403, "{other}");
    assert_eq!(other["error"]["param"], "user_id");
    let (status, bob) = activity(&proxy, &format!("{dates}&user_id=bob"), MASTER).await;
    assert_eq!(status, 200, "{bob}");
    assert_eq!(requests(&bob["results"][0]["metrics"]), (1, 1, 0));
    let (_, model) = activity(&proxy, &format!("{dates}&model=gpt-b"), MASTER).await;
    assert_eq!(requests(&model["results"][0]["metrics"]), (2, 2, 0));

    // Days outside the window hold nothing.
    let (status, empty) =
        activity(&proxy, "start_date=2020-01-01&end_date=2020-01-31", MASTER).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["results"], json!([]));
    assert_eq!(empty["metadata"]["total_pages"], 0);
}

#[tokio::test]
async fn daily_activity_pages_through_its_rows_and_refuses_unreadable_parameters() {
    let up = FakeUpstream::start().await;
    let (proxy, _ada, _bob, _team, today) = busy_gateway(&up, None).await;
    let dates = format!("start_date={today}&end_date={today}");
    // ada's three models, bob's and the team's: five aggregate rows.
    let mut seen = 0;
    for page in 1..=5 {
        let (status, one) =
            activity(&proxy, &format!("{dates}&page_size=2&page={page}"), MASTER).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["metadata"]["total_pages"], 3, "{one}");
        assert_eq!(one["metadata"]["has_more"], page < 3, "{one}");
        seen += one["metadata"]["total_api_requests"].as_u64().unwrap();
    }
    assert_eq!(seen, 6, "every request on exactly one page");
    for (query, param) in [
        (format!("start_date={today}"), "end_date"),
        (format!("end_date={today}"), "start_date"),
        (
            format!("start_date=yesterday&end_date={today}"),
            "start_date",
        ),
        (
            "start_date=2026-02-01&end_date=2026-01-01".to_owned(),
            "end_date",
        ),
        (format!("{dates}&page_size=0"), "page_size"),
        (format!("{dates}&page_size=1001"), "page_size"),
        (format!("{dates}&page=x"), "page"),
    ] {
        let (status, refused) = activity(&proxy, &query, MASTER).await;
        assert_eq!(status, 400, "{query}: {refused}");
        assert_eq!(refused["error"]["param"], param, "{query}: {refused}");
    }
}

#[tokio::test]
async fn team_activity_and_global_spend_logs_read_the_same_days() {
    let up = FakeUpstream::start().await;
    let (proxy, ada, bob, team, today) = busy_gateway(&up, None).await;
    let dates = format!("start_date={today}&end_date={today}");
    let (status, teams) = proxy
        .call(
            Method::GET,
            &format!("/team/daily/activity?{dates}"),
            None,
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 200, "{teams}");
    let entities = &teams["results"][0]["breakdown"]["entities"];
    assert_eq!(
        entities.as_object().unwrap().len(),
        1,
        "only team keys: {entities}"
    );
    assert_eq!(entities["t1"]["metadata"]["team_alias"], "Team One");
    assert_eq!(requests(&entities["t1"]["metrics"]), (1, 1, 0));
    let (status, refused) = proxy
        .call(
            Method::GET,
            &format!("/team/daily/activity?{dates}&team_ids=t1"),
            None,
            Some(&ada),
        )
        .await;
    assert_eq!(status, 403, "ada is not in t1: {refused}");
    let (status, own) = proxy
        .call(
            Method::GET,
            &format!("/team/daily/activity?{dates}"),
            None,
            Some(&team),
        )
        .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(requests(&own["results"][0]["metrics"]), (1, 1, 0));

    let (status, days) = proxy
        .call(Method::GET, "/global/spend/logs", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "{days}");
    assert_eq!(days.as_array().unwrap().len(), 1, "{days}");
    assert_eq!(days[0]["date"], today.as_str());
    assert!(
        close(days[0]["spend"].as_f64().unwrap(), 5.0 * CALL_COST),
        "{days}"
    );
    let (_, bobs) = proxy
        .call(
            Method::GET,
            &format!("/global/spend/logs?api_key={bob}"),
            None,
            Some(MASTER),
        )
        .await;
    assert!(
        close(bobs[0]["spend"].as_f64().unwrap(), CALL_COST),
        "{bobs}"
    );
    assert_eq!(
        bobs[0]["api_key"].as_str().unwrap().len(),
        64,
        "the key's hash"
    );
    let (status, _) = proxy
        .call(Method::GET, "/global/spend/logs", None, Some(&ada))
        .await;
    assert_eq!(status, 403, "an internal user reads no one's totals");
}
