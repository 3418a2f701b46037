//! Whether and how traces are exported: the standard `OTEL_*` environment
//! variables, `general_settings.otel` and LiteLLM's `otel` callback, merged
//! once at start-up. The environment wins over the file, as operators expect.

use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;

use crate::config::Config;

/// `OTEL_EXPORTER_OTLP_PROTOCOL` values conclave exports with.
const HTTP_PROTOBUF: &str = "http/protobuf";
const GRPC: &str = "grpc";
/// The collector's gRPC port on this host, the OTLP default for `grpc`.
const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The collector's HTTP traces URL on this host, the OTLP default for `http/protobuf`.
const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// Longest an export may take when `OTEL_EXPORTER_OTLP_TIMEOUT` is unset.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often queued spans are sent when `OTEL_BSP_SCHEDULE_DELAY` is unset.
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(1000);
/// Spans waiting for export before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
const DEFAULT_MAX_QUEUE: usize = 2048;
/// Spans in one export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
const DEFAULT_MAX_BATCH: usize = 512;

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP with protobuf bodies (the default, port 4318).
    HttpProtobuf,
    /// OTLP over gRPC (port 4317).
    Grpc,
}

/// Resolved trace-export settings; only built when export is on.
pub struct Settings {
    pub transport: Transport,
    /// Over HTTP the traces URL, over gRPC the collector's base URL: from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as it is), `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// or the config (over HTTP with `/v1/traces` added), else the local
    /// collector's default port.
    pub endpoint: String,
    /// The config's headers, then `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`
    /// (which wins for a name both set).
    pub headers: Vec<(String, String)>,
    /// Longest an export may take, retries included
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, milliseconds).
    pub timeout: Duration,
    /// The `service.name` from the config (`OTEL_SERVICE_NAME` wins).
    pub service_name: Option<String>,
    pub sampler: Sampler,
    /// Record message contents on model-call spans.
    pub capture_content: bool,
    pub schedule_delay: Duration,
    pub max_queue: usize,
    pub max_batch: usize,
}

impl std::fmt::Debug for Settings {
    /// Header names only: their values are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("transport", &self.transport)
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("capture_content", &self.capture_content)
            .finish_non_exhaustive()
    }
}

/// Reads the settings from `config` (loaded from `file`) and the environment
/// as `env` reports it. `Ok(None)` when export is off; an error names the
/// variable or key path that is wrong.
pub fn resolve(
    config: &Config,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Settings>, String> {
    let file_settings = config.general_settings.otel.as_ref();
    if !enabled(config, env) {
        return Ok(None);
    }
    let transport = transport(file_settings.and_then(|o| o.protocol.as_deref()), file, env)?;
    let sampler = sampler(file_settings, file, env)?;
    let capture_content = match env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT") {
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => file_settings
            .and_then(|o| o.capture_message_content)
            .unwrap_or(false),
    };
    let endpoint = endpoint(
        transport,
        file_settings.and_then(|o| o.endpoint.as_deref()),
        env,
    );
    let mut headers: Vec<(String, String)> = file_settings
        .map(|o| {
            o.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in env_headers(env)? {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        headers.push((name, value));
    }
    check_compression(env)?;
    let timeout = match env_number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", env)? {
        Some(ms) => Some(ms),
        None => env_number("OTEL_EXPORTER_OTLP_TIMEOUT", env)?,
    };
    Ok(Some(Settings {
        transport,
        endpoint,
        headers,
        timeout: timeout.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        service_name: file_settings.and_then(|o| o.service_name.clone()),
        sampler,
        capture_content,
        schedule_delay: env_number("OTEL_BSP_SCHEDULE_DELAY", env)?
            .map_or(DEFAULT_SCHEDULE_DELAY, Duration::from_millis),
        max_queue: env_number("OTEL_BSP_MAX_QUEUE_SIZE", env)?
            .map_or(DEFAULT_MAX_QUEUE, |n| n.max(1) as usize),
        max_batch: env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", env)?
            .map_or(DEFAULT_MAX_BATCH, |n| n.max(1) as usize),
    }))
}

/// On when the config or the environment asks for it, unless something
/// turns it off explicitly.
fn enabled(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let is =
        |name: &str, value: &str| env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
    if is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none") {
        return false;
    }
    let file = config.general_settings.otel.as_ref();
    if file.and_then(|o| o.enabled) == Some(false) {
        return false;
    }
    let ls = &config.litellm_settings;
    let callback = [&ls.success_callback, &ls.failure_callback, &ls.callbacks]
        .into_iter()
        .flatten()
        .any(|list| list.names().contains(&crate::config::callbacks::OTEL));
    file.is_some()
        || callback
        || is("OTEL_TRACES_EXPORTER", "otlp")
        || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
}

