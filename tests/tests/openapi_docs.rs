//! The API docs through the real binary: `/openapi.json` validates as
//! OpenAPI 3 (the `openapi-spec-validator` package) and lists every public
//! route with the method it is served with, every documented path is served,
//! `GET /` renders Swagger UI with the route list in a headless Chromium,
//! `/docs` redirects there, and `public_docs: false` puts the docs behind
//! the master key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_e2e::proxy::Proxy;
use conclave_e2e::{FakeUpstream, deployments};
use serde_json::Value;
use tokio::sync::OnceCell;

mod sdk_support;
use sdk_support::run;

const KEY: &str = "sk-docs-master";

/// Every public route of the server, as `app()` serves it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/chat/completions"),
    ("post", "/chat/completions"),
    ("post", "/v1/completions"),
    ("post", "/completions"),
    ("post", "/v1/responses"),
    ("post", "/responses"),
    ("get", "/v1/responses/{response_id}"),
    ("delete", "/v1/responses/{response_id}"),
    ("get", "/responses/{response_id}"),
    ("delete", "/responses/{response_id}"),
    ("get", "/v1/responses/{response_id}/input_items"),
    ("get", "/responses/{response_id}/input_items"),
    ("post", "/openai/v1/responses"),
    ("get", "/openai/v1/responses/{response_id}"),
    ("delete", "/openai/v1/responses/{response_id}"),
    ("get", "/openai/v1/responses/{response_id}/input_items"),
    ("post", "/v1/embeddings"),
    ("post", "/embeddings"),
    ("get", "/v1/models"),
    ("get", "/models"),
    ("get", "/v1/models/{model}"),
    ("get", "/models/{model}"),
    ("get", "/v1/model/info"),
    ("get", "/model/info"),
    ("get", "/health"),
    ("get", "/info"),
    ("post", "/v1/messages"),
    ("post", "/anthropic/v1/messages"),
    ("post", "/v1/messages/count_tokens"),
    ("post", "/anthropic/v1/messages/count_tokens"),
    ("get", "/health/liveliness"),
    ("get", "/health/liveness"),
    ("get", "/health/readiness"),
    ("get", "/metrics"),
    ("get", "/admin/status"),
    ("post", "/admin/reload"),
    ("get", "/admin/models"),
    ("post", "/admin/models"),
    ("delete", "/admin/models/{model_name}"),
    ("get", "/"),
    ("get", "/openapi.json"),
    ("post", "/key/generate"),
    ("post", "/key/update"),
    ("post", "/key/delete"),
    ("get", "/key/info"),
    ("post", "/key/health"),
    ("get", "/key/list"),
    ("post", "/key/block"),
    ("post", "/key/unblock"),
    ("post", "/key/regenerate"),
    ("post", "/key/{key}/regenerate"),
    ("post", "/user/new"),
    ("post", "/user/update"),
    ("post", "/user/delete"),
    ("get", "/user/info"),
    ("get", "/user/list"),
    ("post", "/team/new"),
    ("post", "/team/update"),
    ("post", "/team/delete"),
    ("post", "/team/member_add"),
    ("post", "/team/bulk_member_add"),
    ("post", "/team/member_delete"),
    ("get", "/team/info"),
    ("get", "/team/list"),
    ("get", "/spend/logs"),
    ("get", "/spend/keys"),
    ("get", "/spend/users"),
    ("get", "/global/spend"),
    ("get", "/global/spend/keys"),
    ("get", "/global/spend/models"),
    ("get", "/global/spend/teams"),
    ("get", "/global/spend/report"),
    ("get", "/cache/ping"),
    ("post", "/cache/flushall"),
    ("post", "/cache/delete"),
    ("delete", "/cache/{key}"),
];

async fn proxy(public_docs: Option<bool>) -> (FakeUpstream, Proxy) {
    let up = FakeUpstream::start().await;
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(&up, &[("plain", &[][..])]));
    yaml.push_str(&format!("general_settings:\n  master_key: {KEY}\n"));
    if let Some(public) = public_docs {
        yaml.push_str(&format!("  public_docs: {public}\n"));
    }
    let proxy = Proxy::start(&yaml).await;
    (up, proxy)
}

