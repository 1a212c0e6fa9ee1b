//! End-to-end test helpers for voxgate: they start the real `voxgate serve`
//! binary on `127.0.0.1:0` and talk to it through real SIP peers.
//!
//! # Layout
//! - [`ai`]: the provider simulator in-process, a gateway using it, a
//!   tenant flow on a number, caller speech, the call record's timeline.
//! - [`gateway`]: [`Gateway`] starts `voxgate serve` with a temp data dir,
//!   parses the bound SIP and HTTP addresses from its log, kills it on drop.
//! - [`http`]: a tiny HTTP/1.1 GET client and a Prometheus text parser.
//! - [`sipp`]: [`Sipp`] runs one sipp scenario from `tests/sipp/` against a
//!   gateway, always with `-i 127.0.0.1`.
//! - [`bench`]: what the load benchmarks share: /proc CPU and memory,
//!   sipp placing `bench_call.xml` calls, idle waits, the JSON report.
//! - [`baresip`]: [`Baresip`] runs a headless baresip (aufile source,
//!   ctrl_tcp control) against a gateway.
//! - [`torture`]: rewrites the RFC 4475 messages so every address in them is
//!   `127.0.0.1`, keeping Content-Length consistent.
//! - [`rawsip`]: hand-made SIP requests over UDP (OPTIONS probes, INVITEs
//!   during drain).
//! - [`rtp_peer`]: a bank of RTP endpoints that echo the gateway's symmetric
//!   RTP back and count loss, for the benchmark.
//!
//! Every helper sends traffic to 127.0.0.1 only.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

pub mod ai;
pub mod baresip;
pub mod bench;
pub mod gateway;
pub mod http;
pub mod rawsip;
pub mod rtp_peer;
pub mod sipp;
pub mod torture;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use baresip::Baresip;
pub use gateway::{Gateway, GatewayOptions};
pub use http::Metrics;
pub use sipp::{Sipp, SippRun};

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The `voxgate` binary under test: `$VOXGATE_BIN`, else
/// `target/release/voxgate` in the repository (what `make test` builds).
pub fn voxgate_bin() -> PathBuf {
    match std::env::var_os("VOXGATE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("target/release/voxgate"),
    }
}

/// The RFC 4475 torture messages: `$VOXGATE_RFC4475_DIR`, else
/// `../shared/testdata/rfc4475` beside the repository.
pub fn rfc4475_dir() -> PathBuf {
    match std::env::var_os("VOXGATE_RFC4475_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("../shared/testdata/rfc4475"),
    }
}

/// The sipp scenario directory, `tests/sipp`.
pub fn sipp_dir() -> PathBuf {
    repo_root().join("tests/sipp")
}

/// Where sip-tester keeps its RTP pcaps (`g711a.pcap`, `dtmf_2833_*.pcap`):
/// `$SIPP_PCAP_DIR`, else the first Debian location that has them.
pub fn pcap_dir() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SIPP_PCAP_DIR") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        "/usr/share/sip-tester",
        "/usr/share/doc/sip-tester/examples/pcap",
        "/usr/share/sipp/pcap",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("g711a.pcap").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "sip-tester pcaps not found (run `make deps`); looked in {candidates:?}"
            )
        })
}

/// A free UDP port on 127.0.0.1, as the kernel hands out ephemeral ports.
/// Racy by nature, but the kernel picks ports at random so parallel tests
/// rarely collide.
pub fn free_udp_port() -> anyhow::Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// A free even UDP port `p` on 127.0.0.1 with `p + 2` free too, for sipp's
/// media sockets (`-mp` binds `p` and `p + 2`).
pub fn free_media_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let p = free_udp_port()?;
        if p % 2 != 0 || p > 65000 {
            continue;
        }
        let a = UdpSocket::bind(("127.0.0.1", p));
        let b = UdpSocket::bind(("127.0.0.1", p + 2));
        if a.is_ok() && b.is_ok() {
            return Ok(p);
        }
    }
    anyhow::bail!("no free media port pair found")
}

/// A directory under the system temp dir, removed on drop unless
/// `VOXGATE_KEEP_TMP` is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = crate::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VOXGATE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The monotonic clock, read here only (the workspace's clippy config
/// disallows `Instant::now` elsewhere): the test drivers' one clock.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock time, for unique temp names.
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = crate::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if crate::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails with a clear message when an external tool the tests need is not
/// installed. `make deps` installs all of them.
pub fn require_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("`{name}` is not installed; run `make deps`"))
}

/// Writes a mono 16-bit PCM WAV file at `rate` Hz.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> anyhow::Result<()> {
    let data_len = u32::try_from(samples.len() * 2)?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Reads the samples of a 16-bit PCM WAV file (any channel count, first
/// channel only) and its sample rate.
pub fn read_wav(path: &Path) -> anyhow::Result<(u32, Vec<i16>)> {
    let bytes = std::fs::read(path)?;
    anyhow::ensure!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file"
    );
    let mut pos = 12;
    let mut rate = 0u32;
    let mut channels = 1usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        // A writer killed before closing leaves 0 (or -1) as the data size.
        let len = if id == b"data" && (len == 0 || len == u32::MAX as usize) {
            bytes.len() - body_start
        } else {
            len
        };
        let body_end = (body_start + len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        if id == b"fmt " && body.len() >= 16 {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]])).max(1);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, samples));
        }
        pos = body_start + len + (len & 1);
    }
    anyhow::bail!("WAV file has no data chunk")
}

/// Root-mean-square level of `samples`, 0..=32768.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip() {
        let dir = TempDir::new("vg-wav").expect("tempdir");
        let p = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..800).map(|i| ((i % 40) as i16 - 20) * 100).collect();
        write_wav(&p, 8000, &samples).expect("write");
        let (rate, back) = read_wav(&p).expect("read");
        assert_eq!(rate, 8000);
        assert_eq!(back, samples);
        assert!(rms(&back) > 500.0);
        assert_eq!(rms(&[0, 0, 0]), 0.0);
    }

    #[test]
    fn media_port_pair_is_even_and_free() {
        let p = free_media_port().expect("port");
        assert_eq!(p % 2, 0);
        UdpSocket::bind(("127.0.0.1", p + 2)).expect("p+2 free");
    }
}
