//! The most recent requests and composite sub-calls, kept in memory for the
//! dashboard's live table and request pages. Two bounded rings (requests,
//! sub-calls), newest first; the oldest entry leaves when a new one comes.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::keys::time::unix_seconds;
use crate::ops::sinks::CompositeRun;
use crate::ops::{Outcome, OutcomeKind, RequestId};

/// Bytes of a request body kept for the request page; the request log
/// files keep it whole.
pub const BODY_KEPT: usize = 16 * 1024;

/// One finished request (or sub-call) as the table lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Arc<str>,
    /// Start, in Unix seconds.
    pub time: f64,
    pub route: Arc<str>,
    pub model: String,
    pub model_group: Option<Arc<str>>,
    pub deployment: Option<Arc<str>>,
    pub profile: Option<Arc<str>>,
    pub composite: bool,
    /// `master`, `open` or the key's `sk-...abcd` name; never a secret.
    pub caller: Cow<'static, str>,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub status: u16,
    pub error: Option<String>,
    pub stream: bool,
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cost: Option<f64>,
    pub cache: &'static str,
    pub attempts: u32,
    pub fallback: Option<Arc<str>>,
    pub parent_id: Option<Arc<str>>,
    /// `memory` for a request kept by this process, `spend_log` for one
    /// read back from the spend logs (fewer fields, no page of its own).
    pub source: &'static str,
}

impl Summary {
    /// What the spend logs remember of a request: who, which model, the
    /// status, tokens, cost and time.
    pub fn from_spend_row(row: &crate::keys::SpendRow) -> Self {
        Self {
            id: row.request_id.as_str().into(),
            time: unix_seconds(row.started_at),
            route: "".into(),
            model: row.model.clone(),
            model_group: row.model_group.as_deref().map(Arc::from),
            deployment: row.deployment.as_deref().map(Arc::from),
            profile: row.profile.as_deref().map(Arc::from),
            composite: row.profile.is_some(),
            caller: Cow::Borrowed(if row.token_hash.is_some() {
                "key"
            } else {
                "master"
            }),
            key_alias: None,
            user_id: row.user_id.clone(),
            team_id: row.team_id.clone(),
            status: row.status,
            error: None,
            stream: false,
            duration_ms: row.latency_ms as f64,
            ttft_ms: None,
            overhead_ms: None,
            prompt_tokens: Some(row.prompt_tokens),
            completion_tokens: Some(row.completion_tokens),
            cost: Some(row.spend),
            cache: if row.cache_hit { "hit" } else { "none" },
            attempts: 0,
            fallback: None,
            parent_id: None,
            source: "spend_log",
        }
    }
}

/// One upstream call of a request, as its page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub deployment: Arc<str>,
    pub model_group: Arc<str>,
    pub status: Option<u16>,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// What is kept of one request.
#[derive(Debug)]
pub struct Entry {
    pub summary: Summary,
    /// The SHA-256 of the caller's virtual key: whose entry this is.
    pub owner: Option<Arc<str>>,
    pub attempts: Vec<AttemptView>,
    pub attempts_omitted: u32,
    /// The request body, credentials redacted, at most [`BODY_KEPT`] bytes.
    pub request_body: Option<Bytes>,
    pub request_body_truncated: bool,
    pub composite: Option<Arc<CompositeRun>>,
}

/// Whose requests a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The master key (or an open gateway): everyone's.
    All,
    /// A virtual key: its own only (by the key's hash).
    Key(String),
}

impl Viewer {
    fn sees(&self, entry: &Entry) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Key(hash) => entry.owner.as_deref() == Some(hash.as_str()),
        }
    }
}

/// The table's filters; `None` matches everything.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// The model asked for or the group that answered.
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
    /// The caller's label (`sk-...abcd`, `master`, `open`) or key alias.
    pub key: Option<String>,
    pub since: Option<f64>,
    pub until: Option<f64>,
}

