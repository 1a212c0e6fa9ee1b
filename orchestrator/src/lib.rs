//! The AI node's orchestrator: caller audio → VAD → STT → intents →
//! policy → TTS → caller, with barge-in, latency budgets and fallbacks.
//!
//! # Layout
//! - [`pipeline`]: the sans-IO frame pipeline: frames and turn ids, VAD
//!   and endpointing (earshot), turn-taking with barge-in, the outbound
//!   gate that drops frames of older turns.
//! - [`policy`]: escalation rules per node over tenant defaults, each
//!   decision a typed, printable record.
//! - [`budget`]: latency budgets as deadlines (soft → filler, hard →
//!   fallback), provider errors and stalls, and the per-(tenant, provider)
//!   circuit breaker.
//! - [`tenant`]: the per-tenant NOC policy document, the live policy
//!   book, and admission of new AI sessions (rate and concurrency).
//! - [`outcome`]: a finished node's answer to the flow driver (outcome
//!   edge and `ai.*` variables).
//! - [`noc`]: the shared AI runtime state (policies, admission, breakers,
//!   outcome counts), the policy hook and health snapshot behind the
//!   `/v1` NOC endpoints, and the breaker-state gauge.
//! - [`runner`]: the AI node runner (`voxgate_flows::driver::AiRunner`):
//!   the sans-IO conversation core and its thin async driver over a call
//!   and the stt-tts engines.
//! - [`metrics`]: per-turn latency histograms and fallback/escalation
//!   counters, registered into the gateway's Prometheus registry.
//!
//! Everything but `runner`'s driver and `noc` (which reads the clock for
//! health and scrapes) is sans-IO: time comes in as `now`,
//! outputs come out of `poll_*`, timers are data in deadline tables.

// Tests may start a virtual clock from the real one.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod budget;
pub mod metrics;
pub mod noc;
pub mod outcome;
pub mod pipeline;
pub mod policy;
pub mod runner;
pub mod tenant;
