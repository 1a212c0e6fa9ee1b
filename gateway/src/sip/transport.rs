//! The seam between our sockets and rsipstack: every datagram and every
//! TCP message goes through the [`guard`](super::guard) before rsipstack's
//! parser sees it.
//!
//! - UDP: [`GuardedUdp`] implements rsipstack's `platform::net::UdpSocket`
//!   over a tokio socket. rsipstack's own UDP loop calls its `recv_from`,
//!   which only returns messages the guard let through; the guard's own
//!   answers (400, 505...) are sent from here.
//! - TCP: [`serve_tcp`] accepts connections itself, frames the stream with
//!   [`guard::frame`], and hands parsed messages to the endpoint with
//!   `EndpointInner::on_received_message`, answering on an rsipstack
//!   `TcpConnection` so transactions reply on the same connection.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::SipMessage;
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::guard::{self, GuardConfig, Verdict};
use crate::metrics::{self, DropLabel, DropReason, StatusLabel};

fn count_drop(reason: DropReason) {
    metrics::global()
        .sip_dropped_total
        .get_or_create(&DropLabel { reason })
        .inc();
}

fn count_response(status: u16) {
    metrics::global()
        .sip_responses_total
        .get_or_create(&StatusLabel { status })
        .inc();
}

/// A UDP socket whose receive side runs the guard.
pub struct GuardedUdp {
    socket: Arc<UdpSocket>,
    guard: GuardConfig,
}

impl GuardedUdp {
    pub fn new(socket: Arc<UdpSocket>, guard: GuardConfig) -> Self {
        Self { socket, guard }
    }
}

type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

// rsipstack declares this trait with `async_trait`; this is the same
// signature written out, so we need no macro crate for one impl.
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    fn recv_from<'s, 'b, 'f>(
        &'s self,
        buf: &'b mut [u8],
    ) -> BoxFut<'f, rsipstack::Result<(usize, SocketAddr)>>
    where
        's: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(self.recv_guarded(buf))
    }

    fn send_to<'s, 'b, 'f>(
        &'s self,
        buf: &'b [u8],
        addr: SocketAddr,
    ) -> BoxFut<'f, rsipstack::Result<usize>>
    where
        's: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move { Ok(self.socket.send_to(buf, addr).await?) })
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

impl GuardedUdp {
    async fn recv_guarded(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        // One byte more than the limit, to tell "at the limit" from "over".
        let mut raw = vec![0u8; self.guard.max_message_size.max(1) + 1];
        loop {
            let (len, src) = self.socket.recv_from(&mut raw).await?;
            match guard::inspect(&raw[..len], &self.guard) {
                Verdict::Pass(bytes) if bytes.len() <= buf.len() => {
                    // rsipstack's parser is lenient and may still fail on
                    // text the guard accepts; fail closed with a count.
                    if SipMessage::try_from(&bytes[..]).is_err() {
                        count_drop(DropReason::Unparseable);
                        continue;
                    }
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    return Ok((bytes.len(), src));
                }
                Verdict::Pass(_) => count_drop(DropReason::TooLarge),
                Verdict::Keepalive => {
                    let n = len.min(buf.len());
                    buf[..n].copy_from_slice(&raw[..n]);
                    return Ok((n, src));
                }
                Verdict::Reject(r) => {
                    tracing::debug!(%src, status = r.status, reason = %r.reason, "guard refused a request");
                    count_response(r.status);
                    if let Err(e) = self.socket.send_to(&r.response, src).await {
                        tracing::debug!(%src, error = %e, "sending the guard's answer failed");
                    }
                }
                Verdict::Drop(reason) => {
                    tracing::debug!(%src, ?reason, "guard dropped a message");
                    count_drop(reason);
                }
            }
        }
    }
}

/// Accepts TCP connections until `cancel` and feeds guarded messages to
/// the endpoint.
pub async fn serve_tcp(
    listener: TcpListener,
    local: SocketAddr,
    endpoint: Arc<EndpointInner>,
    guard: GuardConfig,
    cancel: CancellationToken,
) {
    let local_addr = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Tcp),
        addr: local.into(),
    };
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                continue;
            }
        };
        let conn = match TcpConnection::from_stream(
            stream,
            local_addr.clone(),
            Some(cancel.child_token()),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "TCP connection setup failed");
                continue;
            }
        };
        tokio::spawn(serve_connection(
            conn,
            peer,
            endpoint.clone(),
            guard.clone(),
            cancel.clone(),
        ));
    }
}

async fn serve_connection(
    conn: TcpConnection,
    peer: SocketAddr,
    endpoint: Arc<EndpointInner>,
    guard: GuardConfig,
    cancel: CancellationToken,
) {
    // We read the stream ourselves; rsipstack keeps the write half so its
    // transactions answer on this connection.
    let Some(mut read) = conn.inner.read_half.lock().await.take() else {
        return;
    };
    let from = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Tcp),
        addr: peer.into(),
    };
    let max = guard.max_message_size;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => break,
            r = read.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match guard::frame(&buf, max) {
                guard::Frame::Incomplete => break,
                guard::Frame::Invalid => {
                    count_drop(if buf.len() > max {
                        DropReason::TooLarge
                    } else {
                        DropReason::Unparseable
                    });
                    let _ = conn.inner.close().await;
                    return;
                }
                guard::Frame::Complete(len) => {
                    let message: Vec<u8> = buf.drain(..len).collect();
                    handle_stream_message(&message, &conn, peer, &from, &endpoint, &guard).await;
                }
            }
        }
    }
    let _ = conn.inner.close().await;
}

async fn handle_stream_message(
    message: &[u8],
    conn: &TcpConnection,
    peer: SocketAddr,
    from: &SipAddr,
    endpoint: &Arc<EndpointInner>,
    guard: &GuardConfig,
) {
    match guard::inspect(message, guard) {
        Verdict::Keepalive => {
            let _ = conn.inner.send_raw(b"\r\n").await;
        }
        Verdict::Reject(r) => {
            count_response(r.status);
            let _ = conn.inner.send_raw(&r.response).await;
        }
        Verdict::Drop(reason) => count_drop(reason),
        Verdict::Pass(bytes) => {
            let msg = match SipMessage::try_from(&bytes[..]) {
                Ok(m) => m,
                Err(_) => return count_drop(DropReason::Unparseable),
            };
            let msg =
                match SipConnection::update_msg_received(msg, peer, rsipstack::sip::Transport::Tcp)
                {
                    Ok(m) => m,
                    Err(_) => return count_drop(DropReason::Unparseable),
                };
            if let Err(e) = endpoint
                .on_received_message(msg, SipConnection::Tcp(conn.clone()), from)
                .await
            {
                tracing::debug!(%peer, error = %e, "endpoint refused a TCP message");
            }
        }
    }
}
