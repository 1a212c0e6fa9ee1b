//! Trunk protection: which sources may call us, digest authentication, and
//! the per-source INVITE rate limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rsipstack::sip::prelude::*;
use rsipstack::sip::Request;

/// An IPv4 or IPv6 network in CIDR notation; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A malformed CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Digest credentials a trunk must present on INVITE (RFC 3261 §22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    pub realm: String,
    pub username: String,
    pub password: String,
}

/// Which DTMF transports a trunk's calls accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfMethods {
    pub rfc4733: bool,
    pub info: bool,
    pub inband: bool,
}

impl Default for DtmfMethods {
    fn default() -> Self {
        Self {
            rfc4733: true,
            info: true,
            inband: false,
        }
    }
}

/// One carrier trunk.
#[derive(Debug, Clone)]
pub struct TrunkConfig {
    pub name: String,
    /// Sources allowed to send us requests on this trunk. Empty: any.
    pub allow: Vec<Cidr>,
    pub digest: Option<DigestConfig>,
    /// INVITEs per second per source address, with this burst.
    pub invites_per_second: u32,
    pub invite_burst: u32,
    pub dtmf: DtmfMethods,
}

impl TrunkConfig {
    /// A trunk open to every source, without authentication.
    pub fn open(name: &str) -> Self {
        Self {
            name: name.to_string(),
            allow: Vec::new(),
            digest: None,
            invites_per_second: 20,
            invite_burst: 40,
            dtmf: DtmfMethods::default(),
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// A trunk with its live rate limiter.
pub struct Trunk {
    pub cfg: TrunkConfig,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// The result of the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Refuse with 503; the caller may retry after this long.
    Limited {
        retry_after: Duration,
    },
}

/// The result of digest authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allowed,
    /// Send 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Credentials were given and are wrong: 403.
    Forbidden,
}

impl Trunk {
    pub fn new(cfg: TrunkConfig) -> Self {
        let rate = NonZeroU32::new(cfg.invites_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.invite_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
        Self { cfg, limiter }
    }

    /// Counts one INVITE from `ip` against the limit.
    pub fn check_rate(&self, ip: IpAddr) -> RateDecision {
        use governor::clock::{Clock, DefaultClock};
        match self.limiter.check_key(&ip) {
            Ok(()) => RateDecision::Allowed,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                RateDecision::Limited {
                    retry_after: wait.max(Duration::from_secs(1)),
                }
            }
        }
    }

    /// Checks the INVITE's `Authorization` against the trunk's digest
    /// credentials, if it has any.
    /// `nonce` goes into a new challenge; `nonce_ok` tells whether a nonce
    /// in the request is one we issued and still honour.
    pub fn check_auth(
        &self,
        req: &Request,
        nonce: &str,
        nonce_ok: impl Fn(&str) -> bool,
    ) -> AuthDecision {
        let Some(digest) = &self.cfg.digest else {
            return AuthDecision::Allowed;
        };
        let challenge = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5",
            digest.realm
        );
        let Some(header) = req.authorization_header() else {
            return AuthDecision::Challenge(challenge);
        };
        let raw = header.value().to_string();
        let Ok(auth) = rsipstack::sip::typed::Authorization::parse(&raw) else {
            return AuthDecision::Forbidden;
        };
        if auth.username != digest.username || auth.realm != digest.realm {
            return AuthDecision::Forbidden;
        }
        if !nonce_ok(&auth.nonce) {
            // A stale or foreign nonce: challenge again (RFC 2617 stale).
            return AuthDecision::Challenge(format!("{challenge}, stale=true"));
        }
        if rsipstack::dialog::authenticate::verify_digest(
            &auth,
            &digest.password,
            &req.method,
            &raw,
        ) {
            AuthDecision::Allowed
        } else {
            AuthDecision::Forbidden
        }
    }
}

/// Every trunk, matched by source address in order.
#[derive(Clone)]
pub struct TrunkTable {
    trunks: Arc<Vec<Trunk>>,
}

impl TrunkTable {
    /// With no trunks configured, one open trunk called `default` is used.
    pub fn new(cfgs: Vec<TrunkConfig>) -> Self {
        let cfgs = if cfgs.is_empty() {
            vec![TrunkConfig::open("default")]
        } else {
            cfgs
        };
        Self {
            trunks: Arc::new(cfgs.into_iter().map(Trunk::new).collect()),
        }
    }

