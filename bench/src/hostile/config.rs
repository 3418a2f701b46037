//! The config of the hostile run: plain deployments on the well-behaved
//! mock, one deployment per hostile upstream behaviour, a wildcard Azure
//! group, an exec deployment that prints its environment, composite
//! profiles (a sleeping mixture, the hostile strategy, a topology-only
//! bundle deployment), and the server limits the attacks run into.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::upstream::Hostile;
use crate::Result;
use crate::mock::Spec;

/// `general_settings.max_connections` of the run.
pub const MAX_CONNECTIONS: usize = 512;
/// `general_settings.global_max_parallel_requests` of the run: above the
/// composite burst (300) and the plain load, below `max_connections`.
pub const MAX_PARALLEL: usize = 320;
/// `header_read_timeout` and `request_body_timeout`, seconds.
pub const CLIENT_TIMEOUT_S: u64 = 2;
/// `timeout` / `stream_timeout` of the stalling deployments, seconds.
pub const UPSTREAM_TIMEOUT_S: u64 = 2;
/// Latency of the over-parallel target, milliseconds.
pub const SLOW_MS: u64 = 1500;
/// Latency of the composite burst's members, milliseconds.
pub const MEMBER_MS: u64 = 400;
/// Content chunks of a plain streamed answer.
pub const PLAIN_STREAM_CHUNKS: usize = 10;
/// The `retry-after` / `retry-after-ms` values the lying upstreams send,
/// as `(header kind, value)`; deployment `ra-<i>` sends the i-th.
pub const RETRY_HINTS: [(&str, &str); 7] = [
    ("ra", "1e300"),
    ("ra", "inf"),
    ("ra", "NaN"),
    ("ra", "-5"),
    ("ra", "99999999999999999999999"),
    ("rams", "1e300"),
    ("rams", "-1"),
];
/// The client-visible name of the deployment only a topology names.
pub const HIDDEN_MODEL: &str = "openai/p-up@fakeb";

/// Secrets in the gateway's environment that must reach nobody.
pub struct Secrets {
    pub master_key: String,
    pub provider_key: String,
    pub other: String,
}

impl Secrets {
    /// Fresh values for this run.
    pub fn new() -> Secrets {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("{nanos:x}-{}", std::process::id());
        Secrets {
            master_key: format!("sk-hostile-master-{tag}"),
            provider_key: format!("sk-hostile-openai-{tag}"),
            other: format!("hostile-run-secret-{tag}"),
        }
    }

    /// The gateway's extra environment.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CONCLAVE_MASTER_KEY".into(), self.master_key.clone()),
            ("OPENAI_API_KEY".into(), self.provider_key.clone()),
            ("HOSTILE_RUN_SECRET".into(), self.other.clone()),
        ]
    }

    /// Every secret value.
    pub fn all(&self) -> [&str; 3] {
        [&self.master_key, &self.provider_key, &self.other]
    }
}

impl Default for Secrets {
    fn default() -> Self {
        Self::new()
    }
}

fn deployment(yaml: &mut String, name: &str, api_base: &str, extra: &[&str]) {
    yaml.push_str(&format!(
        "  - model_name: {name:?}\n    litellm_params:\n      model: openai/bench-model\n      \
         api_base: {api_base}\n      api_key: sk-bench\n"
    ));
    for line in extra {
        yaml.push_str(&format!("      {line}\n"));
    }
}