async fn document(proxy: &Proxy) -> Value {
    let r = proxy
        .client
        .get(proxy.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_document_lists_every_public_route_with_its_method() {
    let (_up, proxy) = proxy(None).await;
    let doc = document(&proxy).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["title"], "conclave");
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths
                .get(*path)
                .is_some_and(|item| item.get(*method).is_some()),
            "{method} {path} is not documented; documented: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    // Model routes name their request schema and the security schemes.
    let chat = &paths["/v1/chat/completions"]["post"];
    assert_eq!(
        chat["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ChatCompletionRequest"
    );
    assert!(chat["security"].to_string().contains("bearer"), "{chat}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let (_up, proxy) = proxy(None).await;
    let doc = document(&proxy).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{model_name}", "no-such-model")
                .replace("{key}", "no-such-key")
                .replace("{response_id}", "resp_none")
                .replace("{model_id}", "no-such-model");
            let url = proxy.url(&concrete);
            let request = match method.as_str() {
                "get" => proxy.client.get(&url),
                "post" => proxy.client.post(&url).json(&serde_json::json!({})),
                "delete" => proxy.client.delete(&url),
                "patch" => proxy.client.patch(&url).json(&serde_json::json!({})),
                other => panic!("unexpected method {other} on {path}"),
            };
            let r = request.bearer_auth(KEY).send().await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("unknown_url") && !body.contains("no route for"),
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn the_document_validates_as_openapi_3() {
    let (_up, proxy) = proxy(None).await;
    let doc = document(&proxy).await;
    let python = match python_with_validator().await {
        Ok(python) => python,
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the validator is required under CI: {reason}"
            );
            println!("skipped: {reason}");
            return;
        }
    };
    let path = proxy.dir.write("openapi.json", &doc.to_string());
    let script = "import json, sys\n\
                  from openapi_spec_validator import validate\n\
                  validate(json.load(open(sys.argv[1])))\n\
                  print('valid')\n";
    let out = run(
        &python,
        &["-c", script, &path.display().to_string()],
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("the document is not valid OpenAPI: {e}"));
    assert_eq!(out.trim(), "valid");
}

#[tokio::test]
async fn swagger_ui_renders_the_route_list_in_a_headless_browser() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is required under CI (apt-get install -y chromium)"
        );
        println!("skipped: /usr/bin/chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let (_up, proxy) = proxy(None).await;
    let page = proxy.client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let profile = proxy.dir.path().join("chromium-profile");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let url = proxy.url("/");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        profile_arg.as_str(),
        "--virtual-time-budget=5000",
        "--dump-dom",
        url.as_str(),
    ];
    let dom = run(chromium, &args, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("chromium failed: {e}"));
    // Swagger UI has rendered the operations: each is an `opblock` whose
    // path is written out in the page.
    assert!(dom.contains("swagger-ui"), "{dom}");
    assert!(dom.contains("opblock"), "no operations rendered: {dom}");
    for path in [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/admin/status",
    ] {
        assert!(
            dom.contains(&format!(">{path}<")) || dom.contains(&format!("\"{path}\"")),
            "{path} is not visible in the rendered page"
        );
    }
}

#[tokio::test]
async fn docs_redirects_to_swagger_ui_and_assets_are_embedded() {
    let (_up, proxy) = proxy(None).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(proxy.url("/docs")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/");
    let js = client
        .get(proxy.url("/swagger-ui/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    let init = client
        .get(proxy.url("/swagger-ui/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("openapi.json"), "{init}");
    let missing = client
        .get(proxy.url("/swagger-ui/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn docs_are_public_by_default_but_model_routes_keep_the_key() {
    let (_up, proxy) = proxy(None).await;
    for path in ["/", "/openapi.json", "/swagger-ui/swagger-ui.css"] {
        let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let models = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    let doc = document(&proxy).await.to_string();
    assert!(!doc.contains(KEY) && !doc.contains("sk-test-key"));
}

#[tokio::test]
async fn public_docs_false_requires_the_master_key() {
    let (_up, proxy) = proxy(Some(false)).await;
    for path in ["/", "/openapi.json", "/swagger-ui/swagger-ui.css"] {
        let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let with_key = proxy
            .client
            .get(proxy.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(with_key.status(), 200, "{path}");
    }
}

/// A Python with `openapi-spec-validator`, in a venv under the target dir
/// created once.
async fn python_with_validator() -> Result<PathBuf, String> {
    static PYTHON: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    PYTHON
        .get_or_init(|| {
            sdk_support::venv_with(
                "py-venv-openapi",
                "openapi_spec_validator",
                &["openapi-spec-validator"],
            )
        })
        .await
        .clone()
}