    /// The first trunk whose allow-list holds `ip`.
    pub fn match_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.cfg.allows(ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let any6: Cidr = "::/0".parse().unwrap();
        assert!(any6.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn table_matches_by_source() {
        let mut a = TrunkConfig::open("a");
        a.allow = vec!["127.0.0.2/32".parse().unwrap()];
        let mut b = TrunkConfig::open("b");
        b.allow = vec!["127.0.0.0/8".parse().unwrap()];
        let t = TrunkTable::new(vec![a, b]);
        assert_eq!(
            t.match_source("127.0.0.2".parse().unwrap())
                .map(|t| t.cfg.name.as_str()),
            Some("a")
        );
        assert_eq!(
            t.match_source("127.0.0.9".parse().unwrap())
                .map(|t| t.cfg.name.as_str()),
            Some("b")
        );
        assert!(t.match_source("10.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn rate_limit_refuses_past_the_burst() {
        let mut cfg = TrunkConfig::open("t");
        cfg.invites_per_second = 1;
        cfg.invite_burst = 2;
        let t = Trunk::new(cfg);
        let ip = "127.0.0.1".parse().unwrap();
        assert_eq!(t.check_rate(ip), RateDecision::Allowed);
        assert_eq!(t.check_rate(ip), RateDecision::Allowed);
        assert!(matches!(t.check_rate(ip), RateDecision::Limited { .. }));
        // Another source has its own budget.
        assert_eq!(
            t.check_rate("127.0.0.2".parse().unwrap()),
            RateDecision::Allowed
        );
    }

    fn invite_with(auth: Option<&str>) -> Request {
        let mut text = String::from(
            "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n",
        );
        if let Some(a) = auth {
            text.push_str(&format!("Authorization: {a}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Request::try_from(text.as_bytes()).unwrap()
    }

    #[test]
    fn digest_challenge_and_verify() {
        let mut cfg = TrunkConfig::open("t");
        cfg.digest = Some(DigestConfig {
            realm: "voxgate".into(),
            username: "carrier".into(),
            password: "pw".into(),
        });
        let t = Trunk::new(cfg);
        assert!(
            matches!(t.check_auth(&invite_with(None), "n1", |n| n == "n1"), AuthDecision::Challenge(c) if c.contains("nonce=\"n1\""))
        );
        let good = rsipstack::dialog::authenticate::compute_digest(
            "carrier",
            "pw",
            "voxgate",
            "n1",
            &rsipstack::sip::Method::Invite,
            "sip:100@127.0.0.1",
            rsipstack::sip::headers::auth::Algorithm::Md5,
            None,
        );
        let hdr = format!(
            "Digest username=\"carrier\", realm=\"voxgate\", nonce=\"n1\", uri=\"sip:100@127.0.0.1\", response=\"{good}\", algorithm=MD5"
        );
        assert_eq!(
            t.check_auth(&invite_with(Some(&hdr)), "n1", |n| n == "n1"),
            AuthDecision::Allowed
        );
        let bad = hdr.replace(&good, "00000000000000000000000000000000");
        assert_eq!(
            t.check_auth(&invite_with(Some(&bad)), "n1", |n| n == "n1"),
            AuthDecision::Forbidden
        );
        assert!(
            matches!(t.check_auth(&invite_with(Some(&hdr)), "n2", |n| n == "n2"), AuthDecision::Challenge(c) if c.contains("stale"))
        );
    }
}
