//! Negotiation rules and the SDP we write.

use std::net::{IpAddr, SocketAddr};

use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaDescription, MediaName, RangedPort};
use rtc_sdp::description::session::{Origin, TimeDescription, Timing};
use rtc_sdp::SessionDescription;

use super::remote::{RemoteMedia, RemoteSdp};
use super::{
    Direction, LocalMedia, NegotiatedMedia, SdpError, PTIME_RANGE_MS, TELEPHONE_EVENT_FMTP,
    TELEPHONE_EVENT_PT,
};
use crate::codec::Codec;

const USERNAME: &str = "voxgate";
const SESSION_NAME: &str = "voxgate";

fn address_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Our `o=` line.
pub(super) fn origin(session_id: u64, version: u64, address: IpAddr) -> Origin {
    Origin {
        username: USERNAME.to_owned(),
        session_id,
        session_version: version,
        network_type: "IN".to_owned(),
        address_type: address_type(address).to_owned(),
        unicast_address: address.to_string(),
    }
}

fn base_session(address: IpAddr) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: origin(0, 0, address),
        session_name: SESSION_NAME.to_owned(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".to_owned(),
            address_type: address_type(address).to_owned(),
            address: Some(Address {
                address: address.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        ..SessionDescription::default()
    }
}

/// Our codecs; an empty list (a configuration slip) means both G.711s.
fn local_codecs(local: &LocalMedia) -> Vec<Codec> {
    if local.codecs.is_empty() {
        vec![Codec::Pcmu, Codec::Pcma]
    } else {
        local.codecs.clone()
    }
}

// `is_multiple_of` is newer than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn valid_ptime(ms: u32) -> bool {
    PTIME_RANGE_MS.contains(&ms) && ms % 10 == 0
}

/// The offer's ptime when it is sane, else ours; never above maxptime.
fn negotiate_ptime(offered: Option<u32>, maxptime: Option<u32>, ours: u32) -> u32 {
    let ours = if valid_ptime(ours) { ours } else { 20 };
    let mut ptime = offered.filter(|p| valid_ptime(*p)).unwrap_or(ours);
    if let Some(max) = maxptime.filter(|m| PTIME_RANGE_MS.contains(m)) {
        if ptime > max {
            ptime = (max / 10 * 10).max(10);
        }
    }
    ptime
}

struct AudioLine {
    port: u16,
    proto: String,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<(u8, String)>,
    ptime_ms: u32,
    direction: Direction,
}

fn value_attr(key: &str, value: String) -> Attribute {
    Attribute::new(key.to_owned(), Some(value))
}

fn audio_media(line: &AudioLine, extra_codecs: &[Codec]) -> MediaDescription {
    let mut formats = vec![line.payload_type.to_string()];
    let mut attributes = vec![value_attr(
        "rtpmap",
        format!(
            "{} {}/{}",
            line.payload_type,
            line.codec.name(),
            line.codec.clock_rate()
        ),
    )];
    for c in extra_codecs {
        formats.push(c.payload_type().to_string());
        attributes.push(value_attr(
            "rtpmap",
            format!("{} {}/{}", c.payload_type(), c.name(), c.clock_rate()),
        ));
    }
    if let Some((pt, fmtp)) = &line.telephone_event {
        formats.push(pt.to_string());
        attributes.push(value_attr("rtpmap", format!("{pt} telephone-event/8000")));
        attributes.push(value_attr("fmtp", format!("{pt} {fmtp}")));
    }
    attributes.push(value_attr("ptime", line.ptime_ms.to_string()));
    attributes.push(Attribute::new(line.direction.as_str().to_owned(), None));
    MediaDescription {
        media_name: MediaName {
            media: "audio".to_owned(),
            port: RangedPort {
                value: line.port as isize,
                range: None,
            },
            protos: line.proto.split('/').map(str::to_owned).collect(),
            formats,
        },
        attributes,
        ..MediaDescription::default()
    }
}

/// An m-line we do not take: same media, transport and formats, port 0.
fn rejected_media(m: &RemoteMedia) -> MediaDescription {
    let formats = if m.formats.is_empty() {
        vec!["0".to_owned()]
    } else {
        m.formats.clone()
    };
    MediaDescription {
        media_name: MediaName {
            media: m.kind.clone(),
            port: RangedPort {
                value: 0,
                range: None,
            },
            protos: m.proto.split('/').map(str::to_owned).collect(),
            formats,
        },
        ..MediaDescription::default()
    }
}

/// The first payload type, in the sender's order, of a codec we support.
fn first_common_codec(m: &RemoteMedia, ours: &[Codec]) -> Option<(Codec, u8)> {
    m.payload_types()
        .find_map(|pt| m.codec_of(pt).filter(|c| ours.contains(c)).map(|c| (c, pt)))
}

