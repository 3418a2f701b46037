//! Background health checks (`general_settings.background_health_checks`,
//! LiteLLM's name): every `health_check_interval` seconds each deployment
//! gets one one-token chat request, outside any user's traffic. What it
//! finds goes into the deployment's check record, which `/health` and the
//! `conclave_deployment_state` / `conclave_health_checks` metrics read.
//!
//! Checks report; they do not change routing: the cooldowns that real
//! failures cause do that. Exec deployments (a local CLI per request) and
//! wildcard deployments (no single model to ask) are not probed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::config::GeneralSettings;
use crate::gateway::Gateway;
use crate::openai::{Endpoint, RawFields};
use crate::providers::{Target, Timeouts, UpstreamCall, UpstreamReply};
use crate::router::Deployment;

/// Seconds between checks when `health_check_interval` is unset (LiteLLM's default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Shortest interval accepted: checks must not become load.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Deployments checked at once.
const CONCURRENCY: usize = 8;
/// Longest a single check may take.
const CHECK_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// Largest answer a check reads.
const CHECK_RESPONSE_BYTES: usize = 1024 * 1024;

/// The check interval when background checks are on.
pub fn interval(general: &GeneralSettings) -> Option<Duration> {
    if general.background_health_checks != Some(true) {
        return None;
    }
    let every = general
        .health_check_interval
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DEFAULT_INTERVAL);
    Some(every.max(MIN_INTERVAL))
}

/// Starts the checker when `general` turns it on; it checks whatever
/// gateway version is current at each round.
pub fn spawn(general: &GeneralSettings, current: Arc<ArcSwap<Gateway>>, client: reqwest::Client) {
    let Some(every) = interval(general) else {
        return;
    };
    tracing::info!(
        interval_s = every.as_secs_f64(),
        "background health checks on"
    );
    tokio::spawn(async move {
        let body = probe_body();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let gateway = current.load_full();
            round(&gateway, &client, &body, every).await;
        }
    });
}

/// The one-token request every check sends.
fn probe_body() -> RawFields {
    let map = json!({
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    });
    match map {
        serde_json::Value::Object(m) => RawFields::from_map(&m).unwrap_or_default(),
        _ => RawFields::default(),
    }
}

/// Checks every deployment of `gateway` once, a few at a time.
async fn round(gateway: &Gateway, client: &reqwest::Client, body: &RawFields, every: Duration) {
    let deployments: Vec<Arc<Deployment>> = gateway
        .router
        .groups()
        .iter()
        .flat_map(|g| g.deployments.iter().cloned())
        .filter(|d| checkable(d))
        .collect();
    futures_util::stream::iter(deployments)
        .for_each_concurrent(CONCURRENCY, |d| async move {
            let (latency, error) = check(&d, client, body, every).await;
            if let Some(e) = &error {
                tracing::warn!(deployment = %d.id, error = %e, "health check failed");
            }
            d.with_checks(|c| c.record_check(latency, error));
        })
        .await;
}

/// Whether a deployment can be checked without side effects.
fn checkable(d: &Deployment) -> bool {
    !matches!(d.target, Target::Exec(_)) && !d.target.upstream_model().contains('*')
}

/// One check: its time, and why it failed.
async fn check(
    d: &Deployment,
    client: &reqwest::Client,
    body: &RawFields,
    every: Duration,
) -> (Duration, Option<String>) {
    let limit = d.timeouts.request.min(every).min(CHECK_TIMEOUT_MAX);
    let call = UpstreamCall {
        endpoint: Endpoint::ChatCompletions,
        stream: false,
        body,
        model_override: None,
        timeouts: Timeouts {
            request: limit,
            ..d.timeouts
        },
        max_response_bytes: CHECK_RESPONSE_BYTES,
        answer_room: None,
        traceparent: None,
        drop_params: false,
    };
    let started = Instant::now();
    let result = tokio::time::timeout(limit, d.target.call(client, call)).await;
    let latency = started.elapsed();
    let error = match result {
        Err(_) => Some(format!("no answer within {:.1} s", limit.as_secs_f64())),
        Ok(Err(e)) => Some(d.target.redact(&e.to_string())),
        Ok(Ok(UpstreamReply::Json(_) | UpstreamReply::Stream(_))) => None,
    };
    (latency, error)
}

