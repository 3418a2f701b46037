//! Loading configs end to end: environment substitution as the upstream sees
//! it, `conclave check` on good and broken files, and `serve` refusing to
//! start on a broken one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{FakeUpstream, Proxy, chat_body, failed_check, run_conclave};

fn repo_file(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
        .display()
        .to_string()
}

/// `conclave check` on `yaml` written to a fresh file: (success, stdout, stderr, file).
async fn check_yaml(yaml: &str, env: &[(&str, &str)]) -> (bool, String, String, String) {
    let dir = TempDir::new();
    let file = dir.write("config.yaml", yaml).display().to_string();
    let out = run_conclave(&["check", "--config", &file], env).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
    )
}

/// Sends one chat to `model` and returns the `authorization` header the
/// upstream deployment `deployment` received.
async fn upstream_auth(proxy: &Proxy, up: &FakeUpstream, model: &str, deployment: &str) -> String {
    let (status, _, body) = proxy.chat(&chat_body(model, "hi")).await;
    assert_eq!(status, 200, "{model}: {body}");
    let rec = up
        .recorded()
        .into_iter()
        .rev()
        .find(|r| r.deployment == deployment)
        .unwrap_or_else(|| panic!("{deployment} received nothing"));
    rec.headers["authorization"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn env_references_in_api_base_and_api_key_are_substituted() {
    let up = FakeUpstream::start().await;
    let host = up.addr.to_string();
    let base_a = up.api_base("da");
    let yaml = "model_list:
  - model_name: a
    litellm_params:
      model: openai/up-a
      api_base: os.environ/CONCLAVE_E2E_BASE_A
      api_key: os.environ/CONCLAVE_E2E_KEY_A
  - model_name: b
    litellm_params:
      model: openai/up-b
      api_base: \"http://${CONCLAVE_E2E_HOST}/db/v1\"
      api_key: \"${CONCLAVE_E2E_KEY_B}\"
  - model_name: c
    litellm_params:
      model: openai/up-c
      api_base: http://$CONCLAVE_E2E_HOST/dc/v1
      api_key: sk-$CONCLAVE_E2E_KEY_C-end
  - model_name: d
    litellm_params:
      model: openai/up-d
      api_base: http://${CONCLAVE_E2E_HOST}/dd/v1
      api_key: ${CONCLAVE_E2E_UNSET_KEY_D:-sk-default-d}
";
    let proxy = Proxy::start_with(
        yaml,
        &[
            ("CONCLAVE_E2E_BASE_A", base_a.as_str()),
            ("CONCLAVE_E2E_KEY_A", "sk-from-os-environ"),
            ("CONCLAVE_E2E_HOST", host.as_str()),
            ("CONCLAVE_E2E_KEY_B", "sk-from-braces"),
            ("CONCLAVE_E2E_KEY_C", "bare"),
        ],
        &[],
    )
    .await;
    assert_eq!(
        upstream_auth(&proxy, &up, "a", "da").await,
        "Bearer sk-from-os-environ"
    );
    assert_eq!(
        upstream_auth(&proxy, &up, "b", "db").await,
        "Bearer sk-from-braces"
    );
    assert_eq!(
        upstream_auth(&proxy, &up, "c", "dc").await,
        "Bearer sk-bare-end"
    );
    assert_eq!(
        upstream_auth(&proxy, &up, "d", "dd").await,
        "Bearer sk-default-d"
    );
}

#[tokio::test]
async fn dotenv_beside_the_config_fills_in_but_never_overrides_the_process_env() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: from-dotenv
    litellm_params:
      model: openai/x
      api_base: {}
      api_key: os.environ/CONCLAVE_E2E_DOTENV_ONLY
  - model_name: shadowed
    litellm_params:
      model: openai/y
      api_base: {}
      api_key: $CONCLAVE_E2E_SHADOWED
",
        up.api_base("d1"),
        up.api_base("d2")
    );
    let dotenv = "# written beside the config\n\
                  CONCLAVE_E2E_DOTENV_ONLY=sk-dotenv-only\n\
                  CONCLAVE_E2E_SHADOWED=sk-dotenv-loses\n";
    let proxy = Proxy::start_with(
        &yaml,
        &[("CONCLAVE_E2E_SHADOWED", "sk-process-wins")],
        &[(".env", dotenv)],
    )
    .await;
    assert_eq!(
        upstream_auth(&proxy, &up, "from-dotenv", "d1").await,
        "Bearer sk-dotenv-only"
    );
    assert_eq!(
        upstream_auth(&proxy, &up, "shadowed", "d2").await,
        "Bearer sk-process-wins"
    );
}

