//! Rewrites RFC 4475 torture messages for a live gateway on loopback.
//!
//! Every IPv4 literal and every host name under `.com`, `.net`, `.org`,
//! `.edu`, `.invalid` or `.test` becomes `127.0.0.1`, so nothing a gateway
//! answers (or calls back) can leave the machine. Via sent-by values are
//! pointed at the test's own socket so answers come back to it. The body is
//! rewritten too and Content-Length follows it, keeping deliberate
//! mismatches (a length longer than the body stays longer by as much).

/// A torture message made safe to send to `127.0.0.1`.
pub fn rewrite(msg: &[u8], reply_port: u16) -> Vec<u8> {
    let (head, body) = match find(msg, b"\r\n\r\n") {
        Some(i) => (&msg[..i], &msg[i + 4..]),
        None => (msg, &msg[msg.len()..]),
    };
    let new_body = rewrite_hosts(body);
    let mut lines: Vec<Vec<u8>> = split_crlf(head).into_iter().map(rewrite_hosts).collect();
    for line in lines.iter_mut().skip(1) {
        if header_name_is(line, &["via", "v"]) {
            *line = point_at_port(line, reply_port);
        }
    }
    // Content-Length: only a single, numeric, uncompacted-or-compact value is
    // adjusted; malformed ones (negative, repeated) are left as the test wants.
    let cl_lines: Vec<usize> = (1..lines.len())
        .filter(|&i| header_name_is(&lines[i], &["content-length", "l"]))
        .collect();
    if cl_lines.len() == 1 {
        let i = cl_lines[0];
        if let Some(orig) = header_value(&lines[i]).and_then(|v| v.trim().parse::<usize>().ok()) {
            let new_len = if orig <= body.len() {
                rewrite_hosts(&body[..orig]).len()
            } else {
                new_body.len() + (orig - body.len())
            };
            if new_len != orig {
                let colon = lines[i].iter().position(|&b| b == b':').unwrap_or(0);
                let mut l = lines[i][..=colon].to_vec();
                l.extend_from_slice(format!(" {new_len}").as_bytes());
                lines[i] = l;
            }
        }
    }
    let mut out = lines.join(&b"\r\n"[..]);
    if find(msg, b"\r\n\r\n").is_some() {
        out.extend_from_slice(b"\r\n\r\n");
    }
    out.extend_from_slice(&new_body);
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn split_crlf(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            out.push(&b[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&b[start..]);
    out
}

fn header_name_is(line: &[u8], names: &[&str]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = String::from_utf8_lossy(&line[..colon])
        .trim()
        .to_ascii_lowercase();
    !line.first().is_some_and(|b| *b == b' ' || *b == b'\t') && names.contains(&name.as_str())
}

fn header_value(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some(String::from_utf8_lossy(&line[colon + 1..]).into_owned())
}

const TLDS: [&str; 6] = ["com", "net", "org", "edu", "invalid", "test"];

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Replaces IPv4 literals and example-style host names with `127.0.0.1`.
pub fn rewrite_hosts(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if is_host_char(b[i]) && (i == 0 || !is_host_char(b[i - 1])) {
            let mut j = i;
            while j < b.len() && is_host_char(b[j]) {
                j += 1;
            }
            // Do not swallow a trailing dot (end of a sentence).
            let mut end = j;
            while end > i && b[end - 1] == b'.' {
                end -= 1;
            }
            let token = &b[i..end];
            if is_ipv4(token) || is_named_host(token) {
                out.extend_from_slice(b"127.0.0.1");
                out.extend_from_slice(&b[end..j]);
            } else {
                out.extend_from_slice(&b[i..j]);
            }
            i = j;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn is_ipv4(t: &[u8]) -> bool {
    let s = String::from_utf8_lossy(t);
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
}

fn is_named_host(t: &[u8]) -> bool {
    let s = String::from_utf8_lossy(t).to_ascii_lowercase();
    match s.rsplit_once('.') {
        Some((left, tld)) => {
            !left.is_empty() && TLDS.contains(&tld) && left.bytes().any(|c| c.is_ascii_alphabetic())
        }
        None => false,
    }
}

/// In a Via line, gives every `127.0.0.1` sent-by our port.
fn point_at_port(line: &[u8], port: u16) -> Vec<u8> {
    let needle = b"127.0.0.1";
    let mut out = Vec::with_capacity(line.len() + 8);
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(needle) {
            out.extend_from_slice(needle);
            i += needle.len();
            if i < line.len()
                && line[i] == b':'
                && line.get(i + 1).is_some_and(|c| c.is_ascii_digit())
            {
                i += 1;
                while i < line.len() && line[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.extend_from_slice(format!(":{port}").as_bytes());
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out
}

/// The status code of a SIP response datagram, if it is one.
pub fn response_status(datagram: &[u8]) -> Option<u16> {
    let first = datagram.split(|&b| b == b'\n').next()?;
    let s = String::from_utf8_lossy(first);
    let mut it = s.split_whitespace();
    if !it.next()?.starts_with("SIP/2.0") {
        return None;
    }
    it.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_every_host() {
        let m = b"INVITE sip:user@host5.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nTo: <sip:a@example.com>\r\nContent-Length: 24\r\n\r\nc=IN IP4 192.0.2.15\r\nm=x";
        let r = rewrite(m, 40000);
        let s = String::from_utf8_lossy(&r);
        assert!(!s.contains("192.0.2"), "{s}");
        assert!(!s.contains("example"), "{s}");
        assert!(
            s.contains("Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1"),
            "{s}"
        );
        assert!(s.starts_with("INVITE sip:user@127.0.0.1 SIP/2.0"), "{s}");
        // 24 bytes of body: rewritten body is "c=IN IP4 127.0.0.1\r\nm=x" = 23.
        assert!(s.contains("Content-Length: 23\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\nc=IN IP4 127.0.0.1\r\nm=x"), "{s}");
    }

    #[test]
    fn keeps_deliberate_length_errors() {
        let m = b"INVITE sip:u@example.com SIP/2.0\r\nl: 9999\r\n\r\nx=example.com";
        let s = String::from_utf8_lossy(&rewrite(m, 1)).into_owned();
        // body 13 -> 11 bytes, excess 9986 kept
        assert!(s.contains("l: 9997"), "{s}");
        let m = b"INVITE sip:u@example.com SIP/2.0\r\nContent-Length: -999\r\n\r\n";
        assert!(String::from_utf8_lossy(&rewrite(m, 1)).contains("Content-Length: -999"));
    }

    #[test]
    fn leaves_other_tokens() {
        let s = rewrite_hosts(b"Content-Type: application/sdp; x=1.2 SIP/2.0 a.b end.");
        assert_eq!(s, b"Content-Type: application/sdp; x=1.2 SIP/2.0 a.b end.");
        assert_eq!(
            response_status(b"SIP/2.0 405 Method Not Allowed\r\n"),
            Some(405)
        );
        assert_eq!(response_status(b"OPTIONS sip:x SIP/2.0\r\n"), None);
    }

    #[test]
    fn every_rfc4475_message_is_loopback_only() {
        let dir = crate::rfc4475_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("RFC 4475 test data not found at {}", dir.display());
        };
        let mut n = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("dat") {
                continue;
            }
            n += 1;
            let out = rewrite(&std::fs::read(&p).expect("read"), 5555);
            let s = String::from_utf8_lossy(&out).to_ascii_lowercase();
            for bad in [
                "192.0.2.",
                "example.",
                "10.0.0.1",
                "255.255.255.255",
                "135.180.",
                "192.168.",
            ] {
                assert!(!s.contains(bad), "{} still contains {bad}", p.display());
            }
        }
        assert_eq!(n, 49, "expected the 49 RFC 4475 messages");
    }
}
