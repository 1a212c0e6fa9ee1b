//! The SIP server: binds UDP and TCP on one port under rsipstack's
//! endpoint, dispatches each new server transaction, and runs one call task
//! per INVITE (see `session`).
//!
//! Out-of-dialog requests are answered here: OPTIONS (200 with Allow and
//! Accept), requests for unknown dialogs (481), methods we do not serve
//! (405), and the INVITE checks in order: trunk source allow-list (drop),
//! drain (503), rate limit (503), Max-Forwards (483), digest (401/403).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::sip::prelude::*;
use rsipstack::sip::{Method, Request};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::guard::GuardConfig;
use super::msg;
use super::session::{self, CallInput};
use super::transport::{serve_tcp, GuardedUdp};
use super::trunk::{AuthDecision, RateDecision, TrunkConfig, TrunkTable};
use super::uas::UasConfig;
use crate::audio::SayConfig;
use crate::call::CallRouter;
use crate::media::MediaConfig;
use crate::metrics::{self, DropLabel, DropReason, MethodLabel, StatusLabel, TrunkLabel};

/// Whether and how long we ring before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingingConfig {
    /// Send 180 Ringing.
    pub enabled: bool,
    /// Time between the INVITE and the 200 OK.
    pub delay: Duration,
}

impl Default for RingingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            delay: Duration::ZERO,
        }
    }
}

/// Everything the SIP server needs; the binary maps the TOML onto it.
#[derive(Debug, Clone)]
pub struct SipServerConfig {
    /// UDP and TCP are both bound here (port 0 picks one for both).
    pub listen: SocketAddr,
    /// The address we advertise in Contact, Via and SDP, if not `listen`'s.
    pub public_ip: Option<IpAddr>,
    /// Request-URI hosts that are ours besides our addresses, for the
    /// Max-Forwards check.
    pub local_domains: Vec<String>,
    pub user_agent: String,
    /// Trunks matched by source address; empty means one open trunk.
    pub trunks: Vec<TrunkConfig>,
    pub ringing: RingingConfig,
    pub max_message_size: usize,
    /// How long calls may continue once draining starts.
    pub drain_timeout: Duration,
    /// `Retry-After` seconds in 503s (drain, overload).
    pub retry_after_secs: u32,
    pub media: MediaConfig,
    pub say: SayConfig,
}

impl SipServerConfig {
    pub fn new(listen: SocketAddr, media: MediaConfig) -> Self {
        Self {
            listen,
            public_ip: None,
            local_domains: Vec::new(),
            user_agent: format!("voxgate/{}", env!("CARGO_PKG_VERSION")),
            trunks: Vec::new(),
            ringing: RingingConfig::default(),
            max_message_size: 8192,
            drain_timeout: Duration::from_secs(30),
            retry_after_secs: 30,
            media,
            say: SayConfig::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("binding {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP stack: {0}")]
    Stack(#[from] rsipstack::Error),
}

/// State shared by the dispatcher and the call tasks.
pub(crate) struct Shared {
    pub cfg: SipServerConfig,
    pub endpoint: Arc<EndpointInner>,
    pub router: Arc<dyn CallRouter>,
    pub trunks: TrunkTable,
    /// Live calls by (Call-ID, our tag).
    pub calls: Mutex<HashMap<(String, String), mpsc::UnboundedSender<CallInput>>>,
    pub draining: AtomicBool,
    pub active: AtomicUsize,
    /// `host:port` for our Contact and Via.
    pub contact_host: String,
    pub local: SocketAddr,
    nonce_secret: u64,
}

impl Shared {
    pub fn count_response(status: u16) {
        metrics::global()
            .sip_responses_total
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    fn make_nonce(&self) -> String {
        let stamp = crate::clock::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.sign_nonce(stamp)
    }

    fn sign_nonce(&self, stamp: u64) -> String {
        let mac = md5::compute(format!("{}:{stamp}", self.nonce_secret));
        format!("{stamp:x}.{mac:x}")
    }

    /// A nonce we issued within the last five minutes.
    fn nonce_ok(&self, nonce: &str) -> bool {
        let Some((stamp, _)) = nonce.split_once('.') else {
            return false;
        };
        let Ok(stamp) = u64::from_str_radix(stamp, 16) else {
            return false;
        };
        let now = crate::clock::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        now.saturating_sub(stamp) < 300 && self.sign_nonce(stamp) == nonce
    }

    /// Whether a Request-URI host is one of ours.
    fn is_ours(&self, req: &Request) -> bool {
        let host = req.uri.host_with_port.host.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self
            .cfg
            .local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
            || host.eq_ignore_ascii_case("localhost")
        {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                ip == self.local.ip()
                    || Some(ip) == self.cfg.public_ip
                    || (self.local.ip().is_unspecified() && !ip.is_multicast())
            }
            Err(_) => false,
        }
    }
}

/// A running SIP server.
pub struct Server {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    endpoint: rsipstack::transaction::Endpoint,
}

/// How often a port-0 listen address is tried when the UDP port the
/// kernel picked is taken for TCP.
const PORT_ZERO_ATTEMPTS: usize = 16;

/// Binds UDP and TCP on one port. With port 0 the kernel picks a free UDP
/// port, which may be taken for TCP: then another one is picked.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), SipError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| SipError::Bind {
                transport: "UDP",
                addr: listen,
                source,
            })?;
        let local = udp.local_addr().map_err(|source| SipError::Bind {
            transport: "UDP",
            addr: listen,
            source,
        })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < PORT_ZERO_ATTEMPTS =>
            {
                continue
            }
            Err(source) => {
                return Err(SipError::Bind {
                    transport: "TCP",
                    addr: local,
                    source,
                })
            }
        }
    }
}