#[tokio::test]
async fn a_dollar_in_a_dotenv_value_or_a_config_secret_is_kept_as_written() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: from-dotenv
    litellm_params:
      model: openai/x
      api_base: {}
      api_key: os.environ/CONCLAVE_E2E_DOLLAR_KEY
  - model_name: written
    litellm_params:
      model: openai/y
      api_base: {}
      api_key: \"$ecretStartsWithADollar\"
",
        up.api_base("d1"),
        up.api_base("d2")
    );
    let dotenv = "CONCLAVE_E2E_DOLLAR_KEY=sk-$abc123$$x\n";
    let proxy = Proxy::start_with(&yaml, &[], &[(".env", dotenv)]).await;
    assert_eq!(
        upstream_auth(&proxy, &up, "from-dotenv", "d1").await,
        "Bearer sk-$abc123$$x"
    );
    assert_eq!(
        upstream_auth(&proxy, &up, "written", "d2").await,
        "Bearer $ecretStartsWithADollar"
    );
}

#[tokio::test]
async fn check_passes_for_the_demo_config() {
    let file = repo_file("config/demo.yaml");
    let out = run_conclave(&["check", "--config", &file], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(ok)"), "{stdout}");
    for group in [
        "demo-fast",
        "demo-balanced",
        "demo-flaky",
        "demo-slow",
        "demo-embed",
    ] {
        assert!(
            stdout.contains(&format!("\n  {group}\n")),
            "{group}: {stdout}"
        );
    }
    assert!(stdout.contains("balanced-heavy"), "{stdout}");
    assert!(!stdout.contains("warnings:"), "{stdout}");
}

/// Everything config/litellm-compat.yaml reads from the environment, except
/// the AWS keys of its bedrock deployment, which is skipped.
const COMPAT_ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-e2e-openai"),
    ("ANTHROPIC_API_KEY", "sk-e2e-anthropic"),
    ("AZURE_API_KEY", "e2e-azure"),
    ("AZURE_API_BASE", "https://e2e.openai.azure.com"),
    ("GROQ_API_KEY", "gsk-e2e"),
    ("LITELLM_MASTER_KEY", "sk-e2e-master"),
    ("DATABASE_URL", "postgres://conclave@127.0.0.1:5432/litellm"),
];

#[tokio::test]
async fn check_passes_for_a_litellm_format_config_and_skips_bedrock() {
    let file = repo_file("config/litellm-compat.yaml");
    let out = run_conclave(&["check", "--config", &file], COMPAT_ENV).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for group in [
        "gpt-4o",
        "claude-sonnet",
        "llama-fast",
        "text-embedding-3-small",
        "openai/*",
    ] {
        assert!(
            stdout.contains(&format!("\n  {group}\n")),
            "{group}: {stdout}"
        );
    }
    assert!(!stdout.contains("\n  bedrock-claude\n"), "{stdout}");
    assert!(
        stdout.contains("providers: anthropic, azure, groq, openai"),
        "{stdout}"
    );
    let warnings = stdout
        .split_once("\nwarnings:\n")
        .map(|(_, w)| w)
        .unwrap_or_else(|| panic!("no warnings section: {stdout}"));
    for expected in [
        "model_list[4].litellm_params.model: provider \"bedrock\" is not supported, deployment skipped",
        "litellm_settings.success_callback, litellm_settings.failure_callback: callbacks conclave does not have, ignored: langfuse",
        "litellm_settings.custom_provider_map:",
    ] {
        assert!(
            warnings.contains(&format!("{file}: {expected}")),
            "missing warning {expected:?}:\n{warnings}"
        );
    }
    for key in COMPAT_ENV.iter().map(|(_, v)| *v) {
        assert!(!stdout.contains(key), "check printed a secret: {stdout}");
    }
}

