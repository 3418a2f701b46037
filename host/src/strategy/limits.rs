//! Sandbox limits of a strategy run, from `composite_llm.limits` (defaults for
//! every profile) and a profile's own `limits`.

use std::time::Duration;

use serde::Deserialize;

/// How often the engine's epoch advances while a strategy runs (see
/// `epoch.rs`); guest CPU time is counted in these ticks, and a running
/// guest yields its worker at each one, so it is also the longest a
/// request waits behind a computing strategy on a busy worker.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How much a single strategy run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap of the guest.
    pub memory_bytes: usize,
    /// Guest CPU time (measured in epoch ticks while guest code runs).
    pub cpu_time: Duration,
    /// Wall-clock deadline of the whole run, model calls included.
    pub deadline: Duration,
    /// Model calls per request (each item of a fan-out counts).
    pub max_calls: u32,
    /// Largest `complete-all` list.
    pub max_fanout: u32,
    /// Bytes of stage names and texts a run may trace in all.
    pub max_trace_bytes: usize,
    /// Trace events a run may emit.
    pub max_trace_events: u32,
    /// Bytes of one request a strategy hands the host (model, messages and
    /// `params-json`); a larger request is refused with `limit-exceeded`.
    pub max_call_bytes: usize,
    /// Bytes of requests a strategy may hand the host in one run; past it
    /// the run ends.
    pub max_run_bytes: usize,
    /// Bytes of the answer a strategy returns (content, reasoning and
    /// `tool-calls-json` together).
    pub max_answer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            cpu_time: Duration::from_secs(2),
            deadline: Duration::from_secs(300),
            max_calls: 64,
            max_fanout: 16,
            max_trace_bytes: 4 << 20,
            max_trace_events: 10_000,
            max_call_bytes: 8 << 20,
            max_run_bytes: 64 << 20,
            max_answer_bytes: 8 << 20,
        }
    }
}

/// The YAML form; every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub memory_mb: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub timeout_s: Option<f64>,
    pub max_calls: Option<u32>,
    pub max_fanout: Option<u32>,
    pub max_trace_bytes: Option<u64>,
    pub max_trace_events: Option<u32>,
    pub max_call_bytes: Option<u64>,
    pub max_run_bytes: Option<u64>,
    pub max_answer_bytes: Option<u64>,
}

/// The largest memory cap a profile may ask for (the pool's slot size).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

impl Limits {
    /// These limits with the run's deadline shortened to a request's own
    /// `timeout` (never lengthened: the profile bounds how long a client
    /// may hold the gateway).
    pub fn within(self, timeout: Option<Duration>) -> Self {
        Self {
            deadline: timeout.map_or(self.deadline, |t| t.min(self.deadline)),
            ..self
        }
    }

    /// These limits with `config`'s values applied on top.
    pub fn apply(self, config: &LimitsConfig) -> Result<Self, String> {
        let mut out = self;
        if let Some(mb) = config.memory_mb {
            let bytes = usize::try_from(mb << 20).unwrap_or(usize::MAX);
            if bytes == 0 || bytes > MAX_MEMORY_BYTES {
                return Err(format!(
                    "memory_mb must be between 1 and {}",
                    MAX_MEMORY_BYTES >> 20
                ));
            }
            out.memory_bytes = bytes;
        }
        if let Some(ms) = config.cpu_ms {
            out.cpu_time = Duration::from_millis(ms.max(1));
        }
        if let Some(s) = config.timeout_s {
            if let Some(why) = crate::config::invalid_seconds(s, true) {
                return Err(format!("timeout_s {why}"));
            }
            out.deadline = crate::config::seconds(s);
        }
        if let Some(n) = config.max_calls {
            out.max_calls = n;
        }
        if let Some(n) = config.max_fanout {
            out.max_fanout = n.max(1);
        }
        out.apply_host_limits(config)?;
        Ok(out)
    }

    /// The limits on what the host keeps or accepts for a run.
    fn apply_host_limits(&mut self, config: &LimitsConfig) -> Result<(), String> {
        let bytes = |key: &str, value: Option<u64>, into: &mut usize| match value {
            None => Ok(()),
            Some(0) => Err(format!("{key} must be at least 1")),
            Some(n) => {
                *into = usize::try_from(n).unwrap_or(usize::MAX);
                Ok(())
            }
        };
        bytes(
            "max_trace_bytes",
            config.max_trace_bytes,
            &mut self.max_trace_bytes,
        )?;
        bytes(
            "max_call_bytes",
            config.max_call_bytes,
            &mut self.max_call_bytes,
        )?;
        bytes(
            "max_run_bytes",
            config.max_run_bytes,
            &mut self.max_run_bytes,
        )?;
        bytes(
            "max_answer_bytes",
            config.max_answer_bytes,
            &mut self.max_answer_bytes,
        )?;
        if let Some(n) = config.max_trace_events {
            self.max_trace_events = n;
        }
        Ok(())
    }

    /// Parses and applies an optional YAML `limits` block.
    pub fn apply_yaml(self, value: Option<&serde_yaml::Value>) -> Result<Self, String> {
        match value {
            None | Some(serde_yaml::Value::Null) => Ok(self),
            Some(v) => {
                let config: LimitsConfig =
                    serde_yaml::from_value(v.clone()).map_err(|e| e.to_string())?;
                self.apply(&config)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_values_override_defaults() {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str("{memory_mb: 32, max_calls: 3}").unwrap();
        let l = Limits::default().apply_yaml(Some(&yaml)).unwrap();
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(l.max_calls, 3);
        assert_eq!(l.max_fanout, Limits::default().max_fanout);
    }

    #[test]
    fn host_side_limits_have_defaults_and_can_be_set() {
        let d = Limits::default();
        assert_eq!(d.max_trace_bytes, 4 << 20);
        assert_eq!(d.max_trace_events, 10_000);
        assert_eq!(d.max_call_bytes, 8 << 20);
        assert_eq!(d.max_run_bytes, 64 << 20);
        assert_eq!(d.max_answer_bytes, 8 << 20);
        let yaml: serde_yaml::Value = serde_yaml::from_str(
            "{max_trace_bytes: 1000, max_trace_events: 5, max_call_bytes: 2000, \
             max_run_bytes: 3000, max_answer_bytes: 4000}",
        )
        .unwrap();
        let l = d.apply_yaml(Some(&yaml)).unwrap();
        assert_eq!(
            (
                l.max_trace_bytes,
                l.max_trace_events,
                l.max_call_bytes,
                l.max_run_bytes,
                l.max_answer_bytes
            ),
            (1000, 5, 2000, 3000, 4000)
        );
        let zero: serde_yaml::Value = serde_yaml::from_str("{max_call_bytes: 0}").unwrap();
        assert!(d.apply_yaml(Some(&zero)).is_err());
    }

    #[test]
    fn unknown_limit_keys_are_rejected() {
        let yaml: serde_yaml::Value = serde_yaml::from_str("{memory: 32}").unwrap();
        assert!(Limits::default().apply_yaml(Some(&yaml)).is_err());
    }
}
