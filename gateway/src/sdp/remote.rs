//! The far end's SDP, reduced to what negotiation needs.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::IpAddr;

use rtc_sdp::description::common::{Attribute, ConnectionInformation};
use rtc_sdp::SessionDescription;

use super::{Direction, SdpError};
use crate::codec::Codec;

/// Bodies larger than this are refused before parsing; real SDP is a few
/// hundred bytes.
pub const MAX_SDP_BYTES: usize = 16 * 1024;

/// One `a=rtpmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// One m-line of a parsed SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// `audio`, `video`, ...
    pub kind: String,
    pub port: u16,
    /// Transport, for example `RTP/AVP`.
    pub proto: String,
    /// Format tokens, in the sender's preference order.
    pub formats: Vec<String>,
    pub rtpmaps: HashMap<u8, RtpMap>,
    pub fmtps: HashMap<u8, String>,
    pub ptime_ms: Option<u32>,
    pub maxptime_ms: Option<u32>,
    /// Media-level direction, else session-level, else sendrecv.
    pub direction: Direction,
    /// Media-level `c=`, else session-level.
    pub connection: Option<IpAddr>,
}

/// A parsed SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSdp {
    pub session_id: u64,
    pub session_version: u64,
    pub media: Vec<RemoteMedia>,
}

fn connection_ip(c: &ConnectionInformation) -> Result<Option<IpAddr>, SdpError> {
    let Some(address) = &c.address else {
        return Ok(None);
    };
    // Multicast addresses carry /ttl and /range suffixes.
    let host = address.address.split('/').next().unwrap_or_default();
    host.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| SdpError::UnsupportedAddress(address.address.clone()))
}

fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().rev().find_map(|a| {
        if a.value.is_none() {
            Direction::from_attribute(&a.key)
        } else {
            None
        }
    })
}

fn parse_ms(value: &str) -> Option<u32> {
    let v = value.trim();
    v.parse::<u32>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < 10_000.0)
            .map(|f| f.round() as u32)
    })
}

fn parse_rtpmap(value: &str) -> Option<(u8, RtpMap)> {
    let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
    let pt = pt.parse::<u8>().ok().filter(|pt| *pt < 128)?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.trim().to_owned();
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse::<u16>().ok()?),
        None => None,
    };
    Some((
        pt,
        RtpMap {
            name,
            clock_rate,
            channels,
        },
    ))
}

impl RemoteMedia {
    /// The payload types listed in the m-line, in order, skipping tokens
    /// that are not RTP payload types.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt < 128))
    }

    /// The codec a payload type stands for: from `a=rtpmap`, or the static
    /// assignment when there is none.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self.rtpmaps.get(&pt) {
            Some(map) => {
                let mono = matches!(map.channels, None | Some(1));
                Codec::from_name(&map.name).filter(|c| map.clock_rate == c.clock_rate() && mono)
            }
            None => Codec::from_payload_type(pt),
        }
    }

    /// The payload type of telephone-event/8000, if listed.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.payload_types().find(|pt| {
            self.rtpmaps.get(pt).is_some_and(|m| {
                m.name.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }

    /// Plain RTP (AVP or AVPF profile); SRTP and other transports are not
    /// ours to answer.
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }
}

impl RemoteSdp {
    /// Parses an SDP body. Never panics on any input.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        if text.trim().is_empty() {
            return Err(SdpError::Empty);
        }
        if text.len() > MAX_SDP_BYTES {
            return Err(SdpError::Malformed {
                reason: format!("body of {} bytes is too large", text.len()),
            });
        }
        let desc =
            SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes())).map_err(|e| {
                SdpError::Malformed {
                    reason: e.to_string(),
                }
            })?;
        Self::from_description(&desc)
    }

    fn from_description(desc: &SessionDescription) -> Result<Self, SdpError> {
        if desc.media_descriptions.is_empty() {
            return Err(SdpError::Malformed {
                reason: "no media line (m=)".to_owned(),
            });
        }
        let session_connection = desc
            .connection_information
            .as_ref()
            .map(connection_ip)
            .transpose()?
            .flatten();
        let session_direction = direction_of(&desc.attributes);
        let mut media = Vec::with_capacity(desc.media_descriptions.len());
        for (index, m) in desc.media_descriptions.iter().enumerate() {
            let port = u16::try_from(m.media_name.port.value).map_err(|_| SdpError::Malformed {
                reason: format!("bad port in media line {index}"),
            })?;
            let connection = match &m.connection_information {
                Some(c) => connection_ip(c)?.or(session_connection),
                None => session_connection,
            };
            if connection.is_none() && port != 0 {
                return Err(SdpError::MissingConnection { index });
            }
            let mut rtpmaps = HashMap::new();
            let mut fmtps = HashMap::new();
            let mut ptime_ms = None;
            let mut maxptime_ms = None;
            for a in &m.attributes {
                let Some(value) = a.value.as_deref() else {
                    continue;
                };
                match a.key.as_str() {
                    "rtpmap" => {
                        if let Some((pt, map)) = parse_rtpmap(value) {
                            rtpmaps.entry(pt).or_insert(map);
                        }
                    }
                    "fmtp" => {
                        if let Some((pt, params)) = value.trim().split_once(char::is_whitespace) {
                            if let Ok(pt) = pt.parse::<u8>() {
                                fmtps.entry(pt).or_insert_with(|| params.trim().to_owned());
                            }
                        }
                    }
                    "ptime" => ptime_ms = parse_ms(value),
                    "maxptime" => maxptime_ms = parse_ms(value),
                    _ => {}
                }
            }
            media.push(RemoteMedia {
                kind: m.media_name.media.clone(),
                port,
                proto: m.media_name.protos.join("/"),
                formats: m.media_name.formats.clone(),
                rtpmaps,
                fmtps,
                ptime_ms,
                maxptime_ms,
                direction: direction_of(&m.attributes)
                    .or(session_direction)
                    .unwrap_or(Direction::SendRecv),
                connection,
            });
        }
        Ok(Self {
            session_id: desc.origin.session_id,
            session_version: desc.origin.session_version,
            media,
        })
    }
}
