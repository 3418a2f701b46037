//! `conclave strategy new` then `conclave strategy build`: a fresh scaffold
//! builds as it is, passes the world check, and answers through the HTTP API
//! of the real binary.
//!
//! The Rust scaffold builds in a temporary directory with its cargo target
//! under target/scaffold-target (wit-bindgen is compiled once). The Python
//! and JavaScript scaffolds are generated in a temporary directory and
//! copied to target/strategy-scaffolds/<lang> to build (npm packages stay
//! there, and an unchanged scaffold is not rebuilt); they are skipped, with
//! the reason printed, when python3 or node/npm is missing or the packages
//! cannot be installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lang_support;

use std::path::{Path, PathBuf};

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{Behavior, FakeUpstream, bodies, chat_body};
use lang_support::{
    config, missing_tools, read_tree, serve, skip, strategy_build, strategy_new, sync_files,
    target_dir,
};
use serde_json::json;

const WIT: &str = include_str!("../../wit/strategy.wit");

/// Checks the generated files of a `lang` scaffold in `dir`.
fn assert_scaffold(dir: &Path, lang: &str) {
    let wit = std::fs::read_to_string(dir.join("wit/strategy.wit")).unwrap();
    assert_eq!(wit, WIT, "the scaffold's WIT is not conclave's");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for needle in ["conclave strategy build", "strategy_registry", "demo.wasm"] {
        assert!(readme.contains(needle), "README lacks {needle:?}");
    }
    let expected: &[&str] = match lang {
        "rust" => &["Cargo.toml", "src/lib.rs", ".gitignore"],
        "python" => &["app.py", "pyproject.toml", ".gitignore"],
        _ => &["package.json", "strategy.js", "build.mjs", ".gitignore"],
    };
    for file in expected {
        assert!(dir.join(file).is_file(), "{lang} scaffold lacks {file}");
    }
}

/// Serves the built scaffold and asks it one question.
async fn scaffold_answers(wasm: &Path) {
    let up = FakeUpstream::start().await;
    up.set("answer", Behavior::ok("forty-two"));
    let proxy = serve(&config(
        &up,
        &["answer"],
        "demo",
        wasm,
        "{model: answer, settings: {system_prompt: SYS-PROMPT-7}}",
    ))
    .await;
    let (status, _, body) = proxy
        .chat(&chat_body("demo", "What is six times seven?"))
        .await;
    assert_eq!(status, 200, "{body}\n{}", proxy.logs());
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "forty-two", "{body}");
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|r| r.contains("[answer]")),
        "{body}"
    );
    let seen = bodies(&up, "answer");
    assert_eq!(seen.len(), 1);
    let messages = seen[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system", "{}", seen[0]);
    assert_eq!(messages[0]["content"], "SYS-PROMPT-7");
    assert_eq!(messages[1]["content"], "What is six times seven?");

    // Request overrides replace the profile's settings.
    let mut request = chat_body("demo", "Again");
    request["composite_settings"] = json!({"system_prompt": "OVERRIDDEN"});
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let last = bodies(&up, "answer").pop().unwrap();
    assert_eq!(last["messages"][0]["content"], "OVERRIDDEN", "{last}");
}

/// Scaffolds `demo` in `lang` in a temporary directory and copies it to
/// target/strategy-scaffolds/<lang>/demo, where it is built.
async fn staged_scaffold(lang: &str) -> PathBuf {
    let tmp = TempDir::new();
    let fresh = tmp.path().join("demo");
    strategy_new("demo", lang, &fresh).await;
    assert_scaffold(&fresh, lang);
    let dest = target_dir()
        .join("strategy-scaffolds")
        .join(lang)
        .join("demo");
    sync_files(&dest, &read_tree(&fresh));
    dest
}

#[tokio::test]
async fn a_new_rust_strategy_builds_and_answers() {
    let test = "a_new_rust_strategy_builds_and_answers";
    let tmp = TempDir::new();
    let dir = tmp.path().join("demo");
    strategy_new("demo", "rust", &dir).await;
    assert_scaffold(&dir, "rust");
    // Not a member of any workspace, and no path into conclave's repository.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("wit-bindgen = \"0.61\""), "{manifest}");
    assert!(!manifest.contains("path ="), "{manifest}");

    let env = [(
        "CARGO_TARGET_DIR",
        target_dir().join("scaffold-target").display().to_string(),
    )];
    let wasm = strategy_build(test, &dir, &env)
        .await
        .expect("Rust builds need no extra tools");
    assert_eq!(wasm, dir.canonicalize().unwrap().join("demo.wasm"));
    scaffold_answers(&wasm).await;

    // A second `new` into the same directory is refused.
    let out = lang_support::conclave(
        &[
            "strategy",
            "new",
            "demo",
            "--lang",
            "rust",
            "--dir",
            &dir.display().to_string(),
        ],
        &[],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[tokio::test]
async fn a_new_python_strategy_builds_and_answers() {
    let test = "a_new_python_strategy_builds_and_answers";
    if let Some(reason) = missing_tools("python") {
        return skip(test, &reason);
    }
    let dir = staged_scaffold("python").await;
    let Some(wasm) = strategy_build(test, &dir, &[]).await else {
        return;
    };
    scaffold_answers(&wasm).await;
}

#[tokio::test]
async fn a_new_js_strategy_builds_and_answers() {
    let test = "a_new_js_strategy_builds_and_answers";
    if let Some(reason) = missing_tools("js") {
        return skip(test, &reason);
    }
    let dir = staged_scaffold("js").await;
    let Some(wasm) = strategy_build(test, &dir, &[]).await else {
        return;
    };
    scaffold_answers(&wasm).await;
}

#[tokio::test]
async fn building_a_component_of_another_world_is_refused() {
    // A Rust project whose WIT declares another world: it builds, and the
    // check against conclave's world refuses it.
    let dir = target_dir().join("strategy-scaffolds/wrong-world");
    let files: [(&str, &str); 3] = [
        (
            "Cargo.toml",
            "[package]\nname = \"wrong-world\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwit-bindgen = \"0.61\"\n\n[workspace]\n",
        ),
        (
            "wit/other.wit",
            "package other:thing@0.1.0;\n\nworld strategy {\n    export run: func(input: string) -> string;\n}\n",
        ),
        (
            "src/lib.rs",
            "wit_bindgen::generate!({ world: \"strategy\", path: \"wit\" });\n\n\
             struct C;\n\nimpl Guest for C {\n    fn run(input: String) -> String {\n        input\n    }\n}\n\n\
             export!(C);\n",
        ),
    ];
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect();
    sync_files(&dir, &files);
    let env = [(
        "CARGO_TARGET_DIR",
        target_dir().join("scaffold-target").display().to_string(),
    )];
    let out = lang_support::conclave(
        &["strategy", "build", &dir.display().to_string()],
        &env,
        lang_support::BUILD_LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot run it as a strategy"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no path is printed for a refused component"
    );
}
