//! A minimal HTTP/1.1 GET client (enough for `/healthz`, `/readyz` and
//! `/metrics`) and a parser for the Prometheus text format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// `GET path` with `Connection: close`: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Parses a raw HTTP/1.1 response (plain or chunked body).
pub fn parse_response_pub(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    parse_response(raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk header")?;
        let size_txt = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_txt:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

/// Samples from a Prometheus text exposition, keyed by the full series
/// (`name{labels}`), with helpers that sum over label sets.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    series: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value follows the last space outside the label braces.
            let label_end = line.rfind('}').map(|i| i + 1).unwrap_or(0);
            let Some(sp) = line[label_end..].find(' ').map(|i| i + label_end) else {
                continue;
            };
            let key = line[..sp].trim().to_string();
            let value_txt = line[sp + 1..].split_whitespace().next().unwrap_or("");
            let value = match value_txt {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => match v.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            series.insert(key, value);
        }
        Self { series }
    }

    /// The sum of every series of metric `name` (all label sets), or `None`
    /// if the metric is absent.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for (k, v) in &self.series {
            let base = k.split('{').next().unwrap_or(k);
            if base == name {
                found = true;
                total += v;
            }
        }
        found.then_some(total)
    }

    /// The sum of `name`, or 0 when it is absent (counters that never
    /// incremented may not be exported yet).
    pub fn value(&self, name: &str) -> f64 {
        self.sum(name).unwrap_or(0.0)
    }

    /// The sum of the series of `name` whose labels contain every
    /// `key="value"` pair given.
    pub fn with_labels(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                k.split('{').next() == Some(name)
                    && labels
                        .iter()
                        .all(|(lk, lv)| k.contains(&format!("{lk}=\"{lv}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series name, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.series.keys().map(String::as_str).collect()
    }

    /// The cumulative buckets of histogram `name` (`name_bucket{le=..}`),
    /// summed over other labels, sorted by bound.
    pub fn histogram(&self, name: &str) -> Histogram {
        let bucket = format!("{name}_bucket");
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (k, v) in &self.series {
            if k.split('{').next() != Some(bucket.as_str()) {
                continue;
            }
            let Some(le) = k.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            let e = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
            e.1 += v;
        }
        let mut b: Vec<(f64, f64)> = buckets.into_values().collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        Histogram {
            buckets: b,
            count: self.value(&format!("{name}_count")),
            sum: self.value(&format!("{name}_sum")),
        }
    }
}

/// A Prometheus histogram: cumulative `(upper bound, count)` buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Histogram {
    /// `self - earlier`, bucket by bucket, for the observations made
    /// between two scrapes.
    pub fn delta(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(b, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(eb, _)| eb == b)
                    .map(|(_, c)| *c)
                    .unwrap_or(0.0);
                (*b, c - before)
            })
            .collect();
        Histogram {
            buckets,
            count: self.count - earlier.count,
            sum: self.sum - earlier.sum,
        }
    }

    /// The quantile `q` (0..1) by linear interpolation inside the bucket
    /// that holds it, as Prometheus' `histogram_quantile` does. `None` when
    /// there are no observations; `+Inf` when it falls in the last bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|b| b.1).unwrap_or(0.0);
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev_bound = 0.0;
        let mut prev_count = 0.0;
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(f64::INFINITY);
                }
                let in_bucket = count - prev_count;
                if in_bucket <= 0.0 {
                    return Some(bound);
                }
                return Some(prev_bound + (bound - prev_bound) * (rank - prev_count) / in_bucket);
            }
            prev_bound = bound;
            prev_count = count;
        }
        Some(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP voxgate_rtp_packets_rx RTP packets received\n\
# TYPE voxgate_rtp_packets_rx counter\n\
voxgate_rtp_packets_rx_total 1234\n\
voxgate_sip_responses_total{status=\"200\"} 3\n\
voxgate_sip_responses_total{status=\"488\"} 1\n\
voxgate_rtp_pacing_jitter_ms_sum 12.5\n\
voxgate_rtp_pacing_jitter_ms_count 100\n\
voxgate_rtp_pacing_jitter_ms_bucket{le=\"0.5\"} 50\n\
voxgate_rtp_pacing_jitter_ms_bucket{le=\"1.0\"} 90\n\
voxgate_rtp_pacing_jitter_ms_bucket{le=\"2.0\"} 100\n\
voxgate_rtp_pacing_jitter_ms_bucket{le=\"+Inf\"} 100\n\
# EOF\n";

    #[test]
    fn parses_counters_and_labels() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("voxgate_rtp_packets_rx_total"), Some(1234.0));
        assert_eq!(m.value("voxgate_sip_responses_total"), 4.0);
        assert_eq!(
            m.with_labels("voxgate_sip_responses_total", &[("status", "488")]),
            1.0
        );
        assert_eq!(m.sum("voxgate_nope"), None);
    }

    #[test]
    fn histogram_quantiles() {
        let h = Metrics::parse(TEXT).histogram("voxgate_rtp_pacing_jitter_ms");
        assert_eq!(h.count, 100.0);
        assert_eq!(h.quantile(0.5), Some(0.5));
        let p99 = h.quantile(0.99).expect("p99");
        assert!((p99 - 1.9).abs() < 1e-9, "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
        let d = h.delta(&h);
        assert_eq!(d.quantile(0.5), None);
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").expect("plain");
        assert_eq!((s, b.as_str()), (200, "ok"));
        let (s, b) =
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .expect("chunked");
        assert_eq!((s, b.as_str()), (503, "abcde"));
    }
}
