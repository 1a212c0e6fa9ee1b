//! `voxgate eval build`: turns a manifest's text turns into 8 kHz WAVs
//! with espeak-ng, mixes noise at the stated SNR with sox, and brings
//! recorded WAV turns to 8 kHz mono. Output goes to `SET/.build/`.
//!
//! Reproducible: each file is named after a hash of everything that makes
//! it (text, voice, rate, noise kind, SNR, seed, source file contents), so
//! an up-to-date file is skipped and a changed turn gets a new file. sox
//! runs with `-R` (repeatable: fixed internal seed); the noise seed picks
//! where in a longer repeatable noise run the turn's noise is cut from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, Noise, Turn, TurnKind};

/// The sample rate of every built file: the call's G.711 rate.
pub const RATE: u32 = 8_000;
/// The folder, inside the set, that holds built audio (gitignored).
pub const BUILD_DIR: &str = ".build";
/// The speech level a `noise_ms` turn's SNR is measured against (-20 dBFS).
const REFERENCE_RMS: f64 = 3_277.0;
/// Bump when the rendering recipe changes, so old files are rebuilt.
const RECIPE: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot run {tool}: {source} (install it with `make deps`)")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} failed for call {call}, turn {turn}: {stderr}")]
    Tool {
        tool: &'static str,
        call: String,
        turn: usize,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a readable WAV: {source}")]
    Wav { path: String, source: hound::Error },
}

/// What one turn needs built.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderJob {
    pub call: String,
    pub turn: usize,
    pub output: PathBuf,
    pub recipe: Recipe,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    Speak {
        text: String,
        voice: String,
        rate: u32,
        noise: Option<Noise>,
    },
    Convert {
        source: PathBuf,
        noise: Option<Noise>,
    },
    NoiseOnly {
        ms: u32,
        noise: Noise,
    },
}

/// What `build` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildSummary {
    pub built: usize,
    pub up_to_date: usize,
}

/// The file a turn's audio is built to, or `None` for turns with no audio
/// (silence, DTMF). Pure apart from hashing a WAV turn's source file.
pub fn job_for(set_dir: &Path, m: &Manifest, call: &str, i: usize, t: &Turn) -> Option<RenderJob> {
    let (recipe, key) = match t.kind().ok()? {
        TurnKind::Say => {
            let text = t.say.clone()?;
            let voice = t.voice.clone().unwrap_or_else(|| m.defaults.voice.clone());
            let rate = t.rate.unwrap_or(m.defaults.rate);
            let key = format!("say|{text}|{voice}|{rate}|{}", noise_key(&t.noise));
            let noise = t.noise.clone();
            (
                Recipe::Speak {
                    text,
                    voice,
                    rate,
                    noise,
                },
                key,
            )
        }
        TurnKind::Wav => {
            let source = set_dir.join(t.wav.as_deref()?);
            let content = std::fs::read(&source).unwrap_or_default();
            let key = format!(
                "wav|{}|{}",
                hex(&Sha256::digest(&content)),
                noise_key(&t.noise)
            );
            (
                Recipe::Convert {
                    source,
                    noise: t.noise.clone(),
                },
                key,
            )
        }
        TurnKind::Noise => {
            let ms = t.noise_ms?;
            let noise = t.noise.clone()?;
            let key = format!("noise|{ms}|{}", noise_key(&Some(noise.clone())));
            (Recipe::NoiseOnly { ms, noise }, key)
        }
        TurnKind::Dtmf | TurnKind::Silence => return None,
    };
    let digest = hex(&Sha256::digest(format!("{RECIPE}|{key}").as_bytes()));
    Some(RenderJob {
        call: call.to_owned(),
        turn: i,
        output: set_dir
            .join(BUILD_DIR)
            .join(format!("{call}-t{i}-{}.wav", &digest[..12])),
        recipe,
    })
}