impl Server {
    /// Binds UDP and TCP on `cfg.listen` and starts serving.
    pub async fn start(
        cfg: SipServerConfig,
        router: Arc<dyn CallRouter>,
    ) -> Result<Server, SipError> {
        let (udp, tcp, local) = bind_pair(cfg.listen).await?;

        let advertised_ip = cfg.public_ip.unwrap_or_else(|| {
            if local.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                local.ip()
            }
        });
        let advertised = SocketAddr::new(advertised_ip, local.port());
        let guard = GuardConfig {
            max_message_size: cfg.max_message_size.min(65535),
            ..GuardConfig::default()
        };

        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        let guarded: Arc<dyn rsipstack::platform::net::UdpSocket> =
            Arc::new(GuardedUdp::new(Arc::new(udp), guard.clone()));
        let udp_conn =
            UdpConnection::from_socket(guarded, Some(advertised), Some(cancel.child_token()))
                .await?;
        transport_layer.add_transport(udp_conn.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent(&cfg.user_agent)
            .with_transport_layer(transport_layer)
            .with_cancel_token(cancel.child_token())
            .build();
        let mut incoming = endpoint.incoming_transactions()?;
        let inner = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                tracing::error!(error = %e, "SIP endpoint stopped");
            }
        });
        tokio::spawn(serve_tcp(
            tcp,
            local,
            endpoint.inner.clone(),
            guard,
            cancel.child_token(),
        ));

        let shared = Arc::new(Shared {
            trunks: TrunkTable::new(cfg.trunks.clone()),
            endpoint: endpoint.inner.clone(),
            router,
            calls: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            contact_host: advertised.to_string(),
            local,
            nonce_secret: rand::random(),
            cfg,
        });
        let dispatch = shared.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let tx = tokio::select! {
                    _ = stop.cancelled() => return,
                    tx = incoming.recv() => match tx { Some(tx) => tx, None => return },
                };
                dispatch_transaction(&dispatch, tx).await;
            }
        });
        tracing::info!(%local, "SIP server listening on UDP and TCP");
        Ok(Server {
            shared,
            cancel,
            endpoint,
        })
    }

    /// The bound address (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Calls in progress (ringing or answered).
    pub fn active_calls(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Stops taking calls: new INVITEs get 503 with Retry-After. Calls in
    /// progress continue up to the drain timeout, then get BYE.
    pub fn begin_drain(&self) {
        if self.shared.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(active = self.active_calls(), "SIP server draining");
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(shared.cfg.drain_timeout) => {}
                _ = cancel.cancelled() => {}
            }
            end_all_calls(&shared);
        });
    }

    /// Drains, waits for the calls to end (at most the drain timeout plus
    /// a few seconds for the BYEs), then stops the stack.
    pub async fn shutdown(self) {
        self.begin_drain();
        let give_up =
            tokio::time::Instant::now() + self.shared.cfg.drain_timeout + Duration::from_secs(3);
        while self.active_calls() > 0 && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        end_all_calls(&self.shared);
        // Let the last BYEs leave before the sockets close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.cancel.cancel();
        self.endpoint.shutdown();
    }
}

fn end_all_calls(shared: &Shared) {
    if let Ok(calls) = shared.calls.lock() {
        for call in calls.values() {
            let _ = call.send(CallInput::Drain);
        }
    }
}

/// The source of a transaction's request, after Via received/rport.
fn source_of(tx: &Transaction) -> Option<SocketAddr> {
    if let Some(addr) = tx
        .connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
    {
        return Some(addr);
    }
    let via = tx.original.via_header().ok()?;
    let (_, hp) = rsipstack::transport::SipConnection::parse_target_from_via(via).ok()?;
    hp.try_into().ok()
}