/// Which statuses the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Below 400.
    Ok,
    /// 400 and above.
    Error,
    /// One class: 2 for `2xx`, ...
    Class(u16),
    Exact(u16),
}

impl StatusFilter {
    /// Reads `ok`, `error`, `2xx`..`5xx` or a status code.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            _ => match text.strip_suffix("xx") {
                Some(class) => class
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .map(Self::Class),
                None => text
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(Self::Exact),
            },
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            Self::Ok => status < 400,
            Self::Error => status >= 400,
            Self::Class(c) => status / 100 == c,
            Self::Exact(s) => status == s,
        }
    }
}

impl Filter {
    /// Whether the table shows `s`.
    pub fn matches(&self, s: &Summary) -> bool {
        let model = self
            .model
            .as_ref()
            .is_none_or(|m| s.model == *m || s.model_group.as_deref() == Some(m.as_str()));
        let key = self
            .key
            .as_ref()
            .is_none_or(|k| s.caller == *k || s.key_alias.as_ref() == Some(k));
        model
            && key
            && self.status.is_none_or(|f| f.matches(s.status))
            && self.since.is_none_or(|t| s.time >= t)
            && self.until.is_none_or(|t| s.time <= t)
    }
}

/// The rings.
#[derive(Debug)]
pub struct Recent {
    requests: VecDeque<Arc<Entry>>,
    sub_calls: VecDeque<Arc<Entry>>,
    capacity: usize,
    sub_call_capacity: usize,
    /// When the ring was made, in Unix seconds.
    since: f64,
}

impl Recent {
    /// Rings holding `capacity` requests and four times as many sub-calls
    /// (a composite run makes several).
    pub fn new(capacity: usize) -> Self {
        Self {
            requests: VecDeque::with_capacity(capacity),
            sub_calls: VecDeque::new(),
            capacity,
            sub_call_capacity: capacity.saturating_mul(4),
            since: unix_seconds(std::time::SystemTime::now()),
        }
    }

    /// Requests kept now, and the most that are kept.
    pub fn len_and_capacity(&self) -> (usize, usize) {
        (self.requests.len(), self.capacity)
    }

    /// The time before which requests are no longer (or never were) kept
    /// here, in Unix seconds: the oldest kept one's start once the ring is
    /// full, else when the ring was made. Older ones are only in the spend logs.
    pub fn kept_since(&self) -> f64 {
        match self.requests.back() {
            Some(oldest) if self.requests.len() >= self.capacity => oldest.summary.time,
            _ => self.since,
        }
    }

    /// Keeps `entry`, pushing the oldest of its ring out when full.
    pub fn push(&mut self, entry: Entry) {
        let (ring, capacity) = match entry.summary.parent_id {
            None => (&mut self.requests, self.capacity),
            Some(_) => (&mut self.sub_calls, self.sub_call_capacity),
        };
        if capacity == 0 {
            return;
        }
        if ring.len() == capacity {
            ring.pop_back();
        }
        ring.push_front(Arc::new(entry));
    }

