//! The pre-parse guard: every SIP message from the network passes here
//! before rsipstack's parser sees it.
//!
//! rsipstack's parser is lenient by design (a bad Content-Length becomes 0,
//! an unknown method is an error with no answer, a second CSeq silently
//! wins). A trunk endpoint must be strict instead: RFC 4475 expects invalid
//! requests to be answered with 400 and broken responses to be dropped. The
//! guard does that on the raw bytes, so it also protects rsipstack from
//! messages it would mishandle.
//!
//! [`inspect`] is pure: bytes in, a [`Verdict`] out. The transport adapter
//! (`sip::transport`) sends the ready-made answer of a [`Rejection`] and
//! counts drops in `voxgate_sip_dropped_total`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::metrics::DropReason;

/// Limits and policy of the guard.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Largest message accepted, in bytes; larger ones are dropped.
    pub max_message_size: usize,
    /// Option tags we support in `Require` (RFC 3261 §8.2.2.3); any other
    /// tag gets 420 Bad Extension.
    pub supported_extensions: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_message_size: 8192,
            supported_extensions: Vec::new(),
        }
    }
}

/// A request the guard answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// The reason phrase, saying what was wrong.
    pub reason: String,
    /// The complete response, ready to send back to the source.
    pub response: Vec<u8>,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand these bytes to the parser: the message alone, without trailing
    /// octets after its body.
    Pass(Vec<u8>),
    /// A CRLF keepalive (RFC 5626); the transport answers it.
    Keepalive,
    /// Answer with this response; do not parse.
    Reject(Rejection),
    /// Drop silently, counting it under this reason.
    Drop(DropReason),
}

/// Result of framing a byte stream (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// The first `usize` bytes are one message (or a keepalive).
    Complete(usize),
    /// The stream cannot be framed (no valid Content-Length, or too large):
    /// close the connection.
    Invalid,
}

/// Finds the end of the first message in a stream buffer. A message on a
/// stream must carry Content-Length (RFC 3261 §18.3).
pub fn frame(buf: &[u8], max: usize) -> Frame {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if skip >= 2 && skip == buf.len() {
        return Frame::Complete(skip);
    }
    if skip > 0 && skip == buf.len() {
        return Frame::Incomplete;
    }
    let rest = &buf[skip..];
    let Some(end) = find(rest, b"\r\n\r\n") else {
        return if buf.len() > max {
            Frame::Invalid
        } else {
            Frame::Incomplete
        };
    };
    let head = String::from_utf8_lossy(&rest[..end]);
    let mut cl = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                match value.trim().parse::<usize>() {
                    Ok(n) if cl.is_none() => cl = Some(n),
                    _ => return Frame::Invalid,
                }
            }
        }
    }
    let Some(cl) = cl else { return Frame::Invalid };
    let total = skip + end + 4 + cl;
    if total > max {
        return Frame::Invalid;
    }
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The methods rsipstack can represent. Any other valid token is answered
/// 501 here, because rsipstack's parser fails on it and would drop it.
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Headers that may appear once only (RFC 3261 §7.3.1, §20).
const SINGLE: &[&str] = &[
    "call-id",
    "cseq",
    "from",
    "to",
    "max-forwards",
    "content-length",
    "content-type",
    "expires",
];

/// The headers a response copies from its request (RFC 3261 §8.2.6.2).
const ECHOED: &[&str] = &["via", "from", "to", "call-id", "cseq"];

fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        _ => return lower,
    };
    full.to_string()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// One message split into start line and unfolded headers.
struct Lite {
    start: String,
    /// (canonical lower-case name, name as written, unfolded value)
    headers: Vec<(String, String, String)>,
    body_start: usize,
}

impl Lite {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.0 == name)
            .map(|h| h.2.as_str())
    }
    fn first<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }
}

enum Problem {
    /// Answer a request with this status and reason, plus extra headers.
    Answer(u16, String, Vec<(String, String)>),
    /// Drop it.
    Drop(DropReason),
}

fn bad(reason: impl Into<String>) -> Problem {
    Problem::Answer(400, reason.into(), Vec::new())
}

