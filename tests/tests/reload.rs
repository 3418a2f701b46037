//! Hot reload through the real binary: components and configs replaced
//! under load, broken versions refused, SIGHUP and `POST /admin/reload`, and
//! the on-disk compile cache (hits, and corrupt entries rebuilt).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{
    Behavior, FakeUpstream, Launch, Proxy, chat_body, deployment, error_object, replace_atomically,
    strategy_component,
};
use serde_json::{Value, json};

const TAG_A: &str = "tag_a";
const TAG_B: &str = "tag_b";

fn component(name: &str) -> Vec<u8> {
    std::fs::read(strategy_component(name)).unwrap()
}

/// `echo` (and `extra` models) on the fake, and `tagged`: a profile running
/// the component at `strategy.wasm` beside the config, which calls `echo`.
fn config(up: &FakeUpstream, extra: &[&str], settings: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in std::iter::once(&"echo").chain(extra) {
        yaml.push_str(&deployment(
            name,
            &format!("openai/{name}-up"),
            &up.api_base(name),
            &[],
        ));
    }
    yaml.push_str(&format!(
        "  - model_name: tagged\n    litellm_params:\n      model: composite/profile/tagged\n\
         router_settings:\n  num_retries: 0\n\
         general_settings:\n  admin_without_key_on_loopback: true\n  composite_llm:\n    strategy_registry:\n      tag: strategy.wasm\n    \
         profiles:\n      tagged:\n        strategy: tag\n        topology:\n          settings: {settings}\n"
    ));
    yaml
}

const ECHO: &str = "{model: echo}";

async fn start(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
    Proxy::launch(
        yaml,
        Launch {
            files: vec![("strategy.wasm".into(), component(TAG_A))],
            ..Launch::with(args, env)
        },
    )
    .await
}

async fn status(proxy: &Proxy) -> Value {
    proxy.get_json("/admin/status").await
}

fn reload_count(status: &Value) -> u64 {
    status["reloads"]["ok"].as_u64().unwrap() + status["reloads"]["failed"].as_u64().unwrap()
}

