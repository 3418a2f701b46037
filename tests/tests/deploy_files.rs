//! The deployment files in deploy/ stay usable: the team config they mount
//! passes `conclave check`, and the compose file parses where Docker's
//! compose client is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::run_conclave;

fn repo_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_deployed_team_config_passes_check() {
    let config = repo_file("deploy/config.yaml");
    let out = run_conclave(
        &["check", "--config", &config],
        &[
            ("CONCLAVE_MASTER_KEY", "sk-master-for-check"),
            ("OPENAI_API_KEY", "sk-openai-for-check"),
            ("ANTHROPIC_API_KEY", "sk-anthropic-for-check"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for group in ["gpt-4o", "claude-sonnet"] {
        assert!(stdout.contains(group), "{stdout}");
    }
    for secret in ["sk-master-for-check", "sk-openai-for-check"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}

#[tokio::test]
async fn the_compose_file_parses_in_both_profiles() {
    let probe = tokio::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .await;
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED the_compose_file_parses_in_both_profiles: no `docker compose` client here"
        );
        return;
    }
    let file = repo_file("deploy/docker-compose.yml");
    for profile in ["self-hosted-db", "managed-db"] {
        let out = tokio::process::Command::new("docker")
            .args([
                "compose",
                "-f",
                &file,
                "--profile",
                profile,
                "config",
                "--quiet",
            ])
            .env("CONCLAVE_MASTER_KEY", "sk-master")
            .env("DATABASE_URL", "postgres://db/conclave")
            .env("REDIS_URL", "redis://cache:6379")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
