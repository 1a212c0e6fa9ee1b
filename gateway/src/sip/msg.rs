//! Small helpers over rsipstack's message types: reading header text,
//! building responses, and building in-dialog requests as text that
//! rsipstack then parses (so every request we send went through the same
//! parser as every request we receive).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use rsipstack::sip::headers::make_header;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Request, Response, StatusCode};
use rsipstack::transaction::endpoint::EndpointInner;

/// The trimmed text of the first header called `name`.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.header_value(name)
}

/// Every header called `name`, in order.
pub fn headers(req: &Request, name: &str) -> Vec<String> {
    req.headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value().trim().to_string())
        .collect()
}

/// The value of parameter `name` in a header value (after the URI).
pub fn param(value: &str, name: &str) -> Option<String> {
    let after = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

pub fn to_tag(req: &Request) -> Option<String> {
    header(req, "To")
        .and_then(|v| param(&v, "tag"))
        .filter(|t| !t.is_empty())
}

pub fn from_tag(req: &Request) -> Option<String> {
    header(req, "From")
        .and_then(|v| param(&v, "tag"))
        .filter(|t| !t.is_empty())
}

pub fn call_id(req: &Request) -> String {
    req.call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default()
}

/// The URI inside a name-addr (`"Bob" <sip:b@h>;tag=1` → `sip:b@h`).
pub fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The user part of a SIP or tel URI.
pub fn user_of(uri: &str) -> String {
    let rest = uri.split_once(':').map(|(_, r)| r).unwrap_or(uri);
    let user = match rest.split_once('@') {
        Some((u, _)) => u,
        None if uri.starts_with("tel:") => rest,
        None => "",
    };
    user.split(';').next().unwrap_or_default().to_string()
}

/// The media type of a Content-Type value, lower-case, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A random tag or branch suffix.
pub fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A response to `req`; `to_tag` is added when the To has none.
pub fn response(
    endpoint: &EndpointInner,
    req: &Request,
    status: u16,
    to_tag: Option<&str>,
    extra: &[(String, String)],
    body: Option<(&str, Vec<u8>)>,
) -> Response {
    let (content_type, body) = match body {
        Some((ct, b)) => (Some(ct), Some(b)),
        None => (None, None),
    };
    let mut resp = endpoint.make_response(req, StatusCode::from(status), body);
    if let (Some(tag), None, true) = (to_tag, self::to_tag(req), status > 100) {
        if let Some(to) = header(req, "To") {
            resp.headers.retain(|h| !matches!(h, Header::To(_)));
            resp.headers
                .push(make_header("To", format!("{to};tag={tag}")));
        }
    }
    if let Some(ct) = content_type {
        resp.headers
            .push(make_header("Content-Type", ct.to_string()));
    }
    for (name, value) in extra {
        resp.headers.push(make_header(name, value.clone()));
    }
    resp
}

/// What we know of an established dialog, to send requests in it.
#[derive(Debug)]
pub struct DialogInfo {
    pub call_id: String,
    /// Our URI with our tag, as the From of our requests.
    pub local: String,
    /// Their URI with their tag, as the To of our requests.
    pub remote: String,
    /// Where requests go: their Contact.
    pub remote_target: String,
    /// Record-Route of the INVITE, in order (RFC 3261 §12.1.1).
    pub route_set: Vec<String>,
    /// Our Contact and Via address.
    pub local_contact: String,
    pub via_host: String,
    pub transport: &'static str,
    /// The address the dialog's requests reach the peer at (the INVITE's
    /// source, so NATed trunks work).
    pub peer: SocketAddr,
    pub local_seq: AtomicU32,
}

impl DialogInfo {
    /// The dialog a UAS forms by answering `invite` with `local_tag`.
    pub fn from_invite(
        invite: &Request,
        local_tag: &str,
        peer: SocketAddr,
        via_host: String,
        transport: &'static str,
    ) -> Self {
        let to = header(invite, "To").unwrap_or_default();
        let from = header(invite, "From").unwrap_or_default();
        let contact = header(invite, "Contact").map(|c| uri_of(&c));
        Self {
            call_id: call_id(invite),
            local: format!("{to};tag={local_tag}"),
            remote: from,
            remote_target: contact.unwrap_or_else(|| format!("sip:{peer}")),
            route_set: headers(invite, "Record-Route")
                .into_iter()
                .flat_map(|r| split_commas(&r))
                .collect(),
            local_contact: format!("<sip:voxgate@{via_host}>"),
            via_host,
            transport,
            peer,
            local_seq: AtomicU32::new(1),
        }
    }

    /// The dialog a UAC forms when `response`, a 2xx, answers our `invite`
    /// (RFC 3261 §12.1.2): the route set is the Record-Route reversed.
    pub fn from_uac(
        invite: &Request,
        response: &Response,
        peer: SocketAddr,
        via_host: String,
        transport: &'static str,
    ) -> Self {
        let value = |name: &str| response.header_value(name);
        let all = |name: &str| -> Vec<String> {
            response
                .headers
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
                .flat_map(|h| split_commas(h.value().trim()))
                .collect()
        };
        let mut route_set = all("Record-Route");
        route_set.reverse();
        let seq = invite
            .cseq_header()
            .ok()
            .and_then(|c| c.seq().ok())
            .unwrap_or(1);
        Self {
            call_id: call_id(invite),
            local: header(invite, "From").unwrap_or_default(),
            remote: value("To").unwrap_or_default(),
            remote_target: value("Contact")
                .map(|c| uri_of(&c))
                .unwrap_or_else(|| invite.uri.to_string()),
            route_set,
            local_contact: format!("<sip:voxgate@{via_host}>"),
            via_host,
            transport,
            peer,
            local_seq: AtomicU32::new(seq.saturating_add(1)),
        }
    }

    /// A request in this dialog, as text parsed by rsipstack.
    pub fn request(
        &self,
        method: &str,
        extra: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> Option<Request> {
        let seq = self.local_seq.fetch_add(1, Ordering::Relaxed);
        let mut text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{tp} {host};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} {method}\r\n\
             Contact: {contact}\r\n",
            target = self.remote_target,
            tp = self.transport,
            host = self.via_host,
            branch = random_token(),
            from = self.local,
            to = self.remote,
            cid = self.call_id,
            contact = self.local_contact,
        );
        for route in &self.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        for (name, value) in extra {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = match body {
            Some((ct, b)) => {
                text.push_str(&format!("Content-Type: {ct}\r\n"));
                b
            }
            None => &[],
        };
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        Request::try_from(&bytes[..]).ok()
    }
}

/// Splits a header value at commas outside `<>` and quotes.
pub fn split_commas(value: &str) -> Vec<String> {
    let (mut out, mut cur, mut angle, mut quoted) = (Vec::new(), String::new(), false, false);
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !angle && !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uri_user_and_params() {
        assert_eq!(
            uri_of("\"A\" <sip:alice@h;transport=udp>;tag=9"),
            "sip:alice@h;transport=udp"
        );
        assert_eq!(user_of("sip:+331234@h;user=phone"), "+331234");
        assert_eq!(user_of("tel:+331234;phone-context=x"), "+331234");
        assert_eq!(
            param("<sip:a@h;lr>;tag=abc ; x=1", "tag").as_deref(),
            Some("abc")
        );
        assert_eq!(param("sip:a@h;tag=abc", "tag").as_deref(), Some("abc"));
        assert_eq!(
            split_commas("<sip:a,b@h>, <sip:c@h>"),
            ["<sip:a,b@h>", "<sip:c@h>"]
        );
    }

    #[test]
    fn dialog_request_parses() {
        let invite = Request::try_from(
            &b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
               From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
               Contact: <sip:alice@127.0.0.1:5070>\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let d = DialogInfo::from_invite(
            &invite,
            "b2",
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5060".into(),
            "UDP",
        );
        let bye = d.request("BYE", &[], None).unwrap();
        let text = bye.to_string();
        assert!(
            text.starts_with("BYE sip:alice@127.0.0.1:5070 SIP/2.0"),
            "{text}"
        );
        assert_eq!(from_tag(&bye).as_deref(), Some("b2"));
        assert_eq!(to_tag(&bye).as_deref(), Some("a1"));
        assert_eq!(headers(&bye, "Route").len(), 2);
        assert_eq!(
            d.request("BYE", &[], None)
                .unwrap()
                .cseq_header()
                .unwrap()
                .seq()
                .unwrap(),
            2
        );
    }
}
