//! A script written for LiteLLM's proxy runs unchanged against conclave:
//! plain HTTP for `/key/generate`, `/key/info`, `/spend/logs` and
//! `/key/delete`, the official `openai` SDK for completions with the
//! generated key. Skipped (with a printed reason) where python3 or
//! `pip install openai` is not available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_mgmt_support;
mod sdk_support;

use conclave_e2e::FakeUpstream;
use keys_mgmt_support::{MASTER, config, start};

const SCRIPT: &str = r#"
import json, sys, time, urllib.request, urllib.error
import openai

base, master = sys.argv[1], sys.argv[2]

def call(method, path, body=None, key=master):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())

gen = call("POST", "/key/generate", {
    "models": ["echo"], "max_budget": 10, "duration": "1h",
    "key_alias": "script-key", "metadata": {"team": "eng"}})
key = gen["key"]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=10)
r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
try:
    client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    denied = None
except openai.PermissionDeniedError as e:
    denied = e.status_code
info = call("GET", "/key/info?key=" + key)
logs = []
for _ in range(50):
    logs = call("GET", "/spend/logs?api_key=" + key)
    if logs:
        break
    time.sleep(0.1)
deleted = call("POST", "/key/delete", {"keys": [key]})
try:
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    after_delete = None
except openai.AuthenticationError as e:
    after_delete = e.status_code
print(json.dumps({
    "key_prefix": key[:3], "key_name": gen["key_name"], "token": gen["token"],
    "expires": gen["expires"], "answer": r.choices[0].message.content,
    "denied": denied, "info_alias": info["info"]["key_alias"],
    "info_models": info["info"]["models"], "info_metadata": info["info"]["metadata"],
    "log_models": [l["model"] for l in logs], "log_key": logs[0]["api_key"] if logs else None,
    "log_tokens": logs[0]["total_tokens"] if logs else None,
    "deleted": deleted, "after_delete": after_delete,
}))
"#;

#[tokio::test]
async fn a_litellm_key_management_script_runs_unchanged() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let base = proxy.base.clone();
    let Some(out) =
        sdk_support::run_script(&proxy, "litellm_keys.py", SCRIPT, &[&base, MASTER]).await
    else {
        return;
    };
    assert_eq!(out["key_prefix"], "sk-", "{out}");
    assert!(out["key_name"].as_str().unwrap().starts_with("sk-..."));
    assert_eq!(out["token"].as_str().unwrap().len(), 64);
    assert!(out["expires"].is_string());
    assert!(!out["answer"].as_str().unwrap().is_empty());
    assert_eq!(
        out["denied"], 403,
        "a model outside the key's list is refused"
    );
    assert_eq!(out["info_alias"], "script-key");
    assert_eq!(out["info_models"], serde_json::json!(["echo"]));
    assert_eq!(out["info_metadata"]["team"], "eng");
    assert_eq!(
        out["log_models"],
        serde_json::json!(["echo"]),
        "one spend row for the one completion"
    );
    assert_eq!(out["log_key"], out["token"]);
    assert_eq!(out["log_tokens"], 12);
    assert_eq!(out["deleted"]["deleted_keys"].as_array().unwrap().len(), 1);
    assert_eq!(out["after_delete"], 401, "a deleted key is refused");
    assert_eq!(
        up.calls("echo"),
        1,
        "only the allowed completion reached the upstream"
    );
    assert_eq!(up.calls("other"), 0);
}
