//! Eval sets: recorded or synthesized caller audio replayed through the
//! real SIP/RTP path, with accuracy, escalation, containment and latency
//! reports and a regression gate. See `docs/eval-sets.md`.
//!
//! # Layout
//! - [`manifest`]: the set's `manifest.yaml` (calls, turns, expectations,
//!   thresholds), strict parsing, validation and the JSON Schema.
//! - [`render`]: `voxgate eval build`: espeak-ng speech, sox noise at an
//!   SNR, into `SET/.build/`, reproducibly.
//! - [`caller`]: one call's caller side on the call clock (audio, keys,
//!   barge-in offsets) and the reply onsets in what came back. Pure.
//! - [`outcome`]: the gateway's call record read as decisions, fallbacks,
//!   stage latencies and an eval disposition. Pure.
//! - [`metrics`]: expectations, metrics, thresholds and the baseline
//!   regression check. Pure.
//! - [`runner`]: the replay driver: real SIP calls with the gateway's
//!   softphone, paced RTP, DTMF on schedule, call records from the API.
//! - [`report`]: `report.json`, JUnit XML, the A/B side-by-side text.
//! - [`html`]: the self-contained `report.html` (inline SVG, audio as
//!   data URIs).

pub mod caller;
pub mod html;
pub mod manifest;
pub mod metrics;
pub mod outcome;
pub mod render;
pub mod report;
pub mod runner;
