//! Property tests of the config parsers, which take text from outside the
//! process (a config file, a `.env` file, environment variables): whatever
//! the text, loading answers with a config or an error, never a panic.

use std::path::Path;

use conclave::config::{Env, load_str};
use proptest::prelude::*;

fn env() -> Env {
    Env::default().with_config_vars(
        [("CONCLAVE_PT_SET".to_owned(), "value".to_owned())]
            .into_iter()
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn substitution_never_panics_and_leaves_plain_text_alone(text in ".{0,200}") {
        let env = env();
        let substituted = env.substitute(&text).map(|resolved| resolved.text);
        if !text.contains('$') && !text.trim_start().starts_with("os.environ/") {
            prop_assert_eq!(substituted, Ok(text));
        }
    }

    #[test]
    fn references_resolve_or_name_the_missing_variable(
        prefix in "[a-z ]{0,10}",
        name in "[A-Z][A-Z0-9_]{0,12}",
    ) {
        let env = env();
        for form in [format!("${{{name}}}"), format!("${{{name}:-fallback}}")] {
            match env.substitute(&format!("{prefix}{form}")).map(|resolved| resolved.text) {
                Ok(out) => prop_assert!(out.starts_with(&prefix)),
                Err(message) => prop_assert!(message.contains(&name), "{}", message),
            }
        }
    }

    #[test]
    fn any_text_loads_or_fails_cleanly(text in "(.|\n){0,400}") {
        let _ = load_str(&text, Path::new("fuzz.yaml"), env());
    }

    #[test]
    fn any_config_shaped_yaml_loads_or_fails_cleanly(
        name in ".{0,20}",
        model in ".{0,30}",
        timeout in prop_oneof![Just("1e30".to_owned()), Just(".nan".to_owned()), Just("-3".to_owned()), "[0-9]{1,4}"],
        key in "[a-z_]{1,20}",
        value in ".{0,20}",
    ) {
        let yaml = format!(
            "model_list:\n  - model_name: {name:?}\n    litellm_params:\n      model: {model:?}\n      \
             timeout: {timeout}\n      {key}: {value:?}\nrouter_settings:\n  cooldown_time: {timeout}\n"
        );
        let _ = load_str(&yaml, Path::new("fuzz.yaml"), env());
    }
}

#[test]
fn a_deeply_nested_config_is_an_error_not_a_stack_overflow() {
    let depth = 5_000;
    let yaml = format!("model_list: {}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(load_str(&yaml, Path::new("deep.yaml"), env()).is_err());
}