/// Inspects one message. `stream` is true on TCP, where the bytes were
/// already framed by [`frame`].
pub fn inspect(bytes: &[u8], cfg: &GuardConfig) -> Verdict {
    if bytes.len() > cfg.max_message_size {
        return Verdict::Drop(DropReason::TooLarge);
    }
    if !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Verdict::Keepalive;
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let skip = bytes
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let bytes = &bytes[skip..];
    // A datagram whose header section runs to its end without the empty
    // line (RFC 4475 baddn) is still read, so it can be answered.
    let padded;
    let bytes = match find(bytes, b"\r\n\r\n") {
        Some(_) => bytes,
        None if bytes.ends_with(b"\r\n") => {
            padded = [bytes, b"\r\n"].concat();
            &padded[..]
        }
        None => return Verdict::Drop(DropReason::Unparseable),
    };
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        return Verdict::Drop(DropReason::Unparseable);
    };
    let head = &bytes[..head_end];
    let is_request = !head.starts_with(b"SIP/");
    let Ok(head_text) = std::str::from_utf8(head) else {
        // Header text must be UTF-8; answer from a lossy copy if we can.
        let lossy = String::from_utf8_lossy(head).into_owned();
        return match split(&lossy, head_end + 4) {
            Ok(lite) if is_request && !is_ack(&lite) => {
                reject(&lite, 400, "Header Not UTF-8".into(), Vec::new())
            }
            _ => Verdict::Drop(DropReason::Unparseable),
        };
    };
    let lite = match split(head_text, head_end + 4) {
        Ok(lite) => lite,
        Err(_) => return Verdict::Drop(DropReason::Unparseable),
    };
    let checked = if is_request {
        check_request(&lite, cfg)
    } else {
        check_response(&lite)
    };
    let result = checked.and_then(|()| body_length(&lite, bytes.len()));
    match result {
        Ok(len) => Verdict::Pass(rebuild(
            &lite,
            &bytes[lite.body_start..lite.body_start + len],
        )),
        Err(Problem::Drop(reason)) => Verdict::Drop(reason),
        Err(Problem::Answer(status, reason, extra)) => {
            if is_request && !is_ack(&lite) {
                reject(&lite, status, reason, extra)
            } else {
                Verdict::Drop(DropReason::Unparseable)
            }
        }
    }
}

fn is_ack(lite: &Lite) -> bool {
    lite.start.starts_with("ACK ")
}

/// Splits the header section into lines, unfolding continuation lines.
fn split(head: &str, body_start: usize) -> Result<Lite, ()> {
    let mut lines = head.split("\r\n");
    let start = lines.next().ok_or(())?.to_string();
    let mut headers: Vec<(String, String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().ok_or(())?;
            if !last.2.is_empty() {
                last.2.push(' ');
            }
            last.2.push_str(line.trim());
            continue;
        }
        // A line without a colon is recorded with an empty name, so the
        // request can still be answered with 400.
        match line.split_once(':') {
            Some((name, value)) => {
                let name = name.trim_end_matches([' ', '\t']);
                headers.push((canonical(name), name.to_string(), value.trim().to_string()));
            }
            None => headers.push((String::new(), line.to_string(), String::new())),
        }
    }
    Ok(Lite {
        start,
        headers,
        body_start,
    })
}

fn check_response(lite: &Lite) -> Result<(), Problem> {
    let drop = Problem::Drop(DropReason::Unparseable);
    let mut parts = lite.start.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if version != "SIP/2.0" || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(drop);
    }
    let code: u16 = code
        .parse()
        .map_err(|_| Problem::Drop(DropReason::Unparseable))?;
    if !(100..=699).contains(&code) {
        return Err(drop);
    }
    check_headers(lite, None).map_err(|_| Problem::Drop(DropReason::Unparseable))?;
    // RFC 3261 §8.1.3.3: a response reaching a UAC carries one Via only.
    if lite.all("via").flat_map(split_top).count() != 1 {
        return Err(drop);
    }
    Ok(())
}