    /// Up to `limit` requests `viewer` may see that match `filter`, newest first.
    pub fn list(&self, viewer: &Viewer, filter: &Filter, limit: usize) -> Vec<Arc<Entry>> {
        self.requests
            .iter()
            .filter(|e| viewer.sees(e) && filter.matches(&e.summary))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The request `id` (the newest one, when a client reused an id) and
    /// its sub-calls in start order, when `viewer` may see it. A client
    /// chooses its request ids, so sub-calls are its run's only when they
    /// have the request's owner and started after it: another key's run
    /// under the same id, or an earlier one, is never listed.
    pub fn find(&self, id: &str, viewer: &Viewer) -> Option<(Arc<Entry>, Vec<Arc<Entry>>)> {
        let request = self
            .requests
            .iter()
            .find(|e| *e.summary.id == *id && viewer.sees(e))?
            .clone();
        let mut calls: Vec<Arc<Entry>> = self
            .sub_calls
            .iter()
            .filter(|e| {
                e.summary.parent_id.as_deref() == Some(id)
                    && e.owner == request.owner
                    && e.summary.time >= request.summary.time
            })
            .cloned()
            .collect();
        calls.sort_by(|a, b| a.summary.time.total_cmp(&b.summary.time));
        Some((request, calls))
    }
}

impl Entry {
    /// What the dashboard keeps of `o`; the request body only when
    /// `keep_body` (request logs are on).
    pub fn from_outcome(o: &Outcome, keep_body: bool) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let usage = o.usage();
        let principal = o.caller.principal();
        let summary = Summary {
            id: o.request_id.shared(),
            time: unix_seconds(o.started_at),
            route: Arc::clone(&o.route),
            model: o.model.clone(),
            model_group: o.model_group.clone(),
            deployment: o.deployment.clone(),
            profile: o.profile.clone(),
            composite: o.composite.is_some(),
            caller: o.caller.label_cow(),
            key_alias: principal.and_then(|p| p.key.key_alias.clone()),
            user_id: o.caller.user_id().map(str::to_owned),
            team_id: o.caller.team_id().map(str::to_owned),
            status: o.status,
            error: o.error.clone(),
            stream: o.stream,
            duration_ms: ms(o.latency),
            ttft_ms: o.time_to_first_token.map(ms),
            overhead_ms: o.overhead.map(ms),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            cost: o.cost,
            cache: o.cache.label(),
            attempts: o.attempts,
            fallback: o.fallback.clone(),
            parent_id: match o.kind {
                OutcomeKind::Request => None,
                OutcomeKind::SubCall => o.parent_request_id.as_ref().map(RequestId::shared),
            },
            source: "memory",
        };
        let (attempts, attempts_omitted) = o.logged.as_ref().map_or((Vec::new(), 0), |l| {
            let views = l
                .attempts
                .iter()
                .map(|a| AttemptView {
                    deployment: a.deployment.clone(),
                    model_group: a.group.clone(),
                    status: a.status,
                    error_class: a.error_class,
                    error: a.error.clone(),
                    duration_ms: ms(a.duration),
                })
                .collect();
            (views, l.attempts_omitted)
        });
        let body = keep_body
            .then(|| crate::observe::request_log::redacted_request_body(o))
            .flatten();
        let (request_body, request_body_truncated) = match body {
            Some(b) => kept_body(b),
            None => (None, false),
        };
        Self {
            summary,
            owner: o.caller.token_hash().map(Arc::from),
            attempts,
            attempts_omitted,
            request_body,
            request_body_truncated,
            composite: o.composite.clone(),
        }
    }
}

