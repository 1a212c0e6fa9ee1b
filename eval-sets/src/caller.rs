//! What the caller sends on one call, laid out on the call's clock: the
//! turns' audio and silences as one 8 kHz stream (paced as RTP by the
//! softphone), the DTMF burst, and where each turn starts and ends.
//! Pure: the turn audio comes in as samples.

use serde::{Deserialize, Serialize};

use crate::manifest::{Call, Defaults, TurnKind};
use crate::render::RATE;

/// How long the softphone sounds each digit, and the gap after it.
pub const DTMF_DIGIT_MS: u32 = 160;
pub const DTMF_GAP_MS: u32 = 120;

/// One turn on the call's clock, ms from the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnSpan {
    pub turn: usize,
    pub kind: String,
    pub start_ms: u32,
    pub end_ms: u32,
    /// The caller stops here and waits for the bot: speech, keys and
    /// recorded turns, not silence or noise.
    pub awaits_reply: bool,
}

/// The caller's side of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerAudio {
    pub pcm: Vec<i16>,
    pub spans: Vec<TurnSpan>,
    /// Keys and when to start them, ms from the answer.
    pub dtmf: Option<(u32, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("call {call}, turns[{turn}]: at_ms {at_ms} is before the previous turn ends at {prev_end_ms} ms")]
    Overlap {
        call: String,
        turn: usize,
        at_ms: u32,
        prev_end_ms: u32,
    },
    #[error("call {call}, turns[{turn}]: its audio is not built (run `voxgate eval build`)")]
    NotBuilt { call: String, turn: usize },
    #[error("call {call}, turns[{turn}]: the turn has no single action")]
    NoAction { call: String, turn: usize },
}

fn samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(RATE) / 1000) as usize
}

fn ms_of(n: usize) -> u32 {
    u32::try_from(n as u64 * 1000 / u64::from(RATE)).unwrap_or(u32::MAX)
}

/// Lays out `call`. `audio(turn)` gives a built turn's samples.
pub fn compose(
    call: &Call,
    defaults: &Defaults,
    mut audio: impl FnMut(usize) -> Option<Vec<i16>>,
) -> Result<CallerAudio, ComposeError> {
    let mut pcm: Vec<i16> = Vec::new();
    let mut spans = Vec::new();
    let mut dtmf = None;
    for (i, t) in call.turns.iter().enumerate() {
        let kind = t.kind().map_err(|_| ComposeError::NoAction {
            call: call.id.clone(),
            turn: i,
        })?;
        let now = ms_of(pcm.len());
        let start = match t.at_ms {
            Some(at) if at < now => {
                return Err(ComposeError::Overlap {
                    call: call.id.clone(),
                    turn: i,
                    at_ms: at,
                    prev_end_ms: now,
                })
            }
            Some(at) => at,
            None => match kind {
                // A silence turn is its own pause.
                TurnKind::Silence => now,
                _ => now + t.pause_ms.unwrap_or(defaults.pause_ms),
            },
        };
        pcm.resize(samples(start), 0);
        let (name, awaits) = match kind {
            TurnKind::Say | TurnKind::Wav | TurnKind::Noise => {
                let a = audio(i).ok_or_else(|| ComposeError::NotBuilt {
                    call: call.id.clone(),
                    turn: i,
                })?;
                pcm.extend_from_slice(&a);
                match kind {
                    TurnKind::Say => ("say", true),
                    TurnKind::Wav => ("wav", true),
                    _ => ("noise", false),
                }
            }
            TurnKind::Silence => {
                pcm.resize(pcm.len() + samples(t.silence_ms.unwrap_or(0)), 0);
                ("silence", false)
            }
            TurnKind::Dtmf => {
                let keys = t.dtmf.clone().unwrap_or_default();
                let n = u32::try_from(keys.len()).unwrap_or(u32::MAX);
                pcm.resize(
                    pcm.len() + samples(n.saturating_mul(DTMF_DIGIT_MS + DTMF_GAP_MS)),
                    0,
                );
                dtmf = Some((start, keys));
                ("dtmf", true)
            }
        };
        spans.push(TurnSpan {
            turn: i,
            kind: name.to_owned(),
            start_ms: start,
            end_ms: ms_of(pcm.len()),
            awaits_reply: awaits,
        });
    }
    Ok(CallerAudio { pcm, spans, dtmf })
}