fn check_request(lite: &Lite, cfg: &GuardConfig) -> Result<(), Problem> {
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two
    // single spaces, nothing around them (RFC 4475 §3.1.2.7-3.1.2.10).
    let parts: Vec<&str> = lite.start.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad("Malformed Request-Line"));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if !is_token(method) {
        return Err(bad("Invalid Method"));
    }
    if uri.starts_with('<') || uri.contains(['<', '>', '\t', '"']) {
        return Err(bad("Malformed Request-URI"));
    }
    let Some((scheme, _)) = uri.split_once(':') else {
        return Err(bad("Malformed Request-URI"));
    };
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(bad("Malformed Request-URI"));
    }
    if !version.starts_with("SIP/") {
        return Err(bad("Malformed SIP-Version"));
    }
    if version != "SIP/2.0" {
        return Err(Problem::Answer(
            505,
            "Version Not Supported".into(),
            Vec::new(),
        ));
    }
    let scheme_l = scheme.to_ascii_lowercase();
    // '?' may appear in the user part; headers come after the host.
    let host_part = uri.rsplit_once('@').map(|(_, h)| h).unwrap_or(uri);
    if (scheme_l == "sip" || scheme_l == "sips") && host_part.contains('?') {
        return Err(bad("Headers Not Allowed In Request-URI"));
    }
    check_headers(lite, Some(method))?;
    for name in ["via", "from", "to", "call-id", "cseq"] {
        if lite.first(name).is_none() {
            return Err(bad(format!("Missing {} Header", display_name(name))));
        }
    }
    // rsipstack keys transactions on the From tag and drops a request
    // without one unanswered (RFC 2543 style, RFC 4475 §3.4.1).
    if lite.first("from").is_some_and(|f| !has_tag(f)) {
        return Err(bad("Missing From Tag"));
    }
    // Application-layer checks (RFC 4475 §3.3) that rsipstack leaves to us.
    if !matches!(scheme_l.as_str(), "sip" | "sips" | "tel") {
        return Err(Problem::Answer(
            416,
            "Unsupported URI Scheme".into(),
            Vec::new(),
        ));
    }
    if !KNOWN_METHODS.contains(&method) {
        return Err(Problem::Answer(
            501,
            "Not Implemented".into(),
            vec![("Allow".into(), super::ALLOW.into())],
        ));
    }
    if method != "ACK" && method != "CANCEL" {
        let unsupported: Vec<String> = lite
            .all("require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .filter(|t| {
                !cfg.supported_extensions
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(t))
            })
            .collect();
        if !unsupported.is_empty() {
            return Err(Problem::Answer(
                420,
                "Bad Extension".into(),
                vec![("Unsupported".into(), unsupported.join(", "))],
            ));
        }
    }
    if method == "INVITE" {
        if let Some(ct) = lite.first("content-type") {
            let media = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if media != "application/sdp" && media != "multipart/mixed" {
                return Err(Problem::Answer(
                    415,
                    "Unsupported Media Type".into(),
                    vec![("Accept".into(), "application/sdp".into())],
                ));
            }
        }
        let accepts: Vec<String> = lite
            .all("accept")
            .flat_map(|v| v.split(','))
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|t| !t.is_empty())
            .collect();
        if !accepts.is_empty()
            && !accepts
                .iter()
                .any(|a| a == "application/sdp" || a == "application/*" || a == "*/*")
        {
            return Err(Problem::Answer(
                406,
                "Not Acceptable".into(),
                vec![("Accept".into(), "application/sdp".into())],
            ));
        }
    }
    Ok(())
}

fn display_name(canonical: &str) -> &'static str {
    match canonical {
        "via" => "Via",
        "from" => "From",
        "to" => "To",
        "call-id" => "Call-ID",
        "cseq" => "CSeq",
        "content-length" => "Content-Length",
        "content-type" => "Content-Type",
        "max-forwards" => "Max-Forwards",
        "expires" => "Expires",
        _ => "Header",
    }
}