#[tokio::test]
async fn check_passes_for_the_seed_projects_config_with_python_strategy_paths() {
    let file = repo_file("config/litellm-compat-seed.yaml");
    let out = run_conclave(
        &["check", "--config", &file],
        &[("CEREBRAS_API_KEY", "sk-e2e-cerebras")],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("council_basic: council (builtin:council"),
        "{stdout}"
    );
    assert!(
        stdout.contains("composer_ask: composer-cli (builtin:passthrough"),
        "{stdout}"
    );
    let warnings = stdout
        .split_once("\nwarnings:\n")
        .map(|(_, w)| w)
        .unwrap_or_else(|| panic!("no warnings section: {stdout}"));
    for (entry, strategy) in [
        ("moa", "moa"),
        ("council", "council"),
        ("composer-cli", "composer-cli"),
    ] {
        let at = format!("{file}: general_settings.composite_llm.strategy_registry.{entry}: ");
        let named: Vec<&str> = warnings.lines().filter(|l| l.contains(&at)).collect();
        assert_eq!(named.len(), 1, "one warning for {entry}:\n{warnings}");
        assert!(
            named[0].contains("Python import path")
                && named[0].contains(&format!("{strategy:?} strategy")),
            "{}",
            named[0]
        );
    }
    assert!(!stdout.contains("sk-e2e-cerebras"), "{stdout}");
}

#[tokio::test]
async fn check_fails_with_file_and_key_path_for_a_wrong_type() {
    let (ok, _, stderr, file) = check_yaml(
        "model_list:
  - model_name: fine
    litellm_params: {model: mock/fine}
  - model_name: broken
    litellm_params:
      model: [not, a, string]
",
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}: model_list[1].litellm_params.model: invalid type"
        )),
        "{stderr}"
    );
}

/// As LiteLLM, a key whose variable is unset is read as not written: the
/// file loads, said aloud.
#[tokio::test]
async fn check_warns_naming_an_unset_env_var_and_where_it_is_used() {
    let (ok, out, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_key: os.environ/CONCLAVE_E2E_NEVER_SET_KEY
",
        &[],
    )
    .await;
    assert!(ok, "{stderr}");
    let said = format!("{out}{stderr}");
    assert!(
        said.contains(&format!(
            "{file}: model_list[0].litellm_params.api_key: environment variable CONCLAVE_E2E_NEVER_SET_KEY is not set; left unset"
        )),
        "{said}"
    );
}

/// A deployment whose key and default temperature name unset variables
/// is served without them: no key, no temperature in the body it sends.
#[tokio::test]
async fn a_deployment_with_unset_variables_is_served_without_those_keys() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_base: {}
      api_key: os.environ/CONCLAVE_E2E_NEVER_SET_KEY_2
      temperature: os.environ/CONCLAVE_E2E_NEVER_SET_TEMP
      max_tokens: 77
",
        up.api_base("d")
    );
    let proxy = Proxy::start_with(&yaml, &[], &[]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    let sent = up.recorded().pop().unwrap();
    assert_eq!(sent.body["max_tokens"], 77, "{}", sent.body);
    assert!(sent.body.get("temperature").is_none(), "{}", sent.body);
    assert!(
        sent.headers.get("authorization").is_none(),
        "{:?}",
        sent.headers
    );
}