async fn reply(shared: &Shared, tx: &mut Transaction, status: u16, extra: &[(String, String)]) {
    let tag = msg::random_token();
    let resp = msg::response(
        &shared.endpoint,
        &tx.original,
        status,
        Some(&tag),
        extra,
        None,
    );
    Shared::count_response(status);
    if let Err(e) = tx.respond(resp).await {
        tracing::debug!(status, error = %e, "sending a response failed");
    }
}

async fn dispatch_transaction(shared: &Arc<Shared>, mut tx: Transaction) {
    let method = tx.original.method;
    metrics::global()
        .sip_requests_total
        .get_or_create(&MethodLabel {
            method: method.to_string(),
        })
        .inc();
    if let Some(tag) = msg::to_tag(&tx.original) {
        let key = (msg::call_id(&tx.original), tag);
        let call = shared.calls.lock().ok().and_then(|c| c.get(&key).cloned());
        match call {
            Some(call) => {
                if let Err(mpsc::error::SendError(CallInput::Request(mut tx))) =
                    call.send(CallInput::Request(Box::new(tx)))
                {
                    reply(shared, &mut tx, 481, &[]).await;
                }
            }
            None if method == Method::Ack => {}
            None => reply(shared, &mut tx, 481, &[]).await,
        }
        return;
    }
    match method {
        Method::Invite => new_invite(shared, tx).await,
        Method::Options => {
            let extra = [
                ("Allow".to_string(), super::ALLOW.to_string()),
                ("Accept".to_string(), "application/sdp".to_string()),
                ("Supported".to_string(), String::new()),
            ];
            let extra: Vec<_> = extra.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            reply(shared, &mut tx, 200, &extra).await;
        }
        Method::Ack => {}
        Method::Bye
        | Method::Info
        | Method::Notify
        | Method::Refer
        | Method::PRack
        | Method::Update
        | Method::Cancel => {
            reply(shared, &mut tx, 481, &[]).await;
        }
        Method::Register | Method::Subscribe | Method::Publish | Method::Message => {
            reply(
                shared,
                &mut tx,
                405,
                &[("Allow".to_string(), super::ALLOW.to_string())],
            )
            .await;
        }
    }
}

async fn new_invite(shared: &Arc<Shared>, mut tx: Transaction) {
    let Some(source) = source_of(&tx) else {
        return reply(shared, &mut tx, 400, &[]).await;
    };
    let Some(trunk) = shared.trunks.match_source(source.ip()) else {
        tracing::debug!(%source, "INVITE from a source no trunk allows");
        metrics::global()
            .sip_dropped_total
            .get_or_create(&DropLabel {
                reason: DropReason::NotAllowed,
            })
            .inc();
        return;
    };
    let retry_after = [(
        "Retry-After".to_string(),
        shared.cfg.retry_after_secs.to_string(),
    )];
    if shared.draining.load(Ordering::SeqCst) {
        return reply(shared, &mut tx, 503, &retry_after).await;
    }
    if let RateDecision::Limited { retry_after } = trunk.check_rate(source.ip()) {
        metrics::global()
            .sip_rate_limited_total
            .get_or_create(&TrunkLabel {
                trunk: trunk.cfg.name.clone(),
            })
            .inc();
        let secs = retry_after.as_secs().max(1).to_string();
        return reply(shared, &mut tx, 503, &[("Retry-After".to_string(), secs)]).await;
    }
    let max_forwards = tx
        .original
        .max_forwards_header()
        .ok()
        .and_then(|m| m.value().trim().parse::<u32>().ok());
    if max_forwards == Some(0) && !shared.is_ours(&tx.original) {
        return reply(shared, &mut tx, 483, &[]).await;
    }
    match trunk.check_auth(&tx.original, &shared.make_nonce(), |n| shared.nonce_ok(n)) {
        AuthDecision::Allowed => {}
        AuthDecision::Challenge(c) => {
            return reply(shared, &mut tx, 401, &[("WWW-Authenticate".to_string(), c)]).await
        }
        AuthDecision::Forbidden => return reply(shared, &mut tx, 403, &[]).await,
    }
    let uas = UasConfig {
        send_ringing: shared.cfg.ringing.enabled,
        answer_delay: shared.cfg.ringing.delay,
        ..UasConfig::default()
    };
    let our_tag = msg::random_token();
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let key = (msg::call_id(&tx.original), our_tag.clone());
    if let Ok(mut calls) = shared.calls.lock() {
        calls.insert(key.clone(), input_tx.clone());
    }
    shared.active.fetch_add(1, Ordering::SeqCst);
    metrics::global().calls_active.inc();
    let shared = shared.clone();
    let trunk_cfg = trunk.cfg.clone();
    tokio::spawn(async move {
        session::run(
            shared.clone(),
            tx,
            trunk_cfg,
            source,
            uas,
            our_tag,
            input_tx,
            input_rx,
        )
        .await;
        if let Ok(mut calls) = shared.calls.lock() {
            calls.remove(&key);
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
        metrics::global().calls_active.dec();
    });
}
