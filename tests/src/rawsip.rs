//! Hand-made SIP requests over a UDP socket on 127.0.0.1, for checks that
//! need no scenario (OPTIONS probes, INVITEs during drain).
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A UDP socket on 127.0.0.1 that sends requests to `target` and collects
/// the responses.
pub struct RawSip {
    sock: UdpSocket,
    target: SocketAddr,
    n: u64,
}

/// A response as received: status code and the whole text.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub text: String,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive, compact forms not
    /// expanded).
    pub fn header(&self, name: &str) -> Option<String> {
        self.text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
    }
}

impl RawSip {
    pub fn new(target: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(target.ip().is_loopback(), "{target} is not loopback");
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        Ok(Self { sock, target, n: 0 })
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Sends raw bytes to the gateway.
    pub fn send_raw(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.sock.send_to(bytes, self.target)?;
        Ok(())
    }

    /// Builds and sends an out-of-dialog request; returns its Call-ID.
    pub fn send_request(&mut self, method: &str, sdp: Option<&str>) -> anyhow::Result<String> {
        self.n += 1;
        let port = self.local_port();
        let call_id = format!("raw-{}-{}-{port}@127.0.0.1", std::process::id(), self.n);
        let body = sdp.unwrap_or("");
        let ctype = if sdp.is_some() {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        let msg = format!(
            "{method} sip:1000@{t} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-raw-{n}-{pid};rport\r\n\
             From: <sip:raw@127.0.0.1:{port}>;tag=raw{n}\r\n\
             To: <sip:1000@{t}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:raw@127.0.0.1:{port}>\r\n\
             Max-Forwards: 70\r\n\
             {ctype}Content-Length: {len}\r\n\r\n{body}",
            t = self.target,
            n = self.n,
            pid = std::process::id(),
            len = body.len(),
        );
        self.send_raw(msg.as_bytes())?;
        Ok(call_id)
    }

    /// Responses that arrive within `timeout` (stops early once a final
    /// response for `call_id` arrived, when given).
    pub fn responses(&self, timeout: Duration, call_id: Option<&str>) -> Vec<RawResponse> {
        let deadline = crate::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(crate::now());
            if left.is_zero() {
                return out;
            }
            let _ = self
                .sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Some(status) = crate::torture::response_status(text.as_bytes()) {
                        let r = RawResponse { status, text };
                        let done = status >= 200 && call_id.is_some_and(|c| r.text.contains(c));
                        out.push(r);
                        if done {
                            return out;
                        }
                    }
                }
                Err(_) => return out,
            }
        }
    }

    /// Sends OPTIONS and waits up to `timeout` for its final response.
    pub fn options(&mut self, timeout: Duration) -> anyhow::Result<Option<RawResponse>> {
        let id = self.send_request("OPTIONS", None)?;
        Ok(self
            .responses(timeout, Some(&id))
            .into_iter()
            .rev()
            .find(|r| r.status >= 200 && r.text.contains(&id)))
    }
}

/// A minimal PCMU + telephone-event offer with media at `127.0.0.1:port`.
pub fn pcmu_offer(port: u16) -> String {
    format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n"
    )
}