/// Where an unset key would send prompts elsewhere, the file is refused.
#[tokio::test]
async fn check_fails_naming_an_unset_env_var_in_an_api_base() {
    let (ok, _, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_key: sk-x
      api_base: os.environ/CONCLAVE_E2E_NEVER_SET_BASE
",
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}: model_list[0].litellm_params.api_base: environment variable CONCLAVE_E2E_NEVER_SET_BASE is not set"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_fails_for_an_unknown_routing_strategy() {
    let (ok, _, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params: {model: mock/m}
router_settings:
  routing_strategy: fastest-guess
",
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}: router_settings.routing_strategy: unknown routing strategy \"fastest-guess\""
        )),
        "{stderr}"
    );
    assert!(stderr.contains("simple-shuffle"), "{stderr}");
}

/// A misspelt provider is a typo to fix, not a provider to skip: the group
/// would vanish and every client of it get a 404.
#[tokio::test]
async fn check_fails_for_a_misspelt_provider_naming_the_one_meant() {
    let (ok, _, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params: {model: mock/m}
  - model_name: claude
    litellm_params: {model: anthropc/claude-x, api_key: k}
",
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}: model_list[1].litellm_params.model: provider \"anthropc\" is not known; did you mean \"anthropic\"?"
        )),
        "{stderr}"
    );
}

/// LiteLLM's `supported_environments`: in the environment
/// `LITELLM_ENVIRONMENT` names, an entry listing others is not loaded; a
/// name that is no environment is refused.
#[tokio::test]
async fn entries_for_other_environments_are_left_out() {
    let yaml = "model_list:
  - model_name: everywhere
    litellm_params: {model: mock/a}
  - model_name: prod-only
    litellm_params: {model: mock/b}
    model_info: {supported_environments: [production]}
";
    let (ok, stdout, stderr, file) =
        check_yaml(yaml, &[("LITELLM_ENVIRONMENT", "development")]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\n  everywhere\n"), "{stdout}");
    assert!(!stdout.contains("\n  prod-only\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("{file}: model_list[1].model_info.supported_environments: does not list this environment")),
        "{stdout}"
    );
    let (ok, stdout, _, _) = check_yaml(yaml, &[("LITELLM_ENVIRONMENT", "production")]).await;
    assert!(ok && stdout.contains("\n  prod-only\n"), "{stdout}");
    let (ok, _, stderr, _) = check_yaml(yaml, &[("LITELLM_ENVIRONMENT", "prod")]).await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("LITELLM_ENVIRONMENT: \"prod\" is not an environment"),
        "{stderr}"
    );
}

/// A composite profile whose member is a group of skipped deployments
/// would fail every run: the config is refused, naming the node.
#[tokio::test]
async fn check_fails_for_a_profile_whose_model_has_only_skipped_deployments() {
    let (ok, _, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params: {model: mock/m}
  - model_name: claude
    litellm_params: {model: bedrock/anthropic.claude-x}
  - model_name: council
    litellm_params: {model: composite/profile/council}
general_settings:
  composite_llm:
    profiles:
      council:
        strategy: council
        topology:
          members: [{model: m}, {model: claude}]
          chairman: {model: m}
",
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("{file}: general_settings.composite_llm.profiles.council.topology.members[1].model: \"claude\" names model_list entries that are all skipped")),
        "{stderr}"
    );
}

