//! What a softphone call is asked to do, and what it reports.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::call::PlaybackSource;
use crate::codec::Codec;
use crate::dtmf::DtmfSource;

/// One outbound call. [`CallOptions::new`] fills the defaults; set fields
/// directly for the rest.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The Request-URI, for example `sip:1000@127.0.0.1:5060`.
    pub target: String,
    /// The From URI; `sip:voxgate@<local address>` when `None`.
    pub from: Option<String>,
    /// What to send as audio once answered; silence when `None`.
    pub play: Option<PlaybackSource>,
    /// Digits to send (`0-9*#A-D`), in order.
    pub dtmf: String,
    pub dtmf_mode: DtmfSource,
    /// Wait after the answer before the first digit.
    pub dtmf_delay: Duration,
    /// How long each digit sounds.
    pub dtmf_duration: Duration,
    /// Pause between digits.
    pub dtmf_gap: Duration,
    /// Write what the far end sends to this WAV file (8 kHz mono).
    pub record: Option<PathBuf>,
    /// Keep what the far end sent in [`CallSummary::received_audio`], for
    /// callers that run the softphone in-process.
    pub keep_audio: bool,
    /// Hang up this long after the answer (unless the far end does first).
    pub hangup_after: Duration,
    /// Digest credentials for a 401/407 challenge.
    pub credentials: Option<Credentials>,
    pub codec: Codec,
    /// How long to wait for a final answer to the INVITE.
    pub timeout: Duration,
    /// The local address to bind SIP and RTP on; chosen from the target
    /// when `None` (127.0.0.1 for a loopback target).
    pub local_ip: Option<IpAddr>,
}

/// Username and password for digest authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl CallOptions {
    /// A call to `target` with no audio, no digits, PCMU, a 10 s answer
    /// timeout and a hangup 20 s after the answer.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            from: None,
            play: None,
            dtmf: String::new(),
            dtmf_mode: DtmfSource::Rfc4733,
            dtmf_delay: Duration::from_secs(2),
            dtmf_duration: Duration::from_millis(160),
            dtmf_gap: Duration::from_millis(120),
            record: None,
            keep_audio: false,
            hangup_after: Duration::from_secs(20),
            credentials: None,
            codec: Codec::Pcmu,
            timeout: Duration::from_secs(10),
            local_ip: None,
        }
    }
}

/// How the call ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disposition {
    /// A 2xx arrived.
    Answered,
    /// A final non-2xx arrived.
    Rejected { code: u16, reason: String },
    /// No final answer within [`CallOptions::timeout`]. The INVITE was
    /// cancelled.
    Timeout,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupBy {
    /// We sent BYE (after `hangup_after`).
    Local,
    /// The far end sent BYE.
    Remote,
    /// RTP stopped or the dialog timed out.
    Timeout,
}

/// RTP counters of the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RtpSummary {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_lost: u64,
    /// Interarrival jitter (RFC 3550), in ms.
    pub jitter_ms: f64,
    /// Received 20 ms frames whose audio was not silence.
    pub non_silent_frames_received: u64,
}

/// A digit the far end sent us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReceivedDigit {
    pub digit: char,
    pub source: DtmfSource,
    pub duration_ms: u64,
}

/// What happened on the call; printed as JSON by `voxgate call --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub target: String,
    pub call_id: String,
    /// Status codes of every response to our INVITEs, in order (a 401
    /// challenge and the answer to the retried INVITE included).
    pub responses: Vec<u16>,
    pub disposition: Disposition,
    /// The negotiated codec, when answered.
    pub codec: Option<&'static str>,
    /// From sending the INVITE to its final response, in ms.
    pub setup_ms: u64,
    /// From the answer to the end of the call, in ms (0 when unanswered).
    pub duration_ms: u64,
    pub hangup_by: Option<HangupBy>,
    pub rtp: RtpSummary,
    /// The digits we sent, in order.
    pub dtmf_sent: String,
    pub dtmf_mode: DtmfSource,
    pub dtmf_received: Vec<ReceivedDigit>,
    /// Where the recording went, if one was asked for.
    pub recorded: Option<PathBuf>,
    /// What the far end sent, 8 kHz mono, when [`CallOptions::keep_audio`].
    #[serde(skip)]
    pub received_audio: Option<Vec<i16>>,
}

impl CallSummary {
    pub fn answered(&self) -> bool {
        self.disposition == Disposition::Answered
    }

    /// The received digits as text, for example `"12#"`.
    pub fn received_digits(&self) -> String {
        self.dtmf_received.iter().map(|d| d.digit).collect()
    }
}

/// Parses `2s`, `500ms`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    let t = text.trim();
    let bad = || DurationParseError(text.to_owned());
    let (num, scale_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (t, 1000.0)
    };
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 || value * scale_ms > 86_400_000.0 {
        return Err(bad());
    }
    Ok(Duration::from_micros(
        (value * scale_ms * 1000.0).round() as u64
    ))
}

/// A duration that [`parse_duration`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration like 2s, 500ms or 1m")]
pub struct DurationParseError(pub String);

/// Checks a digit string: `0-9`, `*`, `#`, `A-D` (case-insensitive).
pub fn validate_digits(digits: &str) -> Result<String, InvalidDigit> {
    digits
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
                Ok(c)
            } else {
                Err(InvalidDigit(c))
            }
        })
        .collect()
}

/// A character that is not a DTMF digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
pub struct InvalidDigit(pub char);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        for bad in ["", "s", "-1s", "abc", "1h", "nan", "99999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digits() {
        assert_eq!(validate_digits("12#*ab").unwrap(), "12#*AB");
        assert_eq!(validate_digits("1x"), Err(InvalidDigit('X')));
        assert_eq!(validate_digits("").unwrap(), "");
    }

    #[test]
    fn summary_json_shape() {
        let s = CallSummary {
            target: "sip:1@127.0.0.1".into(),
            call_id: "c".into(),
            responses: vec![100, 180, 200],
            disposition: Disposition::Rejected {
                code: 486,
                reason: "Busy Here".into(),
            },
            codec: None,
            setup_ms: 5,
            duration_ms: 0,
            hangup_by: None,
            rtp: RtpSummary::default(),
            dtmf_sent: "1#".into(),
            dtmf_mode: DtmfSource::Info,
            dtmf_received: vec![ReceivedDigit {
                digit: '5',
                source: DtmfSource::Rfc4733,
                duration_ms: 100,
            }],
            recorded: None,
            received_audio: Some(vec![1, 2]),
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["disposition"]["kind"], "rejected");
        assert_eq!(v["disposition"]["code"], 486);
        assert_eq!(v["responses"], serde_json::json!([100, 180, 200]));
        assert_eq!(v["dtmf_mode"], "info");
        assert_eq!(v["dtmf_received"][0]["digit"], "5");
        assert!(v.get("received_audio").is_none());
        assert_eq!(s.received_digits(), "5");
        assert!(!s.answered());
    }
}