/// LiteLLM's names for the exporter, the collector and its headers, read
/// after the standard `OTEL_EXPORTER_OTLP_*` ones.
const LITELLM_EXPORTER: &str = "OTEL_EXPORTER";
const LITELLM_ENDPOINT: &str = "OTEL_ENDPOINT";
const LITELLM_HEADERS: &str = "OTEL_HEADERS";

/// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`, else LiteLLM's `OTEL_EXPORTER`,
/// else `general_settings.otel.protocol`, else OTLP/HTTP; `http/json` and
/// anything else is refused, naming the source.
fn transport(
    file: Option<&str>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Transport, String> {
    let (source, value) = match (
        env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        env("OTEL_EXPORTER_OTLP_PROTOCOL"),
    ) {
        (Some(v), _) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL".to_owned(), v),
        (None, Some(v)) => ("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), v),
        // LiteLLM's own variable, in its words.
        (None, None) if let Some(v) = env(LITELLM_EXPORTER) => {
            return match v.trim() {
                "otlp_http" => Ok(Transport::HttpProtobuf),
                "otlp_grpc" | "grpc" => Ok(Transport::Grpc),
                _ => Err(format!(
                    "{LITELLM_EXPORTER} = {v:?}: conclave exports traces over OTLP only \
                     (otlp_http or otlp_grpc)"
                )),
            };
        }
        (None, None) => match file {
            Some(v) => (
                format!("{path}: general_settings.otel.protocol"),
                v.to_owned(),
            ),
            None => return Ok(Transport::HttpProtobuf),
        },
    };
    match value.trim() {
        HTTP_PROTOBUF => Ok(Transport::HttpProtobuf),
        GRPC => Ok(Transport::Grpc),
        _ => Err(format!(
            "{source} = {value:?}: conclave exports traces as \"{HTTP_PROTOBUF}\" (the \
             collector's port 4318) or \"{GRPC}\" (port 4317); JSON bodies are not supported"
        )),
    }
}

/// `OTEL_TRACES_SAMPLER[_ARG]`, else `general_settings.otel.sampler[_arg]`.
fn sampler(
    file: Option<&crate::config::OtelSettings>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Sampler, String> {
    let (name, name_source) = match env("OTEL_TRACES_SAMPLER") {
        Some(v) => (v, "OTEL_TRACES_SAMPLER".to_owned()),
        None => match file.and_then(|o| o.sampler.clone()) {
            Some(v) => (v, format!("{path}: general_settings.otel.sampler")),
            None => return Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
        },
    };
    let ratio = || -> Result<f64, String> {
        let (raw, source) = match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => (v, "OTEL_TRACES_SAMPLER_ARG".to_owned()),
            None => match file.and_then(|o| o.sampler_arg) {
                Some(v) => (
                    v.to_string(),
                    format!("{path}: general_settings.otel.sampler_arg"),
                ),
                None => return Ok(1.0),
            },
        };
        match raw.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!("{source} = {raw:?}: expected a ratio from 0 to 1")),
        }
    };
    Ok(match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => {
            return Err(format!(
                "{name_source} = {other:?}: expected always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

/// A whole number from the environment variable `name`, if set.
fn env_number(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<u64>, String> {
    match env(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{name} = {raw:?}: expected a whole number")),
    }
}

/// The traces URL under a collector's base URL.
/// Where spans go; the environment wins over the file.
fn endpoint(
    transport: Transport,
    file: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    let traces = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| env(LITELLM_ENDPOINT))
        .or_else(|| file.map(str::to_owned));
    match transport {
        // A signal's own endpoint is taken as it is; a base URL gets the
        // traces path.
        Transport::HttpProtobuf => traces
            .or_else(|| base.as_deref().map(traces_url))
            .unwrap_or_else(|| DEFAULT_HTTP_ENDPOINT.to_owned()),
        // gRPC has one path for every signal: the base URL is the endpoint.
        Transport::Grpc => traces
            .or(base)
            .unwrap_or_else(|| DEFAULT_GRPC_ENDPOINT.to_owned()),
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
/// `name=value` pairs separated by commas, values percent-decoded. An error
/// names the variable and the entry's position, never a value.
fn env_headers(env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, String> {
    let Some((variable, raw)) = [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
        LITELLM_HEADERS,
    ]
    .into_iter()
    .find_map(|name| env(name).map(|v| (name, v))) else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for (n, entry) in raw.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let decoded = entry.split_once('=').and_then(|(name, value)| {
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .ok()?;
            Some((name.trim().to_owned(), value.into_owned()))
        });
        match decoded {
            Some((name, value)) if !name.is_empty() => headers.push((name, value)),
            _ => {
                return Err(format!(
                    "{variable}: entry {} is not name=value (a percent-encoded UTF-8 value)",
                    n + 1
                ));
            }
        }
    }
    Ok(headers)
}

/// Spans are sent uncompressed; asking for compression is refused rather
/// than ignored.
fn check_compression(env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ] {
        if let Some(v) = env(name).filter(|v| !v.trim().eq_ignore_ascii_case("none")) {
            return Err(format!(
                "{name} = {v:?}: conclave sends traces uncompressed; set it to \"none\" or leave it unset"
            ));
        }
    }
    Ok(())
}

fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Env, load_str};

    fn config(yaml: &str) -> Config {
        load_str(yaml, Path::new("t.yaml"), Env::default())
            .unwrap()
            .config
    }

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_off_unless_something_asks_for_it() {
        let c = config("model_list: []\n");
        assert!(resolve(&c, "t.yaml", &vars(&[])).unwrap().is_none());
        let on = resolve(
            &c,
            "t.yaml",
            &vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
        );
        assert!(on.unwrap().is_some());
        let c = config("model_list: []\nlitellm_settings:\n  callbacks: [otel]\n");
        assert!(resolve(&c, "t.yaml", &vars(&[])).unwrap().is_some());
        assert!(
            resolve(&c, "t.yaml", &vars(&[("OTEL_SDK_DISABLED", "true")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn litellms_otel_switch_turns_export_on_and_off() {
        let on = config("model_list: []\ngeneral_settings:\n  otel: true\n");
        assert!(resolve(&on, "t.yaml", &vars(&[])).unwrap().is_some());
        let off = config("model_list: []\ngeneral_settings:\n  otel: false\n");
        let env_on = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]);
        assert!(resolve(&off, "t.yaml", &env_on).unwrap().is_none());
        let wrong = load_str(
            "model_list: []\ngeneral_settings:\n  otel:\n    sampler_arg: lots\n",
            Path::new("t.yaml"),
            Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            wrong.contains("general_settings.otel.sampler_arg"),
            "{wrong}"
        );
    }

    #[test]
    fn grpc_keeps_the_base_endpoint_and_the_environment_wins() {
        let c = config("model_list: []\ngeneral_settings:\n  otel:\n    endpoint: http://c:4317\n");
        let grpc = vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        let s = resolve(&c, "t.yaml", &grpc).unwrap().unwrap();
        assert_eq!(s.transport, Transport::Grpc);
        assert_eq!(s.endpoint, "http://c:4317");
        let s = resolve(
            &c,
            "t.yaml",
            &vars(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://other:4317");
        let c = config("model_list: []\ngeneral_settings:\n  otel:\n    protocol: grpc\n");
        let s = resolve(&c, "t.yaml", &vars(&[])).unwrap().unwrap();
        assert_eq!(s.endpoint, DEFAULT_GRPC_ENDPOINT);
    }

    #[test]
    fn json_bodies_are_refused_with_the_source_named() {
        let c = config("model_list: []\ngeneral_settings:\n  otel:\n    protocol: http/json\n");
        let e = resolve(&c, "t.yaml", &vars(&[])).unwrap_err();
        assert!(
            e.starts_with("t.yaml: general_settings.otel.protocol = \"http/json\""),
            "{e}"
        );
        let e = resolve(
            &c,
            "t.yaml",
            &vars(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")]),
        )
        .unwrap_err();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "{e}");
        assert!(e.contains("grpc"), "{e}");
    }

    #[test]
    fn the_config_endpoint_gets_the_traces_path_and_the_sampler_is_checked() {
        let c = config(
            "model_list: []\ngeneral_settings:\n  otel:\n    endpoint: http://c:4318/\n    \
             sampler: traceidratio\n    sampler_arg: 0.25\n",
        );
        let s = resolve(&c, "t.yaml", &vars(&[])).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        assert!(matches!(s.sampler, Sampler::TraceIdRatioBased(r) if r == 0.25));
        assert!(!s.capture_content);
        let e = resolve(&c, "t.yaml", &vars(&[("OTEL_TRACES_SAMPLER_ARG", "2")])).unwrap_err();
        assert!(e.contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
    }

    #[test]
    fn over_http_the_environment_base_url_gets_the_traces_path_and_the_signal_url_is_kept() {
        let c =
            config("model_list: []\ngeneral_settings:\n  otel:\n    endpoint: http://file:4318\n");
        let s = resolve(&c, "t.yaml", &vars(&[])).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://file:4318/v1/traces");
        let base = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")]);
        let s = resolve(&c, "t.yaml", &base).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://env:4318/v1/traces");
        let own = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        let s = resolve(&c, "t.yaml", &own).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://traces:9999/custom");
        let c = config("model_list: []\nlitellm_settings:\n  callbacks: [otel]\n");
        let s = resolve(&c, "t.yaml", &vars(&[])).unwrap().unwrap();
        assert_eq!(s.endpoint, DEFAULT_HTTP_ENDPOINT);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn litellms_variables_name_the_exporter_collector_and_headers() {
        let c = config("model_list: []\nlitellm_settings:\n  callbacks: [otel]\n");
        let env = vars(&[
            ("OTEL_EXPORTER", "otlp_http"),
            ("OTEL_ENDPOINT", "http://collector:4318"),
            ("OTEL_HEADERS", "api-key=abc"),
        ]);
        let s = resolve(&c, "t.yaml", &env).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.headers, [("api-key".to_owned(), "abc".to_owned())]);
        let grpc = vars(&[
            ("OTEL_EXPORTER", "otlp_grpc"),
            ("OTEL_ENDPOINT", "http://c:4317"),
        ]);
        let s = resolve(&c, "t.yaml", &grpc).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://c:4317");
        let e = resolve(&c, "t.yaml", &vars(&[("OTEL_EXPORTER", "console")])).unwrap_err();
        assert!(e.starts_with("OTEL_EXPORTER = \"console\""), "{e}");
    }

    #[test]
    fn environment_headers_are_decoded_and_win_over_the_config() {
        let c = config(
            "model_list: []\ngeneral_settings:\n  otel:\n    headers:\n      \
             authorization: from-file\n      x-team: search\n",
        );
        let env = vars(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20abc , x-extra=1",
        )]);
        let s = resolve(&c, "t.yaml", &env).unwrap().unwrap();
        let mut headers = s.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            [
                ("Authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-extra".to_owned(), "1".to_owned()),
                ("x-team".to_owned(), "search".to_owned()),
            ]
        );
    }

    #[test]
    fn a_malformed_header_entry_is_refused_without_its_value() {
        let c = config("model_list: []\nlitellm_settings:\n  callbacks: [otel]\n");
        let env = vars(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1,secret-token")]);
        let e = resolve(&c, "t.yaml", &env).unwrap_err();
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_TRACES_HEADERS: entry 2"),
            "{e}"
        );
        assert!(!e.contains("secret-token"), "{e}");
    }

    #[test]
    fn compression_is_refused_and_the_timeout_is_read_in_milliseconds() {
        let c = config("model_list: []\nlitellm_settings:\n  callbacks: [otel]\n");
        let e = resolve(
            &c,
            "t.yaml",
            &vars(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
        )
        .unwrap_err();
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_COMPRESSION = \"gzip\""),
            "{e}"
        );
        let env = vars(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        let s = resolve(&c, "t.yaml", &env).unwrap().unwrap();
        assert_eq!(s.timeout, Duration::from_millis(2500));
    }
}