/// Every job of the set, in manifest order.
pub fn plan(set_dir: &Path, m: &Manifest) -> Vec<RenderJob> {
    m.calls
        .iter()
        .flat_map(|c| {
            c.turns
                .iter()
                .enumerate()
                .filter_map(|(i, t)| job_for(set_dir, m, &c.id, i, t))
        })
        .collect()
}

fn noise_key(n: &Option<Noise>) -> String {
    match n {
        Some(n) => format!("{}|{}|{}", n.kind.sox_name(), n.snr_db, n.seed),
        None => "clean".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds what is missing; files already there are up to date by name.
pub fn build(set_dir: &Path, m: &Manifest) -> Result<BuildSummary, RenderError> {
    let dir = set_dir.join(BUILD_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| RenderError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut summary = BuildSummary::default();
    for job in plan(set_dir, m) {
        if job.output.exists() {
            summary.up_to_date += 1;
            continue;
        }
        render(&job)?;
        summary.built += 1;
    }
    Ok(summary)
}

fn render(job: &RenderJob) -> Result<(), RenderError> {
    let tmp = job.output.with_extension("tmp.wav");
    let clean = job.output.with_extension("clean.wav");
    let result = (|| match &job.recipe {
        Recipe::Speak {
            text,
            voice,
            rate,
            noise,
        } => {
            run(
                job,
                "espeak-ng",
                Command::new("espeak-ng")
                    .args(["-v", voice, "-s", &rate.to_string(), "-w"])
                    .arg(&tmp)
                    .arg("--")
                    .arg(text),
            )?;
            to_call_rate(job, &tmp, &clean)?;
            finish(job, &clean, noise.as_ref())
        }
        Recipe::Convert { source, noise } => {
            to_call_rate(job, source, &clean)?;
            finish(job, &clean, noise.as_ref())
        }
        Recipe::NoiseOnly { ms, noise } => {
            let gain = REFERENCE_RMS / 10f64.powf(noise.snr_db / 20.0);
            make_noise(job, noise, *ms, &tmp)?;
            let rms = rms_of(&tmp)?;
            scale(job, &tmp, gain / rms.max(1.0), &job.output)
        }
    })();
    for p in [&tmp, &clean] {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// Mixes noise under `clean` at the SNR, or moves it into place.
fn finish(job: &RenderJob, clean: &Path, noise: Option<&Noise>) -> Result<(), RenderError> {
    let Some(noise) = noise else {
        return std::fs::rename(clean, &job.output).map_err(|source| RenderError::Io {
            path: job.output.display().to_string(),
            source,
        });
    };
    let samples = wav_len(clean)?;
    let ms = u32::try_from(samples * 1000 / u64::from(RATE)).unwrap_or(u32::MAX);
    let noise_file = job.output.with_extension("noise.wav");
    make_noise(job, noise, ms, &noise_file)?;
    let speech_rms = rms_of(clean)?;
    let noise_rms = rms_of(&noise_file)?.max(1.0);
    let gain = speech_rms / (noise_rms * 10f64.powf(noise.snr_db / 20.0));
    let out = run(
        job,
        "sox",
        Command::new("sox")
            .args(["-R", "-m", "-v", "1"])
            .arg(clean)
            .args(["-v", &format!("{gain:.6}")])
            .arg(&noise_file)
            .args(["-b", "16"])
            .arg(&job.output),
    );
    let _ = std::fs::remove_file(&noise_file);
    out
}

/// `ms` of noise, cut from a repeatable run at an offset the seed picks.
fn make_noise(job: &RenderJob, noise: &Noise, ms: u32, out: &Path) -> Result<(), RenderError> {
    let offset_ms = (noise.seed % 1000) * 37;
    let total = f64::from(offset_ms + ms) / 1000.0;
    run(
        job,
        "sox",
        Command::new("sox")
            .args(["-R", "-n", "-r", &RATE.to_string(), "-c", "1", "-b", "16"])
            .arg(out)
            .args([
                "synth",
                &format!("{total:.3}"),
                noise.kind.sox_name(),
                "trim",
                &format!("{:.3}", f64::from(offset_ms) / 1000.0),
            ]),
    )
}

fn to_call_rate(job: &RenderJob, input: &Path, out: &Path) -> Result<(), RenderError> {
    run(
        job,
        "sox",
        Command::new("sox")
            .arg("-R")
            .arg(input)
            .args(["-r", &RATE.to_string(), "-c", "1", "-b", "16"])
            .arg(out),
    )
}

fn scale(job: &RenderJob, input: &Path, gain: f64, out: &Path) -> Result<(), RenderError> {
    run(
        job,
        "sox",
        Command::new("sox")
            .args(["-R", "-v", &format!("{gain:.6}")])
            .arg(input)
            .arg(out),
    )
}

fn run(job: &RenderJob, tool: &'static str, cmd: &mut Command) -> Result<(), RenderError> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| RenderError::Spawn { tool, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RenderError::Tool {
            tool,
            call: job.call.clone(),
            turn: job.turn,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Reads a built WAV: 8 kHz mono 16-bit samples.
pub fn read_pcm(path: &Path) -> Result<Vec<i16>, RenderError> {
    let shown = || path.display().to_string();
    let mut r = hound::WavReader::open(path).map_err(|source| RenderError::Wav {
        path: shown(),
        source,
    })?;
    r.samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| RenderError::Wav {
            path: shown(),
            source,
        })
}

fn wav_len(path: &Path) -> Result<u64, RenderError> {
    Ok(read_pcm(path)?.len() as u64)
}

fn rms_of(path: &Path) -> Result<f64, RenderError> {
    Ok(rms(&read_pcm(path)?))
}

/// Root mean square of 16-bit samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SET: &str = r#"
name: t
tenant: acme
flow: flow.json
defaults: {did: "5000"}
calls:
  - id: a
    turns:
      - say: what is my balance
        noise: {kind: pink, snr_db: 5, seed: 2}
      - silence_ms: 500
      - noise_ms: 600
        noise: {snr_db: 0}
"#;

    #[test]
    fn file_names_are_stable_and_change_with_the_recipe() {
        let m = Manifest::parse(SET, "m").unwrap();
        let p1 = plan(Path::new("/s"), &m);
        assert_eq!(p1.len(), 2, "silence needs no file");
        assert_eq!(p1, plan(Path::new("/s"), &m));
        let m2 = Manifest::parse(&SET.replace("snr_db: 5", "snr_db: 6"), "m").unwrap();
        let p2 = plan(Path::new("/s"), &m2);
        assert_ne!(p1[0].output, p2[0].output);
        assert_eq!(p1[1].output, p2[1].output);
        assert!(p1[0].output.starts_with("/s/.build"));
    }

    /// Real espeak-ng and sox: the noisy turn is built at about the SNR
    /// asked for, a rebuild skips it, and the same recipe gives the same
    /// bytes.
    #[test]
    fn builds_with_espeak_and_sox_reproducibly() {
        let dir = std::env::temp_dir().join(format!("voxgate-render-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let m = Manifest::parse(SET, "m").unwrap();
        let s = build(&dir, &m).unwrap();
        assert_eq!(
            s,
            BuildSummary {
                built: 2,
                up_to_date: 0
            }
        );
        let jobs = plan(&dir, &m);
        let first = std::fs::read(&jobs[0].output).unwrap();
        let pcm = read_pcm(&jobs[0].output).unwrap();
        assert!(pcm.len() > 4_000, "about a second of speech at 8 kHz");
        assert_eq!(
            build(&dir, &m).unwrap(),
            BuildSummary {
                built: 0,
                up_to_date: 2
            }
        );
        std::fs::remove_file(&jobs[0].output).unwrap();
        build(&dir, &m).unwrap();
        assert_eq!(
            std::fs::read(&jobs[0].output).unwrap(),
            first,
            "reproducible"
        );
        // Noise only at 0 dB against the -20 dBFS reference.
        let noise = rms(&read_pcm(&jobs[1].output).unwrap());
        assert!(
            (noise / REFERENCE_RMS - 1.0).abs() < 0.1,
            "noise rms {noise}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