/// Syntax checks shared by requests and responses. `method` is the
/// request's method, for the CSeq match.
fn check_headers(lite: &Lite, method: Option<&str>) -> Result<(), Problem> {
    for (name, written, _) in &lite.headers {
        if name.is_empty() || !is_token(written) {
            return Err(bad("Malformed Header Line"));
        }
    }
    for name in SINGLE {
        if lite.all(name).count() > 1 {
            return Err(bad(format!("Duplicate {} Header", display_name(name))));
        }
    }
    if let Some(cl) = lite.first("content-length") {
        if cl.is_empty() || !cl.bytes().all(|b| b.is_ascii_digit()) || cl.len() > 9 {
            return Err(bad("Invalid Content-Length"));
        }
    }
    if let Some(cseq) = lite.first("cseq") {
        let mut it = cseq.split_whitespace();
        let (Some(num), Some(m), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad("Malformed CSeq"));
        };
        // RFC 3261 §8.1.1.5: the sequence number is below 2**31.
        match num.parse::<u32>() {
            Ok(n) if n < 1 << 31 && num.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(bad("CSeq Number Out Of Range")),
        }
        if let Some(method) = method {
            if m != method {
                return Err(bad("CSeq Method Does Not Match Request-Line"));
            }
        }
    }
    if let Some(mf) = lite.first("max-forwards") {
        match mf.parse::<u8>() {
            Ok(_) if mf.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(bad("Invalid Max-Forwards")),
        }
    }
    if let Some(exp) = lite.first("expires") {
        match exp.parse::<u32>() {
            Ok(_) if exp.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(bad("Invalid Expires")),
        }
    }
    if let Some(ra) = lite.first("retry-after") {
        let secs = ra.split([';', '(', ' ']).next().unwrap_or_default();
        if secs.parse::<u32>().is_err() {
            return Err(bad("Invalid Retry-After"));
        }
    }
    if let Some(date) = lite.first("date") {
        // RFC 3261 §25.1: SIP-date is RFC 1123 and always in GMT.
        if !date.ends_with(" GMT") {
            return Err(bad("Invalid Date"));
        }
    }
    for via in lite.all("via") {
        for one in split_top(via) {
            check_via(one)?;
        }
    }
    for name in ["from", "to"] {
        if let Some(v) = lite.first(name) {
            check_name_addr(v)
                .map_err(|why| bad(format!("Malformed {} Header: {why}", display_name(name))))?;
        }
    }
    for contact in lite.all("contact") {
        if contact == "*" {
            continue;
        }
        for one in split_top(contact) {
            check_name_addr(one).map_err(|why| bad(format!("Malformed Contact Header: {why}")))?;
        }
    }
    Ok(())
}

/// Splits a header value at commas that are outside quotes and `<>`.
fn split_top(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escape, mut from) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' if quoted => escape = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[from..].trim());
    out
}

/// Checks `;`-separated parameters: no empty ones, names are tokens.
fn check_params(params: &str) -> Result<(), &'static str> {
    if params.trim().is_empty() {
        return Ok(());
    }
    let Some(rest) = params.trim().strip_prefix(';') else {
        return Err("text after the address");
    };
    for p in split_params(rest) {
        let name = p.split('=').next().unwrap_or_default().trim();
        if !is_token(name) {
            return Err("empty or invalid parameter");
        }
    }
    Ok(())
}

/// Splits parameters at `;` outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut from) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out
}

fn check_via(via: &str) -> Result<(), Problem> {
    let err = || bad("Malformed Via Header");
    if via.is_empty() {
        return Err(err());
    }
    // sent-protocol: SIP / 2.0 / transport, with optional LWS around '/'.
    let mut rest = via;
    for _ in 0..2 {
        let (tok, r) = rest.split_once('/').ok_or_else(err)?;
        if !is_token(tok.trim()) {
            return Err(err());
        }
        rest = r.trim_start();
    }
    let end = rest.find([' ', '\t']).ok_or_else(err)?;
    if !is_token(&rest[..end]) {
        return Err(err());
    }
    let rest = rest[end..].trim_start();
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let sent_by = sent_by.trim();
    if sent_by.is_empty() || sent_by.contains([' ', '\t', ',']) {
        return Err(err());
    }
    check_params(params).map_err(|_| err())
}

/// Checks a From/To/Contact value: name-addr or addr-spec, then params.
fn check_name_addr(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        return Err("empty");
    }
    let bytes = v.as_bytes();
    // Display name: a quoted string, or tokens separated by LWS.
    if bytes[0] == b'"' {
        let mut i = 1;
        let mut closed = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 1,
                b'"' => {
                    closed = true;
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        if !closed {
            return Err("unterminated quoted display name");
        }
        let rest = v[i.min(v.len())..].trim_start();
        if !rest.starts_with('<') {
            return Err("quoted display name without <addr-spec>");
        }
        return check_angle(rest);
    }
    if let Some(lt) = v.find('<') {
        let display = v[..lt].trim();
        if !display.split_whitespace().all(is_token) {
            return Err("display name is not a token list; quote it");
        }
        return check_angle(&v[lt..]);
    }
    // addr-spec without <>: it may not contain ',', '?' or ';' in the URI
    // (RFC 3261 §20.10), so everything after ';' is header parameters.
    let (uri, params) = match v.find(';') {
        Some(i) => (v[..i].trim_end(), &v[i..]),
        None => (v, ""),
    };
    if uri.contains([' ', '\t', '?', ',', '"', '>']) {
        return Err("address with ?, , or spaces must be enclosed in <>");
    }
    if !uri.contains(':') {
        return Err("address without a scheme");
    }
    check_params(params)
}