/// 20 ms frame levels (RMS) of what the caller heard.
pub fn frame_levels(heard: &[i16]) -> Vec<f64> {
    heard.chunks(samples(20)).map(crate::render::rms).collect()
}

/// A frame louder than this is the bot talking (silence and G.711 idle
/// noise stay far below).
pub const LOUD: f64 = 300.0;

/// The first reply onset at or after `from_ms` and before `until_ms`: a
/// loud frame after a quiet one, in ms from the answer. Audio the bot was
/// already playing at `from_ms` is not a reply to this turn.
pub fn reply_onset(levels: &[f64], from_ms: u32, until_ms: Option<u32>) -> Option<u32> {
    let from = (from_ms / 20) as usize;
    let until = until_ms.map_or(levels.len(), |u| ((u / 20) as usize).min(levels.len()));
    if from >= until {
        return None;
    }
    let f = (from.max(1)..until).find(|&f| levels[f] > LOUD && levels[f - 1] <= LOUD)?;
    Some(u32::try_from(f * 20).unwrap_or(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn call(yaml_turns: &str) -> (Call, Defaults) {
        let y = format!(
            "name: t\ntenant: a\nflow: f.json\ndefaults: {{did: \"1\", pause_ms: 500}}\ncalls:\n  - id: c\n    turns:\n{yaml_turns}"
        );
        let m = Manifest::parse(&y, "m").unwrap();
        (m.calls[0].clone(), m.defaults)
    }

    #[test]
    fn turns_are_laid_out_with_pauses_keys_and_barge_in_offsets() {
        let (c, d) = call(
            "      - say: hello\n      - silence_ms: 1000\n      - dtmf: \"12\"\n      - say: stop\n        at_ms: 5000\n",
        );
        let a = compose(&c, &d, |_| Some(vec![1000; 8000])).unwrap();
        let s: Vec<(u32, u32)> = a.spans.iter().map(|s| (s.start_ms, s.end_ms)).collect();
        assert_eq!(s, [(500, 1500), (1500, 2500), (3000, 3560), (5000, 6000)]);
        assert_eq!(a.dtmf, Some((3000, "12".into())));
        assert_eq!(a.pcm.len(), 6000 * 8);
        assert!(a.spans[0].awaits_reply && !a.spans[1].awaits_reply);
    }

    #[test]
    fn a_barge_in_before_the_previous_turn_ends_is_refused() {
        let (c, d) = call("      - say: hello\n      - say: stop\n        at_ms: 700\n");
        let e = compose(&c, &d, |_| Some(vec![0; 8000])).unwrap_err();
        assert!(matches!(e, ComposeError::Overlap { turn: 1, .. }), "{e}");
        let e = compose(&c, &d, |_| None).unwrap_err();
        assert!(matches!(e, ComposeError::NotBuilt { turn: 0, .. }));
    }

    #[test]
    fn the_reply_onset_is_the_first_quiet_to_loud_edge() {
        let mut l = vec![0.0; 100];
        l[10..20].iter_mut().for_each(|x| *x = 2000.0);
        l[50..60].iter_mut().for_each(|x| *x = 2000.0);
        assert_eq!(reply_onset(&l, 0, None), Some(200));
        assert_eq!(
            reply_onset(&l, 300, None),
            Some(1000),
            "skips the prompt still playing"
        );
        assert_eq!(reply_onset(&l, 300, Some(900)), None);
        assert_eq!(reply_onset(&l, 1300, None), None);
    }
}
