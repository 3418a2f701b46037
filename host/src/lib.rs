//! conclave: an OpenAI-compatible LLM gateway configured with LiteLLM-style
//! YAML. The binary's commands live in `main.rs`; everything else is here so
//! that tests and benchmarks can use the same pieces.

pub mod admin;
pub mod byte_budget;
pub mod cache;
pub mod catalog;
pub mod cluster;
pub mod compile_cache;
pub mod config;
pub mod dashboard;
pub mod digest;
pub mod fsutil;
pub mod gateway;
pub mod health;
pub mod http;
pub mod json_text;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod millis;
pub mod observe;
pub mod openai;
pub mod ops;
pub mod pricing;
pub mod providers;
pub mod public_url;
pub mod reload;
pub mod router;
pub mod server;
pub mod strategy;
pub mod translate;
pub mod upstream_tls;