/// Checks `<addr-spec>` and the parameters after it.
fn check_angle(s: &str) -> Result<(), &'static str> {
    let Some(gt) = s.find('>') else {
        return Err("missing >");
    };
    let inner = &s[1..gt];
    if inner.is_empty() || inner.contains([' ', '\t', '<']) {
        return Err("spaces inside <addr-spec>");
    }
    if !inner.contains(':') {
        return Err("address without a scheme");
    }
    check_params(&s[gt + 1..])
}

/// The body length to keep: Content-Length when present (and no more than
/// what arrived), else everything after the headers (UDP, RFC 3261 §18.3).
fn body_length(lite: &Lite, total: usize) -> Result<usize, Problem> {
    let available = total.saturating_sub(lite.body_start);
    match lite.first("content-length") {
        None => Ok(available),
        Some(cl) => {
            let n: usize = cl.parse().map_err(|_| bad("Invalid Content-Length"))?;
            if n > available {
                Err(bad("Content-Length Larger Than Message"))
            } else {
                Ok(n)
            }
        }
    }
}

/// Headers whose parameters rsipstack reads only without LWS around `;`
/// and `=` (it misses `; tag = x`, RFC 4475 wsinv).
const PARAM_HEADERS: &[&str] = &[
    "from",
    "to",
    "contact",
    "via",
    "route",
    "record-route",
    "refer-to",
];

/// The message with its headers unfolded, one per line, and parameter
/// LWS removed where rsipstack would misread it. The body is kept as is.
fn rebuild(lite: &Lite, body: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(lite.body_start + 64);
    out.push_str(&lite.start);
    out.push_str("\r\n");
    for (name, written, value) in &lite.headers {
        out.push_str(written);
        out.push_str(": ");
        if PARAM_HEADERS.contains(&name.as_str()) {
            out.push_str(&tighten(value, name == "via"));
        } else {
            out.push_str(value);
        }
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Removes whitespace next to `;`, `=` (and `/` in a Via) outside quotes
/// and `<>`.
fn tighten(value: &str, via: bool) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut angle, mut escape) = (false, false, false);
    let tight = |c: char| c == ';' || c == '=' || (via && c == '/');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if escape {
            escape = false;
            out.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escape = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            _ => {}
        }
        if !quoted && !angle && (c == ' ' || c == '\t') {
            // Drop a run of whitespace that touches a tight character.
            let mut run = String::from(c);
            while let Some(&n) = chars.peek() {
                if n == ' ' || n == '\t' {
                    run.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            let before = out.chars().last().is_some_and(tight);
            let after = chars.peek().copied().is_some_and(tight);
            if !before && !after {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Builds the answer to a request the guard refuses.
fn reject(lite: &Lite, status: u16, reason: String, extra: Vec<(String, String)>) -> Verdict {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    let call_id = lite.first("call-id").unwrap_or_default();
    for (name, _, value) in &lite.headers {
        if !ECHOED.contains(&name.as_str()) {
            continue;
        }
        let mut value = value.clone();
        if name == "to" && !has_tag(&value) {
            value.push_str(";tag=");
            value.push_str(&stable_tag(call_id));
        }
        out.push_str(display_name(name));
        out.push_str(": ");
        out.push_str(&value);
        out.push_str("\r\n");
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Verdict::Reject(Rejection {
        status,
        reason,
        response: out.into_bytes(),
    })
}

fn has_tag(value: &str) -> bool {
    let after = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    split_params(after).iter().skip(1).any(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        name.trim().eq_ignore_ascii_case("tag") && !value.trim().is_empty()
    })
}

/// A To tag derived from the Call-ID, so a retransmitted bad request gets
/// the same answer.
fn stable_tag(call_id: &str) -> String {
    let mut h = DefaultHasher::new();
    call_id.hash(&mut h);
    format!("g{:x}", h.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "guard_tests.rs"]
mod tests;