/// Directions and hold as seen from our side of `m`, given the most we
/// are willing to do.
fn directions(m: &RemoteMedia, ip: IpAddr, ours_at_most: Direction) -> (Direction, bool) {
    let mut ours = ours_at_most.intersect(m.direction.mirror());
    // RFC 2543 hold: there is nowhere to send to.
    let null_address = ip.is_unspecified();
    if null_address {
        ours = ours.intersect(Direction::RecvOnly);
    }
    let on_hold = null_address || matches!(m.direction, Direction::SendOnly | Direction::Inactive);
    (ours, on_hold)
}

/// The answer to `remote`, and what it settles.
pub(super) fn answer(
    remote: &RemoteSdp,
    local: &LocalMedia,
) -> Result<(SessionDescription, NegotiatedMedia), SdpError> {
    let ours = local_codecs(local);
    let chosen = remote.media.iter().enumerate().find_map(|(index, m)| {
        let usable = m.kind.eq_ignore_ascii_case("audio") && m.port != 0 && m.is_plain_rtp();
        if !usable {
            return None;
        }
        first_common_codec(m, &ours).map(|(codec, pt)| (index, m, codec, pt))
    });
    let (index, m, codec, payload_type) = chosen.ok_or(SdpError::NoCommonCodec)?;
    let ip = m.connection.ok_or(SdpError::MissingConnection { index })?;
    let telephone_event = if local.telephone_event {
        m.telephone_event_pt().map(|pt| {
            let fmtp = m
                .fmtps
                .get(&pt)
                .cloned()
                .unwrap_or_else(|| TELEPHONE_EVENT_FMTP.to_owned());
            (pt, fmtp)
        })
    } else {
        None
    };
    let ptime_ms = negotiate_ptime(m.ptime_ms, m.maxptime_ms, local.ptime_ms);
    let (direction, on_hold) = directions(m, ip, Direction::SendRecv);
    let line = AudioLine {
        port: local.port,
        proto: m.proto.clone(),
        codec,
        payload_type,
        telephone_event: telephone_event.clone(),
        ptime_ms,
        direction,
    };
    let mut desc = base_session(local.address);
    for (i, other) in remote.media.iter().enumerate() {
        desc.media_descriptions.push(if i == index {
            audio_media(&line, &[])
        } else {
            rejected_media(other)
        });
    }
    let negotiated = NegotiatedMedia {
        remote: SocketAddr::new(ip, m.port),
        codec,
        payload_type,
        dtmf_payload_type: telephone_event.map(|(pt, _)| pt),
        ptime_ms,
        direction,
        remote_direction: m.direction,
        on_hold,
    };
    Ok((desc, negotiated))
}

/// Our offer: every codec of ours in our order, telephone-event on
/// [`TELEPHONE_EVENT_PT`].
pub(super) fn offer(local: &LocalMedia, direction: Direction) -> SessionDescription {
    let ours = local_codecs(local);
    let first = ours[0];
    let line = AudioLine {
        port: local.port,
        proto: "RTP/AVP".to_owned(),
        codec: first,
        payload_type: first.payload_type(),
        telephone_event: local
            .telephone_event
            .then(|| (TELEPHONE_EVENT_PT, TELEPHONE_EVENT_FMTP.to_owned())),
        ptime_ms: if valid_ptime(local.ptime_ms) {
            local.ptime_ms
        } else {
            20
        },
        direction,
    };
    let mut desc = base_session(local.address);
    desc.media_descriptions.push(audio_media(&line, &ours[1..]));
    desc
}

/// What the answer to our offer (made from `local` with `offered`
/// direction) settles.
pub(super) fn accept(
    remote: &RemoteSdp,
    local: &LocalMedia,
    offered: Direction,
) -> Result<NegotiatedMedia, SdpError> {
    if remote.media.len() != 1 {
        return Err(SdpError::MediaCountMismatch {
            offered: 1,
            answered: remote.media.len(),
        });
    }
    let m = &remote.media[0];
    if !m.kind.eq_ignore_ascii_case("audio") || m.port == 0 {
        return Err(SdpError::NoCommonCodec);
    }
    let (codec, payload_type) =
        first_common_codec(m, &local_codecs(local)).ok_or(SdpError::NoCommonCodec)?;
    let ip = m
        .connection
        .ok_or(SdpError::MissingConnection { index: 0 })?;
    let dtmf_payload_type = if local.telephone_event {
        m.telephone_event_pt()
    } else {
        None
    };
    let ptime_ms = negotiate_ptime(m.ptime_ms, m.maxptime_ms, local.ptime_ms);
    let (direction, on_hold) = directions(m, ip, offered);
    Ok(NegotiatedMedia {
        remote: SocketAddr::new(ip, m.port),
        codec,
        payload_type,
        dtmf_payload_type,
        ptime_ms,
        direction,
        remote_direction: m.direction,
        on_hold,
    })
}