/// Writes the exec deployment's program (it prints its environment) and
/// the config into `work`; returns the config's path.
pub fn write(work: &Path, mock: SocketAddr, hostile: &Hostile, strategy: &Path) -> Result<PathBuf> {
    let env_sh = work.join("print-env.sh");
    std::fs::write(&env_sh, "#!/bin/sh\nenv\n")?;
    std::fs::set_permissions(&env_sh, std::fs::Permissions::from_mode(0o755))?;
    let plain = |spec: Spec| format!("http://{mock}{}", spec.api_path());
    let h = |behaviour: &str| format!("{}/v1", hostile.base(behaviour));

    let mut yaml =
        String::from("# Written by the hostile run; rewritten on every run.\nmodel_list:\n");
    deployment(&mut yaml, "plain", &plain(Spec::default()), &[]);
    let stream = Spec {
        chunks: PLAIN_STREAM_CHUNKS,
        gap: Duration::from_millis(10),
        ..Spec::default()
    };
    deployment(&mut yaml, "plain-stream", &plain(stream), &[]);
    deployment(&mut yaml, "slow", &plain(Spec::waiting(SLOW_MS)), &[]);
    deployment(&mut yaml, "member", &plain(Spec::waiting(MEMBER_MS)), &[]);
    deployment(
        &mut yaml,
        "stall",
        &h("stall"),
        &[&format!("timeout: {UPSTREAM_TIMEOUT_S}")],
    );
    deployment(
        &mut yaml,
        "stall-stream",
        &h("stall"),
        &[&format!("stream_timeout: {UPSTREAM_TIMEOUT_S}")],
    );
    for (i, (kind, value)) in RETRY_HINTS.iter().enumerate() {
        deployment(
            &mut yaml,
            &format!("ra-{i}"),
            &h(&format!("{kind}/{value}")),
            &[],
        );
    }
    // A group that always fails, for the fallback to a hidden deployment.
    deployment(&mut yaml, "doomed", &h("ra/1"), &[]);
    for behaviour in ["giant", "endless", "multiline", "midstream"] {
        deployment(&mut yaml, behaviour, &h(behaviour), &[]);
    }
    yaml.push_str(&format!(
        "  - model_name: azure/*\n    litellm_params:\n      model: azure/*\n      api_base: {}\n      \
         api_key: sk-azure-bench\n      api_version: 2024-10-21\n",
        hostile.base("wild")
    ));
    yaml.push_str(&format!(
        "  - model_name: tool\n    litellm_params:\n      model: exec/composer-1\n      command: {}\n      \
         args: [\"{{prompt}}\"]\n      timeout: 5\n      stream_timeout: 2\n",
        env_sh.display()
    ));
    for (name, profile) in [
        ("slow-moa", "slow"),
        ("hostile", "hostile"),
        ("hostile-tight", "hostile_tight"),
        ("hidden-moa", "hidden"),
    ] {
        yaml.push_str(&format!(
            "  - model_name: {name}\n    litellm_params:\n      model: composite/profile/{profile}\n"
        ));
    }
    yaml.push_str(&format!(
        "router_settings:\n  num_retries: 0\n  allowed_fails: 0\n\
general_settings:
  master_key: os.environ/CONCLAVE_MASTER_KEY
  header_read_timeout: {CLIENT_TIMEOUT_S}
  request_body_timeout: {CLIENT_TIMEOUT_S}
  max_connections: {MAX_CONNECTIONS}
  global_max_parallel_requests: {MAX_PARALLEL}
  compile_cache_dir: {cache}
  composite_llm:
    providers:
      fakeb:
        litellm_params: {{api_base: \"{hidden}\", api_key: sk-bundle}}
    strategy_registry:
      hostile: {strategy}
    profiles:
      slow:
        strategy: moa
        topology:
          aggregator: {{model: member}}
          proposers: [{{model: member}}]
          settings: {{}}
      hostile:
        strategy: hostile
        topology:
          settings: {{mode: respond, model: plain}}
      hostile_tight:
        strategy: hostile
        topology:
          settings: {{mode: respond, model: plain}}
        limits: {{max_call_bytes: 65536, max_run_bytes: 1048576, max_calls: 100000, max_answer_bytes: 100000}}
      hidden:
        strategy: moa
        topology:
          aggregator: {{model: plain}}
          proposers: [{{model: openai/p-up, provider: fakeb}}]
          settings: {{}}
",
        cache = work.join("compile-cache").display(),
        hidden = h("hidden"),
        strategy = strategy.display(),
    ));
    let path = work.join("conclave-hostile.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}
