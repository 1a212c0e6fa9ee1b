//! Runs the interpreter on a live call: the thin async driver over the
//! sans-IO [`Interpreter`].
//!
//! Each [`Action`] is carried out on the [`CallHandle`]; its result goes
//! back to the interpreter with the time it finished. Keys the caller
//! presses while a prompt plays are kept (type-ahead) for the next input
//! step, so nothing the caller does is lost.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant as TokioInstant;
use voxgate_gateway::call::{
    BoxFuture, CallEvent, CallHandle, PlaybackSource, TransferError,
    TransferMode as CallTransferMode, TransferOutcome, TransferRequest,
};
use voxgate_gateway::clock;

use crate::http_client::FlowHttpClient;
use crate::interpreter::{Action, ActionResult, Interpreter, PromptAction};
use crate::model::{AiNode, TransferMode};
use crate::validate::HttpAllowList;

/// Audio prompts fetched from URLs are refused above this size.
const MAX_AUDIO_BYTES: usize = 16 << 20;

/// Runs an `ai` node. The orchestrator implements it; until one is
/// configured, [`UnavailableAi`] takes the node's fallback.
pub trait AiRunner: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        call: &'a mut CallHandle,
        node: &'a str,
        params: &'a AiNode,
        variables: &'a BTreeMap<String, Value>,
    ) -> BoxFuture<'a, ActionResult>;
}

/// The AI runner used when no AI engine is configured: the node takes its
/// DTMF fallback (or its agent fallback), with the reason recorded, so the
/// caller is never left waiting.
pub struct UnavailableAi;

impl AiRunner for UnavailableAi {
    fn run<'a>(
        &'a self,
        _call: &'a mut CallHandle,
        _node: &'a str,
        _params: &'a AiNode,
        _variables: &'a BTreeMap<String, Value>,
    ) -> BoxFuture<'a, ActionResult> {
        Box::pin(async {
            ActionResult::Ai {
                outcome: "fallback_dtmf".into(),
                variables: BTreeMap::from([(
                    "ai.reason".to_string(),
                    Value::from("ai_unavailable"),
                )]),
                records: Vec::new(),
            }
        })
    }
}

/// What the driver needs besides the call.
#[derive(Clone)]
pub struct FlowEnv {
    pub http: FlowHttpClient,
    /// Tenant prompt files live in `prompts_dir/<tenant>/`.
    pub prompts_dir: PathBuf,
    /// Where prompts downloaded from URLs are kept.
    pub cache_dir: PathBuf,
    pub ai: Arc<dyn AiRunner>,
}

/// The tenant facts the driver applies.
#[derive(Clone, Debug)]
pub struct TenantRuntime {
    pub tenant: String,
    pub flow_id: String,
    pub version: u32,
    pub http: HttpAllowList,
}

/// Runs `interp` on `call` until the call leaves the flow. `on_step` is
/// called after every result, for live views.
pub async fn run(
    call: &mut CallHandle,
    interp: &mut Interpreter,
    env: &FlowEnv,
    tenant: &TenantRuntime,
    mut on_step: impl FnMut(&Interpreter),
) {
    let mut typeahead: VecDeque<char> = VecDeque::new();
    while let Some(action) = interp.poll_action() {
        let result = perform(call, &action, env, tenant, &mut typeahead).await;
        interp.handle_result(clock::now(), result);
        on_step(interp);
    }
}

async fn perform(
    call: &mut CallHandle,
    action: &Action,
    env: &FlowEnv,
    tenant: &TenantRuntime,
    typeahead: &mut VecDeque<char>,
) -> ActionResult {
    match action {
        Action::Say { text, voice, .. } => {
            let source = PlaybackSource::Say {
                text: text.clone(),
                voice: voice.clone(),
                rate_wpm: None,
            };
            play(call, source, typeahead).await
        }
        Action::Play { audio } => match audio_source(audio, env, tenant).await {
            Ok(source) => play(call, source, typeahead).await,
            Err(reason) => ActionResult::Failed { reason },
        },
        Action::Collect {
            prompt,
            max_digits,
            terminator,
            first_digit_timeout,
            inter_digit_timeout,
        } => {
            let source = match prompt {
                None => None,
                Some(PromptAction::Say { text, voice, .. }) => Some(PlaybackSource::Say {
                    text: text.clone(),
                    voice: voice.clone(),
                    rate_wpm: None,
                }),
                Some(PromptAction::Play { audio }) => {
                    match audio_source(audio, env, tenant).await {
                        Ok(s) => Some(s),
                        Err(reason) => return ActionResult::Failed { reason },
                    }
                }
            };
            let spec = Collect {
                max_digits: (*max_digits).max(1) as usize,
                terminator: *terminator,
                first_digit_timeout: *first_digit_timeout,
                inter_digit_timeout: *inter_digit_timeout,
            };
            collect(call, source, &spec, typeahead).await
        }
        Action::Http(request) => env.http.execute(request, &tenant.http).await,
        Action::Transfer {
            mode,
            target,
            headers,
            timeout,
        } => {
            let mut headers = headers.clone();
            headers.push((
                "X-Voxgate-Flow".into(),
                format!("{}/{}@{}", tenant.tenant, tenant.flow_id, tenant.version),
            ));
            let request = TransferRequest {
                mode: match mode {
                    TransferMode::Blind => CallTransferMode::Blind,
                    TransferMode::Bridged => CallTransferMode::Bridged,
                },
                target: target.clone(),
                headers,
                timeout: *timeout,
            };
            match call.transfer(request).await {
                Ok(TransferOutcome::Referred | TransferOutcome::Bridged { .. }) => {
                    ActionResult::Transferred
                }
                Err(TransferError::CallGone) => ActionResult::CallerHungUp,
                Err(e @ TransferError::NoAnswer) => ActionResult::TransferFailed {
                    no_answer: true,
                    reason: e.to_string(),
                },
                Err(e) => ActionResult::TransferFailed {
                    no_answer: false,
                    reason: e.to_string(),
                },
            }
        }
        Action::Ai {
            node,
            params,
            variables,
        } => env.ai.run(call, node, params, variables).await,
        Action::Hangup { .. } => {
            call.hangup();
            ActionResult::Done
        }
    }
}