/// `check` opens nothing, but refuses a key store `serve` could not open,
/// and says which store a good config uses, without its password.
#[tokio::test]
async fn check_names_the_key_store_and_fails_for_one_serve_could_not_open() {
    let config = |url: &str| {
        format!(
            "model_list:\n  - model_name: m\n    litellm_params: {{model: mock/m}}\ngeneral_settings:\n  master_key: sk-check\n  database_url: {url}\n"
        )
    };
    let env = [("REDIS_URL", ""), ("REDIS_HOST", "")];
    for bad in [
        "mysql://u:hunter2@127.0.0.1/keys",
        "postgres://u:hunter2@127.0.0.1:port/keys",
    ] {
        let (ok, stdout, stderr, _) = check_yaml(&config(bad), &env).await;
        assert!(!ok, "{bad}: {stdout}");
        assert!(stderr.contains("general_settings.database_url"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let (ok, stdout, stderr, _) =
        check_yaml(&config("postgres://u:hunter2@db.internal:5432/keys"), &env).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("key store: postgres://db.internal:5432/keys"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[tokio::test]
async fn check_fails_for_a_yaml_syntax_error() {
    let (ok, stdout, stderr, file) = check_yaml(
        "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m\n",
        &[],
    )
    .await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(&format!("{file}: invalid YAML:")),
        "{stderr}"
    );
    assert!(stderr.contains("line"), "no position given: {stderr}");
}

#[tokio::test]
async fn serve_with_a_broken_config_exits_without_listening() {
    let dir = TempDir::new();
    let file = dir
        .write(
            "config.yaml",
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: 42.5e\n      timeout: -1\n",
        )
        .display()
        .to_string();
    let out = run_conclave(
        &[
            "--log-format",
            "json",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            &file,
        ],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}: model_list[0].litellm_params.timeout: must be a positive number"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("conclave listening"), "{stderr}");
}

#[tokio::test]
async fn unknown_keys_warn_naming_their_path() {
    let (ok, stdout, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params:
      model: mock/m
      not_a_param: 1
router_settings:
  num_retries: 1
  retry_storm: true
surprise_section:
  x: 1
",
        &[],
    )
    .await;
    assert!(ok, "{stderr}");
    for path in [
        "model_list[0].litellm_params.not_a_param",
        "router_settings.retry_storm",
        "surprise_section",
    ] {
        assert!(
            stdout.contains(&format!("{file}: {path}: unknown key, ignored")),
            "{path}: {stdout}"
        );
    }
    assert!(!stdout.contains("num_retries: unknown"), "{stdout}");
}

/// A key conclave reads for other providers is said to be unread by this
/// one, not offered as its own correction.
#[tokio::test]
async fn a_key_of_another_provider_is_named_as_unread_by_this_one() {
    let (ok, stdout, stderr, file) = check_yaml(
        "model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      api_key: sk-x
      mock_latency_ms: 20
",
        &[],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "{file}: model_list[0].litellm_params.mock_latency_ms: \"openai\" deployments do not read this key; ignored"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("did you mean `mock_latency_ms`"),
        "{stdout}"
    );
}

#[tokio::test]
async fn serve_logs_unknown_key_warnings_and_still_serves() {
    let proxy = Proxy::start(
        "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\ngeneral_settings:\n  not_a_setting: 3\n",
    )
    .await;
    let logs = proxy.logs();
    assert!(
        logs.contains("general_settings.not_a_setting: unknown key, ignored"),
        "{logs}"
    );
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn absurd_durations_are_config_errors_naming_the_key_not_crashes() {
    for (yaml, key) in [
        (
            "model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo, timeout: 1e30}\n",
            "model_list[0].litellm_params.timeout",
        ),
        (
            "model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo}\nrouter_settings:\n  cooldown_time: 1e300\n",
            "router_settings.cooldown_time",
        ),
        (
            "model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo}\nlitellm_settings:\n  request_timeout: .inf\n",
            "litellm_settings.request_timeout",
        ),
    ] {
        let stderr = failed_check(yaml).await;
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn an_unknown_budget_time_zone_is_refused_naming_the_key() {
    let stderr =
        conclave_e2e::failed_check("model_list: []\nlitellm_settings:\n  timezone: Mars/Olympus\n")
            .await;
    assert!(stderr.contains("litellm_settings.timezone"), "{stderr}");
    assert!(stderr.contains("\"Mars/Olympus\""), "{stderr}");
}

#[tokio::test]
async fn a_budget_reset_time_off_the_24_hour_clock_is_refused_naming_the_key() {
    let stderr = conclave_e2e::failed_check(
        "model_list: []\nlitellm_settings:\n  budget_reset_time: \"25:00\"\n",
    )
    .await;
    assert!(
        stderr.contains("litellm_settings.budget_reset_time"),
        "{stderr}"
    );
    assert!(stderr.contains("\"25:00\""), "{stderr}");
}
