//! Prometheus metrics. Every label set is bounded: method, status, trunk,
//! tenant or a fixed reason, never a call id.

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrunkLabel {
    pub trunk: String,
}

/// How a call ended, for `voxgate_calls_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CallOutcome {
    Completed,
    Rejected,
    Cancelled,
    Failed,
    Transferred,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: CallOutcome,
}

/// Why a datagram or message was dropped without an answer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DropReason {
    Unparseable,
    TooLarge,
    NotAllowed,
    RtpMalformed,
    RtpUnknownSource,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: DropReason,
}

/// Every metric voxgate's gateway exports.
pub struct Metrics {
    pub calls_active: Gauge,
    pub calls_total: Family<OutcomeLabel, Counter>,
    pub sip_requests_total: Family<MethodLabel, Counter>,
    pub sip_responses_total: Family<StatusLabel, Counter>,
    pub sip_dropped_total: Family<DropLabel, Counter>,
    pub sip_rate_limited_total: Family<TrunkLabel, Counter>,
    pub rtp_packets_rx_total: Counter,
    pub rtp_packets_tx_total: Counter,
    pub rtp_packets_lost_total: Counter,
    pub rtp_dropped_total: Family<DropLabel, Counter>,
    /// Interarrival jitter reported by RTCP and measured on receive, in ms.
    pub rtp_jitter_ms: Histogram,
    /// Lateness of outbound packets against their schedule, in ms.
    pub rtp_pacing_jitter_ms: Histogram,
    pub dtmf_digits_total: Counter,
    /// Behind a lock only so other crates (the orchestrator) can add their
    /// metrics; the hot path never touches it.
    registry: Mutex<Registry>,
}

impl Metrics {
    fn new() -> Self {
        let ms_buckets = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0];
        let m = Self {
            calls_active: Gauge::default(),
            calls_total: Family::default(),
            sip_requests_total: Family::default(),
            sip_responses_total: Family::default(),
            sip_dropped_total: Family::default(),
            sip_rate_limited_total: Family::default(),
            rtp_packets_rx_total: Counter::default(),
            rtp_packets_tx_total: Counter::default(),
            rtp_packets_lost_total: Counter::default(),
            rtp_dropped_total: Family::default(),
            rtp_jitter_ms: Histogram::new(ms_buckets),
            rtp_pacing_jitter_ms: Histogram::new(ms_buckets),
            dtmf_digits_total: Counter::default(),
            registry: Mutex::new(Registry::with_prefix("voxgate")),
        };
        let mut r = Registry::with_prefix("voxgate");
        r.register("calls_active", "Calls in progress", m.calls_active.clone());
        r.register("calls", "Calls by outcome", m.calls_total.clone());
        r.register(
            "sip_requests",
            "SIP requests received by method",
            m.sip_requests_total.clone(),
        );
        r.register(
            "sip_responses",
            "SIP responses sent by status",
            m.sip_responses_total.clone(),
        );
        r.register(
            "sip_dropped",
            "SIP messages dropped unanswered",
            m.sip_dropped_total.clone(),
        );
        r.register(
            "sip_rate_limited",
            "INVITEs refused by the rate limit",
            m.sip_rate_limited_total.clone(),
        );
        r.register(
            "rtp_packets_rx",
            "RTP packets received",
            m.rtp_packets_rx_total.clone(),
        );
        r.register(
            "rtp_packets_tx",
            "RTP packets sent",
            m.rtp_packets_tx_total.clone(),
        );
        r.register(
            "rtp_packets_lost",
            "RTP packets lost (sequence gaps)",
            m.rtp_packets_lost_total.clone(),
        );
        r.register(
            "rtp_dropped",
            "RTP datagrams dropped",
            m.rtp_dropped_total.clone(),
        );
        r.register(
            "rtp_jitter_ms",
            "RTP interarrival jitter in ms",
            m.rtp_jitter_ms.clone(),
        );
        r.register(
            "rtp_pacing_jitter_ms",
            "Outbound RTP lateness against schedule in ms",
            m.rtp_pacing_jitter_ms.clone(),
        );
        r.register(
            "dtmf_digits",
            "DTMF digits detected",
            m.dtmf_digits_total.clone(),
        );
        Self {
            registry: Mutex::new(r),
            ..m
        }
    }

    /// Lets another part of voxgate register its metrics here, so that
    /// `GET /metrics` serves them too.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
    }

    /// The text exposition of every metric, for `GET /metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}
