//! The envelope against the real call path: espeak-ng speech, 8 kHz
//! G.711 µ-law (the gateway's codec) and the gateway's resampler back to
//! 16 kHz, matched through a script among other utterances.

use std::path::{Path, PathBuf};
use std::process::Command;

use voxgate_gateway::audio::{load_wav_at, resample};
use voxgate_gateway::codec::g711::{ulaw_decode, ulaw_encode};

use super::*;
use crate::simulator::script::{Script, SttLookup};

const UTTERANCES: [&str; 6] = [
    "what is my balance",
    "I want to complain",
    "I would like to speak to an agent please",
    "yes",
    "cancel my order",
    "my card was stolen yesterday evening",
];

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn speak(dir: &Path, i: usize, text: &str) -> PathBuf {
    let path = dir.join(format!("u{i}.wav"));
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng runs")
        .success();
    assert!(ok, "espeak-ng failed for {text:?}");
    path
}

/// What the simulator receives after a call: 8 kHz µ-law, then 16 kHz,
/// with leading and trailing silence as the gateway streams it.
fn through_the_call(path: &Path) -> Vec<i16> {
    let narrow = load_wav_at(path, 8_000).expect("wav");
    let mut line: Vec<i16> = vec![0; 4_000];
    line.extend(narrow.iter().map(|&s| ulaw_decode(ulaw_encode(s))));
    line.extend(std::iter::repeat_n(0, 6_000));
    resample(&line, 8_000, 16_000).expect("resample")
}

#[test]
fn speech_through_g711_matches_its_own_entry_and_no_other() {
    let dir = TempDir(std::env::temp_dir().join(format!("voxgate-env-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let files: Vec<PathBuf> = UTTERANCES
        .iter()
        .enumerate()
        .map(|(i, t)| speak(&dir.0, i, t))
        .collect();
    let entries: Vec<serde_json::Value> = UTTERANCES
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"audio_file": format!("u{i}.wav"), "text": t}))
        .collect();
    let script = serde_json::json!({"stt": {"match": "envelope", "transcripts": entries,
        "default": {"text": "pardon", "confidence": 0.5}}});
    let script = Script::from_json(&script.to_string(), &dir.0).expect("script");

    let originals: Vec<Envelope> = files
        .iter()
        .map(|f| Envelope::of(&load_wav_at(f, 16_000).expect("wav"), 16_000).expect("speech"))
        .collect();
    for (i, file) in files.iter().enumerate() {
        let heard = through_the_call(file);
        let env = Envelope::of(&heard, 16_000).expect("speech survives the codec");
        let scores: Vec<f32> = originals.iter().map(|o| o.similarity(&env)).collect();
        for (j, s) in scores.iter().enumerate() {
            if i == j {
                assert!(*s >= 0.9, "{:?} vs itself: {s}", UTTERANCES[i]);
            } else {
                assert!(
                    *s < scores[i] - 0.2,
                    "{:?} vs {:?}: {s} (own {})",
                    UTTERANCES[i],
                    UTTERANCES[j],
                    scores[i]
                );
            }
        }
        assert_eq!(
            script.stt_lookup(&heard, 16_000, true),
            SttLookup::Found(UTTERANCES[i].to_owned(), 0.9),
            "{:?} scores {scores:?}",
            UTTERANCES[i]
        );
        // Before the end the envelope is not decided.
        assert_eq!(script.stt_lookup(&heard, 16_000, false), SttLookup::Wait);
    }
    let pardon = SttLookup::Found("pardon".into(), 0.5);
    assert_eq!(script.stt_lookup(&[0; 32_000], 16_000, true), pardon);
    assert_eq!(
        script.stt_lookup(&white_noise(48_000), 16_000, true),
        pardon
    );
}

/// Seeded white noise at a speech-like level.
fn white_noise(n: usize) -> Vec<i16> {
    let mut x: u32 = 12_345;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 16) as i16) / 8
        })
        .collect()
}

#[test]
fn silence_and_noise_match_nothing() {
    let silence = vec![0i16; 32_000];
    assert_eq!(Envelope::of(&silence, 16_000), None);
    // No contour to match in steady noise.
    let noise = white_noise(48_000);
    assert_eq!(Envelope::of(&noise, 16_000), None);

    let script = Script::from_json(
        r#"{"stt": {"match": "envelope", "default": {"text": "pardon", "confidence": 0.5}}}"#,
        Path::new("."),
    )
    .expect("script");
    assert_eq!(
        script.stt_lookup(&noise, 16_000, true),
        SttLookup::Found("pardon".into(), 0.5)
    );
}

#[test]
fn durations_far_apart_never_match() {
    let tone = |frames: usize| -> Vec<i16> {
        (0..frames * 320)
            .map(|i| {
                let on = (i / 320) % 7 < 4;
                if on {
                    ((i as f32 * 0.2).sin() * 8_000.0) as i16
                } else {
                    ((i as f32 * 0.2).sin() * 300.0) as i16
                }
            })
            .collect()
    };
    let a = Envelope::of(&tone(50), 16_000).expect("a");
    assert!(a.similarity(&a) > 0.99);
    let b = Envelope::of(&tone(80), 16_000).expect("b");
    assert_eq!(a.similarity(&b), 0.0);
}