/// The redacted body cut to [`BODY_KEPT`] bytes (at a character boundary),
/// and whether it was cut. A copy: the entry must not hold the whole request
/// buffer alive.
fn kept_body(redacted: &[u8]) -> (Option<Bytes>, bool) {
    if redacted.len() <= BODY_KEPT {
        return (Some(Bytes::copy_from_slice(redacted)), false);
    }
    let mut cut = BODY_KEPT;
    while cut > 0 && (redacted[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    (Some(Bytes::copy_from_slice(&redacted[..cut])), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, parent: Option<&str>, owner: Option<&str>, status: u16, time: f64) -> Entry {
        Entry {
            summary: Summary {
                id: id.into(),
                time,
                route: "/v1/chat/completions".into(),
                model: "m".into(),
                model_group: Some("g".into()),
                deployment: None,
                profile: None,
                composite: false,
                caller: owner.map_or("master".into(), |o| format!("sk-...{o}").into()),
                key_alias: owner.map(|o| format!("alias-{o}")),
                user_id: None,
                team_id: None,
                status,
                error: None,
                stream: false,
                duration_ms: 1.0,
                ttft_ms: None,
                overhead_ms: None,
                prompt_tokens: None,
                completion_tokens: None,
                cost: None,
                cache: "none",
                attempts: 1,
                fallback: None,
                parent_id: parent.map(Arc::from),
                source: "memory",
            },
            owner: owner.map(Arc::from),
            attempts: Vec::new(),
            attempts_omitted: 0,
            request_body: None,
            request_body_truncated: false,
            composite: None,
        }
    }

    fn ids(entries: &[Arc<Entry>]) -> Vec<&str> {
        entries.iter().map(|e| &*e.summary.id).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_requests_first_and_drops_the_oldest() {
        let mut recent = Recent::new(2);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            recent.push(entry(id, None, None, 200, i as f64));
        }
        assert_eq!(
            ids(&recent.list(&Viewer::All, &Filter::default(), 10)),
            ["c", "b"]
        );
        assert_eq!(recent.len_and_capacity(), (2, 2));
    }

    #[test]
    fn a_key_sees_only_its_own_requests_even_by_id() {
        let mut recent = Recent::new(10);
        recent.push(entry("mine", None, Some("aaaa"), 200, 1.0));
        recent.push(entry("theirs", None, Some("bbbb"), 200, 2.0));
        let me = Viewer::Key("aaaa".into());
        assert_eq!(ids(&recent.list(&me, &Filter::default(), 10)), ["mine"]);
        assert!(recent.find("theirs", &me).is_none());
        assert!(recent.find("theirs", &Viewer::All).is_some());
    }

    #[test]
    fn filters_match_status_classes_keys_and_times() {
        let mut recent = Recent::new(10);
        recent.push(entry("ok", None, Some("aaaa"), 200, 10.0));
        recent.push(entry("limited", None, Some("bbbb"), 429, 20.0));
        recent.push(entry("broken", None, None, 502, 30.0));
        let list = |f: Filter| ids(&recent.list(&Viewer::All, &f, 10)).join(",");
        let status = |s: &str| Filter {
            status: StatusFilter::parse(s),
            ..Filter::default()
        };
        assert_eq!(list(status("error")), "broken,limited");
        assert_eq!(list(status("4xx")), "limited");
        assert_eq!(list(status("502")), "broken");
        assert_eq!(list(status("ok")), "ok");
        assert_eq!(StatusFilter::parse("9xx"), None);
        assert_eq!(StatusFilter::parse("abc"), None);
        let key = |k: &str| Filter {
            key: Some(k.into()),
            ..Filter::default()
        };
        assert_eq!(list(key("alias-bbbb")), "limited");
        assert_eq!(list(key("master")), "broken");
        let since = Filter {
            since: Some(15.0),
            until: Some(25.0),
            ..Filter::default()
        };
        assert_eq!(list(since), "limited");
    }

    #[test]
    fn a_request_page_gets_its_sub_calls_in_start_order() {
        let mut recent = Recent::new(10);
        recent.push(entry("late", Some("run"), None, 200, 3.0));
        recent.push(entry("early", Some("run"), None, 200, 1.0));
        recent.push(entry("other", Some("elsewhere"), None, 200, 2.0));
        recent.push(entry("run", None, None, 200, 0.5));
        let (request, calls) = recent.find("run", &Viewer::All).unwrap();
        assert_eq!(&*request.summary.id, "run");
        assert_eq!(ids(&calls), ["early", "late"]);
        // Sub-calls are not requests of their own in the table.
        assert_eq!(
            ids(&recent.list(&Viewer::All, &Filter::default(), 10)),
            ["run"]
        );
    }

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary_and_marked() {
        let mut body = b"{\"model\":\"m\",\"messages\":\"".to_vec();
        body.extend("é".repeat(BODY_KEPT).as_bytes());
        body.extend(b"\"}");
        let (kept, truncated) = kept_body(&body);
        let kept = kept.unwrap();
        assert!(truncated);
        assert!(kept.len() <= BODY_KEPT);
        assert!(std::str::from_utf8(&kept).is_ok());
    }
}