/// Plays to the end, keeping keys pressed meanwhile as type-ahead.
async fn play(
    call: &mut CallHandle,
    source: PlaybackSource,
    typeahead: &mut VecDeque<char>,
) -> ActionResult {
    match call.play(source).await {
        Ok(digits) => {
            typeahead.extend(digits.iter().map(|d| d.digit));
            ActionResult::Done
        }
        Err(voxgate_gateway::call::CallError::Ended) => ActionResult::CallerHungUp,
        Err(e) => ActionResult::Failed {
            reason: e.to_string(),
        },
    }
}

async fn audio_source(
    audio: &str,
    env: &FlowEnv,
    tenant: &TenantRuntime,
) -> Result<PlaybackSource, String> {
    if audio.contains("://") {
        let name = format!("{:016x}.wav", fnv1a(audio.as_bytes()));
        let path = env.cache_dir.join(&name);
        if tokio::fs::metadata(&path).await.is_err() {
            let bytes = env
                .http
                .fetch_audio(audio, &tenant.http, MAX_AUDIO_BYTES)
                .await?;
            tokio::fs::create_dir_all(&env.cache_dir)
                .await
                .map_err(|e| format!("audio cache: {e}"))?;
            let tmp = env.cache_dir.join(format!("{name}.part"));
            tokio::fs::write(&tmp, &bytes)
                .await
                .map_err(|e| format!("audio cache: {e}"))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| format!("audio cache: {e}"))?;
        }
        return Ok(PlaybackSource::Wav(path));
    }
    let relative = Path::new(audio);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "{audio}: prompt files are named relative to the tenant's prompt folder"
        ));
    }
    Ok(PlaybackSource::Wav(
        env.prompts_dir.join(&tenant.tenant).join(relative),
    ))
}

/// 64-bit FNV-1a, for cache file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Collect {
    max_digits: usize,
    terminator: Option<char>,
    first_digit_timeout: Duration,
    inter_digit_timeout: Duration,
}

impl Collect {
    /// Adds a key; `true` when input is complete.
    fn push(&self, digits: &mut String, key: char) -> bool {
        if Some(key) == self.terminator {
            return true;
        }
        digits.push(key);
        digits.len() >= self.max_digits
    }
}

/// Plays the prompt, stops it at the first key, and collects keys. The
/// first-key timer starts when the prompt has finished.
async fn collect(
    call: &mut CallHandle,
    prompt: Option<PlaybackSource>,
    spec: &Collect,
    typeahead: &mut VecDeque<char>,
) -> ActionResult {
    let mut digits = String::new();
    while let Some(key) = typeahead.pop_front() {
        if spec.push(&mut digits, key) {
            return ActionResult::Digits { digits };
        }
    }
    let mut playing = None;
    if digits.is_empty() {
        if let Some(source) = prompt {
            match call.start_playback(source) {
                Ok(id) => playing = Some(id),
                Err(e) => {
                    return ActionResult::Failed {
                        reason: e.to_string(),
                    }
                }
            }
        }
    }
    let after = |d: &str| {
        if d.is_empty() {
            spec.first_digit_timeout
        } else {
            spec.inter_digit_timeout
        }
    };
    let mut deadline = playing
        .is_none()
        .then(|| TokioInstant::now() + after(&digits));
    loop {
        let event = match deadline {
            Some(at) => tokio::select! {
                e = call.next_event() => e,
                () = tokio::time::sleep_until(at) => break,
            },
            None => call.next_event().await,
        };
        match event {
            None | Some(CallEvent::Ended { .. }) => return ActionResult::CallerHungUp,
            Some(CallEvent::Dtmf(d)) => {
                if playing.take().is_some() {
                    call.stop_playback();
                }
                if spec.push(&mut digits, d.digit) {
                    return ActionResult::Digits { digits };
                }
                deadline = Some(TokioInstant::now() + spec.inter_digit_timeout);
            }
            Some(CallEvent::PlaybackFinished { id, .. }) if Some(id) == playing => {
                playing = None;
                deadline = Some(TokioInstant::now() + after(&digits));
            }
            Some(_) => {}
        }
    }
    if digits.is_empty() {
        ActionResult::NoInput
    } else {
        ActionResult::Digits { digits }
    }
}

#[cfg(test)]
mod tests;