/// The `/health` body: every deployment with whether it serves now (not
/// cooling, last health check not failed), its average upstream latency
/// (time to first chunk for streams), its last error and last check; only
/// the deployments of the groups `may_see` names (a key limited to some
/// models sees theirs); error texts as `errors` lets the caller read them.
pub fn report(gateway: &Gateway, may_see: &dyn Fn(&str) -> bool, errors: ErrorTexts) -> Value {
    let text = |e| errors.apply(e);
    let cooling = gateway.router.cooling();
    let mut unhealthy = Vec::new();
    // LiteLLM's lists, for scripts that read them.
    let (mut healthy_endpoints, mut unhealthy_endpoints) = (Vec::new(), Vec::new());
    let mut deployments = Vec::new();
    for d in gateway
        .router
        .groups()
        .iter()
        .filter(|g| may_see(&g.name))
        .flat_map(|g| g.deployments.iter())
    {
        let cools = cooling
            .iter()
            .find(|(id, _)| **id == *d.id)
            .map(|(_, w)| *w);
        let (failing, last_error, last_check) =
            d.with_checks(|c| (c.failing(), c.last_error.clone(), c.last_check.clone()));
        let last_check = last_check.map(|mut c| {
            c.error = text(c.error);
            c
        });
        if let Some(wait) = cools {
            unhealthy.push(json!({"model_id": d.id, "recovers_in_s": (wait.as_secs_f64() * 10.0).ceil() / 10.0}));
        } else if failing {
            let error = last_check.as_ref().and_then(|c| c.error.clone());
            unhealthy.push(json!({"model_id": d.id, "health_check_error": error}));
        }
        let endpoint = json!({"model": d.group, "model_id": d.id});
        if cools.is_none() && !failing {
            healthy_endpoints.push(endpoint);
        } else {
            unhealthy_endpoints.push(endpoint);
        }
        deployments.push(json!({
            "model_id": d.id,
            "model_group": d.group,
            "healthy": cools.is_none() && !failing,
            "latency_avg_ms": d.latency().map(ms),
            "last_error": last_error.map(|e| json!({"message": text(Some(e.message)), "at": unix(e.at)})),
            "health_check": last_check.map(|c| json!({
                "status": if c.error.is_some() { "failed" } else { "ok" },
                "at": unix(c.at),
                "latency_ms": ms(c.latency),
                "error": c.error,
            })),
        }));
    }
    json!({
        "status": if unhealthy.is_empty() { "healthy" } else { "degraded" },
        "healthy_count": deployments.len() - unhealthy.len(),
        "unhealthy_count": unhealthy.len(),
        "unhealthy_deployments": unhealthy,
        "healthy_endpoints": healthy_endpoints,
        "unhealthy_endpoints": unhealthy_endpoints,
        "deployments": deployments,
    })
}

/// Whether a report shows the text of upstream errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorTexts {
    Shown,
    /// Replaced by [`HIDDEN`]: the caller sees that an error happened and when.
    Hidden,
}

impl ErrorTexts {
    /// `Shown` when `admin`, else `Hidden`.
    pub fn shown_if(admin: bool) -> Self {
        if admin { Self::Shown } else { Self::Hidden }
    }

    /// An error's text as this caller may read it.
    pub fn apply(self, error: Option<String>) -> Option<String> {
        match self {
            Self::Shown => error,
            Self::Hidden => error.map(|_| HIDDEN.to_owned()),
        }
    }
}

/// What a non-admin caller reads instead of an upstream error's text.
pub const HIDDEN: &str = "(hidden: only an admin key reads upstream error texts)";

/// Milliseconds with one decimal.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Seconds since the Unix epoch.
fn unix(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_off_unless_asked_and_never_faster_than_the_floor() {
        let mut g = GeneralSettings::default();
        assert_eq!(interval(&g), None);
        g.background_health_checks = Some(true);
        assert_eq!(interval(&g), Some(DEFAULT_INTERVAL));
        g.health_check_interval = Some(0.0);
        assert_eq!(interval(&g), Some(MIN_INTERVAL));
        g.health_check_interval = Some(2.5);
        assert_eq!(interval(&g), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn the_probe_asks_for_one_token() {
        let body = probe_body();
        assert_eq!(body.get("max_tokens").map(|v| v.get()), Some("1"));
        assert!(body.is_array("messages"));
    }
}