/// Waits (at most `limit`) until the proxy has finished a reload after
/// `before` reloads, and returns the status then.
async fn next_reload(proxy: &Proxy, before: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(proxy).await;
        if reload_count(&s) > before {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no reload within {limit:?}; logs:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which tag answered, checking that content and trace agree on it.
fn tag_of(body: &Value) -> String {
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content: {body}"));
    let parts: Vec<&str> = content.split('|').collect();
    assert_eq!(parts.len(), 3, "{content}");
    assert_eq!(parts[0], parts[2], "a response mixing versions: {content}");
    assert_eq!(parts[1], "hi", "{content}");
    let reasoning = body["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap_or_default();
    let other = if parts[0] == "tag-a" {
        "tag-b"
    } else {
        "tag-a"
    };
    assert!(
        reasoning.contains(parts[0]) && !reasoning.contains(other),
        "trace from another version: {reasoning:?} with content {content}"
    );
    parts[0].to_owned()
}

/// Sends composite requests until one is answered by `tag`.
async fn wait_for_tag(proxy: &Proxy, tag: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (status, _, body) = proxy.chat(&chat_body("tagged", "x")).await;
        assert_eq!(status, 200, "{body}");
        if tag_of(&body) == tag {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{tag} never answered within {limit:?}; status: {}\nlogs:\n{}",
            status_text(proxy).await,
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_text(proxy: &Proxy) -> String {
    proxy
        .client
        .get(proxy.url("/admin/status"))
        .send()
        .await
        .map(|r| r.status().to_string())
        .unwrap_or_default()
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<String>,
    tags: Vec<String>,
}

/// `n` clients sending `model` requests until `stop`, each at most
/// `max_each` requests and `limit` long.
fn clients(
    proxy: &Arc<Proxy>,
    model: &'static str,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    const MAX_EACH: usize = 20_000;
    const LIMIT: Duration = Duration::from_secs(180);
    (0..n)
        .map(|_| {
            let proxy = proxy.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let started = Instant::now();
                for _ in 0..MAX_EACH {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > LIMIT {
                        break;
                    }
                    let (status, _, body) = proxy.chat(&chat_body(model, "x")).await;
                    if status != 200 {
                        tally.failures.push(format!("{status}: {body}"));
                        continue;
                    }
                    tally.ok += 1;
                    if model == "tagged" {
                        tally.tags.push(tag_of(&body));
                    }
                }
                tally
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        let t = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("client finished")
            .expect("client task");
        all.ok += t.ok;
        all.failures.extend(t.failures);
        all.tags.extend(t.tags);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_see_no_failure_while_the_component_is_replaced_ten_times() {
    let up = FakeUpstream::start().await;
    up.set("echo", Behavior::ok("hi").delayed(Duration::from_millis(2)));
    let proxy = Arc::new(start(&config(&up, &[], ECHO), &["--watch"], &[]).await);
    let path = proxy.dir.path().join("strategy.wasm");
    let (a, b) = (component(TAG_A), component(TAG_B));
    wait_for_tag(&proxy, "tag-a", Duration::from_secs(10)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let handles = clients(&proxy, "tagged", 20, &stop);
    for i in 0..10 {
        let (bytes, tag) = if i % 2 == 0 {
            (&b, "tag-b")
        } else {
            (&a, "tag-a")
        };
        if i % 4 < 2 {
            replace_atomically(&path, bytes);
        } else {
            // In place, as `cp` does: the watcher may see a partial file.
            std::fs::write(&path, bytes).unwrap();
        }
        wait_for_tag(&proxy, tag, Duration::from_secs(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let tally = collect(handles).await;
    assert!(
        tally.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        tally.failures.len(),
        tally.failures.first()
    );
    assert!(tally.ok >= 20, "only {} requests", tally.ok);
    for tag in ["tag-a", "tag-b"] {
        assert!(tally.tags.iter().any(|t| t == tag), "no answer from {tag}");
    }
    let s = status(&proxy).await;
    assert!(s["reloads"]["ok"].as_u64().unwrap() >= 10, "{s}");
    eprintln!(
        "{} requests answered during 10 replacements; reloads: {}",
        tally.ok, s["reloads"]
    );
}

#[tokio::test]
async fn a_broken_version_is_refused_and_the_old_one_keeps_serving() {
    let up = FakeUpstream::start().await;
    up.set("echo", Behavior::ok("hi"));
    let proxy = start(&config(&up, &[], ECHO), &["--watch"], &[]).await;
    let path = proxy.dir.path().join("strategy.wasm");
    let good = component(TAG_A);
    let first = status(&proxy).await;
    let hash = first["profiles"][0]["hash"].clone();
    assert!(hash.is_string(), "{first}");

    let truncated = good[..good.len() / 2].to_vec();
    let garbage = b"this is not webassembly at all".repeat(100);
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("garbage", garbage, "not a WebAssembly file"),
        ("truncated", truncated, "not a valid WebAssembly component"),
        ("wrong world", component("wrong-world"), "conclave:strategy"),
    ];
    for (what, bytes, expected) in cases {
        let before = reload_count(&status(&proxy).await);
        replace_atomically(&path, &bytes);
        let s = next_reload(&proxy, before, Duration::from_secs(20)).await;
        let last = &s["last_reload"];
        assert_eq!(last["result"], "error", "{what}: {s}");
        let message = last["message"].as_str().unwrap();
        assert!(
            message.contains(expected) && message.contains("strategy.wasm"),
            "{what}: {message}"
        );
        assert_eq!(
            s["profiles"][0]["hash"], hash,
            "{what}: the old version is not current"
        );
        let (status, _, body) = proxy.chat(&chat_body("tagged", "x")).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(tag_of(&body), "tag-a");
    }

    // The good component back (the same version: it reloads fine).
    let before = reload_count(&status(&proxy).await);
    replace_atomically(&path, &good);
    let s = next_reload(&proxy, before, Duration::from_secs(20)).await;
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    assert_eq!(s["profiles"][0]["hash"], hash);

    // A topology the strategy rejects, and a config that does not parse.
    let config_path = proxy.config_path();
    for (what, yaml, expected) in [
        (
            "rejected topology",
            config(&up, &[], "{other: 1}"),
            "rejected by the \"tag\" strategy",
        ),
        ("bad YAML", "model_list: [\n".to_owned(), "invalid YAML"),
    ] {
        let before = reload_count(&status(&proxy).await);
        replace_atomically(&config_path, yaml.as_bytes());
        let s = next_reload(&proxy, before, Duration::from_secs(20)).await;
        assert_eq!(s["last_reload"]["result"], "error", "{what}: {s}");
        let message = s["last_reload"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{what}: {message}");
        let (status, _, body) = proxy.chat(&chat_body("tagged", "x")).await;
        assert_eq!(status, 200, "{what}: {body}");
    }
    assert!(
        proxy
            .logs()
            .contains("reload failed; the previous version keeps serving")
    );

    // Fixing both brings the new version in.
    let before = reload_count(&status(&proxy).await);
    replace_atomically(&path, &component(TAG_B));
    replace_atomically(&config_path, config(&up, &[], ECHO).as_bytes());
    // The two writes may be seen by one reload or by two (the first failing
    // on the still-broken config): wait for the new version to be current.
    let mut s = next_reload(&proxy, before, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while (s["last_reload"]["result"] != "ok" || s["profiles"][0]["hash"] == hash)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = status(&proxy).await;
    }
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    assert_ne!(s["profiles"][0]["hash"], hash, "{s}");
    assert!(s["last_reload_error"]["message"].is_string(), "{s}");
    wait_for_tag(&proxy, "tag-b", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_adds_and_removes_a_model_without_a_failed_request() {
    let up = FakeUpstream::start().await;
    up.set("echo", Behavior::ok("hi"));
    up.set("fresh", Behavior::ok("fresh answer"));
    let proxy = Arc::new(start(&config(&up, &[], ECHO), &["--watch"], &[]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = clients(&proxy, "echo", 5, &stop);

    replace_atomically(
        &proxy.config_path(),
        config(&up, &["fresh"], ECHO).as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = proxy.chat(&chat_body("fresh", "x")).await;
        if status == 200 {
            assert_eq!(body["choices"][0]["message"]["content"], "fresh answer");
            break;
        }
        assert_eq!(status, 404, "{body}");
        assert!(Instant::now() < deadline, "fresh never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let models = proxy.get_json("/v1/models").await.to_string();
    assert!(models.contains("\"fresh\""), "{models}");

    replace_atomically(&proxy.config_path(), config(&up, &[], ECHO).as_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = proxy.chat(&chat_body("fresh", "x")).await;
        if status == 404 {
            assert_eq!(error_object(&body)["code"], "model_not_found");
            break;
        }
        assert!(Instant::now() < deadline, "fresh still served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let tally = collect(handles).await;
    assert!(tally.failures.is_empty(), "{:?}", tally.failures.first());
    assert!(tally.ok > 0);
}

#[tokio::test]
async fn sighup_and_post_admin_reload_reload_without_watching() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[], ECHO), &[], &[]).await;
    let s = status(&proxy).await;
    assert_eq!(s["watching"], false, "{s}");

    replace_atomically(
        &proxy.config_path(),
        config(&up, &["fresh"], ECHO).as_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status_code, _, _) = proxy.chat(&chat_body("fresh", "x")).await;
    assert_eq!(status_code, 404, "not watching, yet reloaded");

    proxy.signal("HUP");
    let s = next_reload(&proxy, 0, Duration::from_secs(20)).await;
    assert_eq!(s["last_reload"]["trigger"], "SIGHUP", "{s}");
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    let (status_code, _, body) = proxy.chat(&chat_body("fresh", "x")).await;
    assert_eq!(status_code, 200, "{body}");

    replace_atomically(&proxy.config_path(), config(&up, &[], ECHO).as_bytes());
    let r = proxy.post("/admin/reload", &json!({})).await;
    assert_eq!(r.status(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["result"], "ok", "{outcome}");
    assert_eq!(outcome["trigger"], "admin");
    let (status_code, _, _) = proxy.chat(&chat_body("fresh", "x")).await;
    assert_eq!(status_code, 404);

    replace_atomically(&proxy.config_path(), b"model_list: 7\n");
    let r = proxy.post("/admin/reload", &json!({})).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_object(&body)["code"], "reload_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model_list"),
        "{body}"
    );
    let (status_code, _, body) = proxy.chat(&chat_body("echo", "x")).await;
    assert_eq!(status_code, 200, "{body}");
    let s = status(&proxy).await;
    assert_eq!(s["reloads"]["ok"], 2, "{s}");
    assert_eq!(s["reloads"]["failed"], 1, "{s}");
}

#[tokio::test]
async fn hot_reload_in_the_config_watches_the_env_file_and_quick_saves_coalesce() {
    let up = FakeUpstream::start().await;
    up.set("one", Behavior::ok("from one"));
    up.set("two", Behavior::ok("from two"));
    let yaml = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m-up\n      \
         api_base: os.environ/CONCLAVE_T_RELOAD_BASE\n      api_key: sk-test\n\
         general_settings:\n  hot_reload: true\n  admin_without_key_on_loopback: true\n";
    let proxy = Proxy::launch(
        yaml,
        Launch {
            files: vec![(
                ".env".into(),
                format!("CONCLAVE_T_RELOAD_BASE={}\n", up.api_base("one")).into_bytes(),
            )],
            ..Launch::default()
        },
    )
    .await;
    assert_eq!(status(&proxy).await["watching"], true);
    let (_, _, body) = proxy.chat(&chat_body("m", "x")).await;
    assert_eq!(body["choices"][0]["message"]["content"], "from one");

    // Five saves 20 ms apart make one reload.
    let env_path = proxy.dir.path().join(".env");
    let before = reload_count(&status(&proxy).await);
    for i in 0..5 {
        let base = up.api_base(if i == 4 { "two" } else { "one" });
        std::fs::write(
            &env_path,
            format!("# save {i}\nCONCLAVE_T_RELOAD_BASE={base}\n"),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = next_reload(&proxy, before, Duration::from_secs(20)).await;
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = status(&proxy).await;
    assert_eq!(
        reload_count(&s),
        before + 1,
        "quick saves were not coalesced: {s}"
    );
    let (_, _, body) = proxy.chat(&chat_body("m", "x")).await;
    assert_eq!(body["choices"][0]["message"]["content"], "from two");
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A config with the built-in moa and the tag component, both compiled.
fn cache_config(up: &FakeUpstream) -> String {
    let mut yaml = config(up, &["p1", "agg"], ECHO);
    yaml.push_str(
        "      moa:\n        strategy: moa\n        topology:\n          aggregator: {model: agg}\n          \
         proposers: [{model: p1}]\n",
    );
    yaml.replace(
        "router_settings:",
        "  - model_name: moa\n    litellm_params:\n      model: composite/profile/moa\nrouter_settings:",
    )
}

fn strategies_from_cache(s: &Value) -> Vec<bool> {
    let list = s["strategies"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{s}");
    list.iter()
        .map(|x| x["from_cache"].as_bool().unwrap())
        .collect()
}

async fn serve_both(proxy: &Proxy) {
    for model in ["tagged", "moa"] {
        let (status, _, body) = proxy.chat(&chat_body(model, "x")).await;
        assert_eq!(status, 200, "{model}: {body}");
    }
}

#[tokio::test]
async fn a_restart_loads_from_the_compile_cache_and_corrupt_entries_are_rebuilt() {
    let up = FakeUpstream::start().await;
    let cache = TempDir::new();
    let cache_dir = cache.path().join("cache");
    let env = [("CONCLAVE_CACHE_DIR", cache_dir.to_str().unwrap())];
    let yaml = cache_config(&up);

    let cold = start(&yaml, &[], &env).await;
    let s = status(&cold).await;
    assert_eq!(strategies_from_cache(&s), [false, false], "{s}");
    assert_eq!(s["compile_cache"]["enabled"], true);
    serve_both(&cold).await;
    cold.stop().await;

    let warm = start(&yaml, &[], &env).await;
    let s = status(&warm).await;
    assert_eq!(strategies_from_cache(&s), [true, true], "{s}");
    assert!(warm.logs().contains("loaded from the compile cache"));
    serve_both(&warm).await;
    warm.stop().await;

    // Every file of the cache damaged: flipped bytes (which may still
    // decompress) in some, garbage in the others.
    let files = files_under(&cache_dir);
    assert!(files.len() >= 4, "{files:?}");
    for (i, f) in files.iter().enumerate() {
        let mut bytes = std::fs::read(f).unwrap();
        if i % 2 == 0 && bytes.len() > 16 {
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 8] {
                *b ^= 0x5a;
            }
        } else {
            bytes = b"garbage".repeat(64);
        }
        std::fs::write(f, bytes).unwrap();
    }
    let rebuilt = start(&yaml, &[], &env).await;
    let s = status(&rebuilt).await;
    assert_eq!(strategies_from_cache(&s), [false, false], "{s}");
    assert!(
        rebuilt.logs().contains("compile cache entry discarded"),
        "{}",
        rebuilt.logs()
    );
    serve_both(&rebuilt).await;
    rebuilt.stop().await;

    let again = start(&yaml, &[], &env).await;
    let s = status(&again).await;
    assert_eq!(
        strategies_from_cache(&s),
        [true, true],
        "rebuilt entries not reused: {s}"
    );
    serve_both(&again).await;
}

#[tokio::test]
async fn the_compile_cache_can_be_turned_off() {
    let up = FakeUpstream::start().await;
    let yaml = cache_config(&up);
    for (args, env) in [
        (&["--no-compile-cache"][..], &[][..]),
        (&[][..], &[("CONCLAVE_NO_COMPILE_CACHE", "1")][..]),
    ] {
        let proxy = start(&yaml, args, env).await;
        let s = status(&proxy).await;
        assert_eq!(s["compile_cache"]["enabled"], false, "{s}");
        assert_eq!(strategies_from_cache(&s), [false, false]);
        assert!(!proxy.dir.path().join(".compile-cache").exists());
        serve_both(&proxy).await;
    }
}

/// `POST /admin/reload` with the master key of the keyed configs below.
async fn keyed_reload(proxy: &Proxy) -> reqwest::Response {
    proxy
        .client
        .post(proxy.url("/admin/reload"))
        .bearer_auth("sk-reload-master")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reload_that_drops_the_master_key_is_refused_and_keys_stay_required() {
    let up = FakeUpstream::start().await;
    let keyed = config(&up, &[], ECHO).replacen(
        "general_settings:\n",
        "general_settings:\n  master_key: sk-reload-master\n",
        1,
    );
    let proxy = start(&keyed, &[], &[]).await;
    replace_atomically(&proxy.config_path(), config(&up, &[], ECHO).as_bytes());
    let r = keyed_reload(&proxy).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("master_key"),
        "{body}"
    );
    let (status_code, _, body) = proxy.chat(&chat_body("echo", "x")).await;
    assert_eq!(status_code, 401, "still keyed: {body}");
}

#[tokio::test]
async fn a_reload_to_another_key_store_waits_for_a_restart_and_one_back_does_not() {
    let up = FakeUpstream::start().await;
    let stores = TempDir::new();
    let with_store = |file: &str| {
        let url = format!("sqlite://{}", stores.path().join(file).display());
        config(&up, &[], ECHO).replacen(
            "general_settings:\n",
            &format!("general_settings:\n  master_key: sk-reload-master\n  database_url: {url}\n"),
            1,
        )
    };
    let proxy = start(&with_store("keys.db"), &[], &[]).await;
    let reload = |yaml: String| {
        replace_atomically(&proxy.config_path(), yaml.as_bytes());
        async {
            let r = keyed_reload(&proxy).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap().to_string()
        }
    };
    // An address a restart would refuse is refused now, naming the key.
    replace_atomically(
        &proxy.config_path(),
        with_store("x").replace("sqlite://", "mysql://").as_bytes(),
    );
    let refused = keyed_reload(&proxy).await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database_url"),
        "{body}"
    );
    let moved = reload(with_store("other.db")).await;
    assert!(moved.contains("key store"), "{moved}");
    let back = reload(with_store("keys.db")).await;
    assert!(!back.contains("key store"), "{back}");
}
