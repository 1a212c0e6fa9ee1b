//! DTMF from all three sources, reported as one event type.

use std::time::Duration;

/// How a digit reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfSource {
    /// RFC 4733 telephone-event RTP packets.
    Rfc4733,
    /// SIP INFO with `application/dtmf-relay` or `application/dtmf`.
    Info,
    /// In-band tones found by the Goertzel detector.
    Inband,
}

/// One digit pressed by the caller: `0-9`, `*`, `#`, `A-D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    pub digit: char,
    pub duration: Duration,
    pub source: DtmfSource,
}
