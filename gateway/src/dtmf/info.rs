//! DTMF in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` and
//! `Duration=160` lines) and `application/dtmf` (the digit alone).

use std::time::Duration;

use super::{event_code, DtmfEvent, DtmfSource};

/// Content type of the key=value form.
pub const DTMF_RELAY: &str = "application/dtmf-relay";
/// Content type of the bare-digit form.
pub const DTMF: &str = "application/dtmf";

/// Duration reported when the body carries none.
pub const DEFAULT_DURATION: Duration = Duration::from_millis(160);

/// Why an INFO body is not a digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoDtmfError {
    #[error("content type {0:?} does not carry DTMF")]
    NotDtmf(String),
    #[error("the body is not UTF-8")]
    NotText,
    #[error("the body has no Signal line")]
    MissingSignal,
    #[error("{0:?} is not a DTMF digit")]
    InvalidDigit(String),
    #[error("{0:?} is not a duration in ms")]
    InvalidDuration(String),
}

/// Parses an INFO body by its `Content-Type` (parameters after `;` are
/// ignored, case-insensitive).
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<DtmfEvent, InfoDtmfError> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::NotText)?;
    if mime.eq_ignore_ascii_case(DTMF_RELAY) {
        parse_dtmf_relay(text)
    } else if mime.eq_ignore_ascii_case(DTMF) {
        parse_dtmf(text)
    } else {
        Err(InfoDtmfError::NotDtmf(mime.to_string()))
    }
}

fn digit(s: &str) -> Result<char, InfoDtmfError> {
    let s = s.trim();
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if event_code(c).is_some() => Ok(c.to_ascii_uppercase()),
        _ => {
            // Some gateways send the RFC 4733 event code: "10" for '*', "11" for '#'.
            match s.parse::<u8>() {
                Ok(code) => {
                    super::digit_of(code).ok_or_else(|| InfoDtmfError::InvalidDigit(s.to_string()))
                }
                Err(_) => Err(InfoDtmfError::InvalidDigit(s.to_string())),
            }
        }
    }
}

/// Parses `application/dtmf-relay`: `Signal=` is required, `Duration=`
/// (ms) optional; lines end in CRLF or LF; keys are case-insensitive.
pub fn parse_dtmf_relay(body: &str) -> Result<DtmfEvent, InfoDtmfError> {
    let mut signal = None;
    let mut duration = DEFAULT_DURATION;
    for line in body.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("signal") {
            signal = Some(digit(value)?);
        } else if key.eq_ignore_ascii_case("duration") {
            let v = value.trim();
            let ms: u64 = v
                .parse()
                .map_err(|_| InfoDtmfError::InvalidDuration(v.to_string()))?;
            if ms > 60_000 {
                return Err(InfoDtmfError::InvalidDuration(v.to_string()));
            }
            duration = Duration::from_millis(ms);
        }
    }
    let digit = signal.ok_or(InfoDtmfError::MissingSignal)?;
    Ok(DtmfEvent {
        digit,
        duration,
        source: DtmfSource::Info,
    })
}

/// Parses `application/dtmf`: the digit alone.
pub fn parse_dtmf(body: &str) -> Result<DtmfEvent, InfoDtmfError> {
    let digit = digit(body)?;
    Ok(DtmfEvent {
        digit,
        duration: DEFAULT_DURATION,
        source: DtmfSource::Info,
    })
}

/// The `application/dtmf-relay` body for a digit.
pub fn build_dtmf_relay(digit: char, duration: Duration) -> Result<String, InfoDtmfError> {
    if event_code(digit).is_none() {
        return Err(InfoDtmfError::InvalidDigit(digit.to_string()));
    }
    Ok(format!(
        "Signal={}\r\nDuration={}\r\n",
        digit.to_ascii_uppercase(),
        duration.as_millis()
    ))
}

/// The `application/dtmf` body for a digit.
pub fn build_dtmf(digit: char) -> Result<String, InfoDtmfError> {
    if event_code(digit).is_none() {
        return Err(InfoDtmfError::InvalidDigit(digit.to_string()));
    }
    Ok(digit.to_ascii_uppercase().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(digit: char, ms: u64) -> DtmfEvent {
        DtmfEvent {
            digit,
            duration: Duration::from_millis(ms),
            source: DtmfSource::Info,
        }
    }

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            parse_body("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Ok(d('5', 160))
        );
        assert_eq!(
            parse_body(
                "Application/DTMF-Relay; charset=x",
                b"signal= #\nduration = 250"
            ),
            Ok(d('#', 250))
        );
        assert_eq!(parse_dtmf_relay("Signal=*"), Ok(d('*', 160)));
        assert_eq!(
            parse_dtmf_relay("Signal=11\r\nDuration=100"),
            Ok(d('#', 100))
        );
        assert_eq!(parse_dtmf_relay("Signal=a"), Ok(d('A', 160)));
        assert_eq!(
            parse_dtmf_relay("Duration=160"),
            Err(InfoDtmfError::MissingSignal)
        );
        assert!(matches!(
            parse_dtmf_relay("Signal=55"),
            Err(InfoDtmfError::InvalidDigit(_))
        ));
        assert!(matches!(
            parse_dtmf_relay("Signal=X"),
            Err(InfoDtmfError::InvalidDigit(_))
        ));
        assert!(matches!(
            parse_dtmf_relay("Signal=1\nDuration=-4"),
            Err(InfoDtmfError::InvalidDuration(_))
        ));
        assert!(matches!(
            parse_dtmf_relay("Signal=1\nDuration=999999"),
            Err(InfoDtmfError::InvalidDuration(_))
        ));
    }

    #[test]
    fn dtmf_bodies_and_errors() {
        assert_eq!(parse_body("application/dtmf", b"5\r\n"), Ok(d('5', 160)));
        assert!(matches!(
            parse_body("application/dtmf", b""),
            Err(InfoDtmfError::InvalidDigit(_))
        ));
        assert!(matches!(
            parse_body("text/plain", b"5"),
            Err(InfoDtmfError::NotDtmf(_))
        ));
        assert_eq!(
            parse_body("application/dtmf", &[0xFF, 0xFE]),
            Err(InfoDtmfError::NotText)
        );
    }

    #[test]
    fn builders_round_trip() {
        for c in super::super::DIGITS {
            let b = build_dtmf_relay(c, Duration::from_millis(120)).expect("relay");
            assert_eq!(parse_body(DTMF_RELAY, b.as_bytes()), Ok(d(c, 120)));
            let b = build_dtmf(c).expect("dtmf");
            assert_eq!(parse_body(DTMF, b.as_bytes()), Ok(d(c, 160)));
        }
        assert_eq!(
            build_dtmf_relay('5', Duration::from_millis(160)).expect("relay"),
            "Signal=5\r\nDuration=160\r\n"
        );
        assert!(build_dtmf('x').is_err());
    }
}
