//! The espeak-ng TTS engine: real speech, chunked at the requested rate,
//! and cancellation.

use std::time::Duration;

use voxgate_gateway::audio::SayConfig;
use voxgate_stt_tts::espeak::EspeakTts;
use voxgate_stt_tts::tts::{TtsEngine, TtsRequest};
use voxgate_stt_tts::EngineError;

fn request(text: &str, rate: u32) -> TtsRequest {
    TtsRequest {
        text: text.into(),
        voice: None,
        language: Some("en-US".into()),
        sample_rate: rate,
    }
}

#[tokio::test]
async fn speech_comes_in_chunks_at_the_requested_rate() {
    let tts = EspeakTts::new(SayConfig::default(), 100);
    for rate in [8_000u32, 16_000] {
        let mut stream = tts.synthesize(request("Thank you for calling voxgate.", rate));
        assert_eq!(stream.sample_rate(), rate);
        let mut chunks = Vec::new();
        while let Some(c) = tokio::time::timeout(Duration::from_secs(20), stream.next_chunk())
            .await
            .expect("in time")
        {
            chunks.push(c.expect("chunk"));
        }
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        let per = rate as usize / 10;
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.seq as usize, i);
            assert_eq!(c.sample_rate, rate);
            if i + 1 < chunks.len() {
                assert_eq!(c.samples.len(), per, "chunk {i}");
            } else {
                assert!(!c.samples.is_empty() && c.samples.len() <= per);
            }
        }
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        let seconds = total as f64 / rate as f64;
        assert!((1.0..6.0).contains(&seconds), "{seconds} s");
        let peak = chunks
            .iter()
            .flat_map(|c| &c.samples)
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!(peak > 3_000, "speech, not silence: peak {peak}");
    }
}

#[tokio::test]
async fn cancel_and_drop_stop_at_once() {
    let tts = EspeakTts::default();
    let text =
        "This is a long announcement that goes on and on so that it has many chunks to cancel.";
    let mut stream = tts.synthesize(request(text, 16_000));
    assert!(stream.next_chunk().await.expect("first").is_ok());
    stream.cancel();
    assert!(stream.next_chunk().await.is_none());
    // Dropping mid-render is fine too (espeak-ng is killed on drop).
    drop(tts.synthesize(request(text, 16_000)));
}

#[tokio::test]
async fn bad_requests_are_typed() {
    let tts = EspeakTts::default();
    let mut s = tts.synthesize(request("hi", 50));
    assert!(matches!(
        s.next_chunk().await,
        Some(Err(EngineError::InvalidRequest { .. }))
    ));
    let mut s = tts.synthesize(TtsRequest {
        voice: Some("../etc".into()),
        ..request("hi", 8000)
    });
    match s.next_chunk().await {
        Some(Err(e @ EngineError::Synthesis(_))) => assert!(!e.retryable()),
        other => panic!("{other:?}"),
    }
    let mut s = tts.synthesize(request("   ", 8000));
    assert!(
        s.next_chunk().await.is_none(),
        "blank text is an empty stream"
    );
    let missing = EspeakTts::new(
        SayConfig {
            binary: "/nonexistent/espeak-ng".into(),
            ..SayConfig::default()
        },
        100,
    );
    let mut s = missing.synthesize(request("hello", 8000));
    match s.next_chunk().await {
        Some(Err(e)) => assert_eq!(e.blame(), voxgate_stt_tts::Blame::Provider),
        other => panic!("{other:?}"),
    }
}
