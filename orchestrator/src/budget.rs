//! Latency budgets and provider circuit breakers, sans-IO.
//!
//! A [`TurnBudget`] holds deadlines on the first useful output of each
//! stage of one caller turn: the STT final after end of speech, the first
//! NLU/LLM token, the first TTS byte, and the whole turn (end of speech →
//! first reply audio out). Each stage has a soft threshold (play a filler,
//! once per turn) and a hard one (leave the node through its fallback,
//! with the reason recorded). A provider that errors, disconnects, or
//! stalls mid-stream also takes the fallback.
//!
//! Timers are data: a [`Timer`] enum in a deadline table. The driver calls
//! [`TurnBudget::poll_timeout`], sleeps until then, and calls
//! [`TurnBudget::handle_timeout`]; a fallback fires at the hard deadline
//! itself, so the only lateness left is the driver's scheduling.
//!
//! A [`CircuitBreaker`] per (tenant, provider) counts breaches and errors
//! in a sliding window; at the limit it opens for a cool-down, during
//! which new calls skip the AI node and take its fallback, then lets a few
//! probe calls through half-open. [`BreakerRegistry`] shares them across
//! calls.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

mod breaker;
pub use breaker::{
    Admission, Admitted, BreakerConfig, BreakerRegistry, BreakerSnapshot, BreakerState,
    BreakerStatus, CircuitBreaker, ProviderKey,
};

/// A stage with a latency budget.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// End of speech → STT final.
    SttFinal,
    /// Transcript sent → first NLU/LLM token (or the result).
    NluFirstToken,
    /// Reply text sent → first TTS audio.
    TtsFirstByte,
    /// End of speech → first reply audio out to the caller.
    Turn,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::SttFinal => "stt_final",
            Stage::NluFirstToken => "nlu_first_token",
            Stage::TtsFirstByte => "tts_first_byte",
            Stage::Turn => "turn",
        }
    }
}

/// The engines the orchestrator calls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Stt,
    Nlu,
    Tts,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Stt => "stt",
            Provider::Nlu => "nlu",
            Provider::Tts => "tts",
        }
    }
}

/// Soft and hard limits of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Threshold {
    /// Past this a filler plays (once per turn); `None`: no filler.
    pub soft_ms: Option<u64>,
    /// Past this the node takes its fallback.
    pub hard_ms: u64,
}

/// Which fallback edge a hard breach takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// `fallback_dtmf`: the caller continues on a keypad menu.
    Dtmf,
    /// `fallback_agent`: the caller goes to a person.
    Agent,
}

impl Fallback {
    /// The node outcome (edge name).
    pub fn outcome(self) -> &'static str {
        match self {
            Fallback::Dtmf => "fallback_dtmf",
            Fallback::Agent => "fallback_agent",
        }
    }
}

/// Budgets of every stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BudgetConfig {
    pub stt_final: Threshold,
    pub nlu_first_token: Threshold,
    pub tts_first_byte: Threshold,
    pub turn: Threshold,
    /// A streaming provider silent this long mid-stream has stalled.
    pub stall_ms: u64,
    /// The edge taken on a hard breach, an error or a stall.
    pub fallback: Fallback,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            stt_final: Threshold {
                soft_ms: None,
                hard_ms: 1_500,
            },
            nlu_first_token: Threshold {
                soft_ms: Some(700),
                hard_ms: 3_000,
            },
            tts_first_byte: Threshold {
                soft_ms: Some(600),
                hard_ms: 2_500,
            },
            turn: Threshold {
                soft_ms: Some(1_200),
                hard_ms: 5_000,
            },
            stall_ms: 3_000,
            fallback: Fallback::Dtmf,
        }
    }
}

impl BudgetConfig {
    pub fn threshold(&self, stage: Stage) -> Threshold {
        match stage {
            Stage::SttFinal => self.stt_final,
            Stage::NluFirstToken => self.nlu_first_token,
            Stage::TtsFirstByte => self.tts_first_byte,
            Stage::Turn => self.turn,
        }
    }
}

/// The budget timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Soft(Stage),
    Hard(Stage),
    /// No progress from a streaming provider.
    Stall(Provider),
}

/// Why the node gave up on the AI path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FallbackReason {
    Deadline {
        stage: Stage,
        elapsed_ms: u64,
        hard_ms: u64,
    },
    ProviderError {
        provider: Provider,
        error: String,
        retryable: bool,
    },
    Stall {
        provider: Provider,
        silent_ms: u64,
    },
    CircuitOpen {
        provider: Provider,
        retry_in_ms: u64,
    },
}

impl FallbackReason {
    /// A short code for `ai.reason`.
    pub fn code(&self) -> String {
        match self {
            FallbackReason::Deadline { stage, .. } => format!("deadline_{}", stage.name()),
            FallbackReason::ProviderError { provider, .. } => format!("{}_error", provider.name()),
            FallbackReason::Stall { provider, .. } => format!("{}_stall", provider.name()),
            FallbackReason::CircuitOpen { provider, .. } => {
                format!("{}_circuit_open", provider.name())
            }
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackReason::Deadline {
                stage,
                elapsed_ms,
                hard_ms,
            } => {
                write!(
                    f,
                    "{} took {elapsed_ms} ms >= hard {hard_ms} ms",
                    stage.name()
                )
            }
            FallbackReason::ProviderError {
                provider, error, ..
            } => write!(f, "{} failed: {error}", provider.name()),
            FallbackReason::Stall {
                provider,
                silent_ms,
            } => write!(f, "{} silent for {silent_ms} ms", provider.name()),
            FallbackReason::CircuitOpen {
                provider,
                retry_in_ms,
            } => {
                write!(
                    f,
                    "{} circuit open, retry in {retry_in_ms} ms",
                    provider.name()
                )
            }
        }
    }
}

/// A fallback decision: the edge and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FallbackDecision {
    pub fallback: Fallback,
    pub reason: FallbackReason,
}

impl fmt::Display for FallbackDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.reason, self.fallback.outcome())
    }
}

/// What a budget reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetEvent {
    /// Play a filler now ("one moment…"); at most once per turn.
    Filler { stage: Stage, elapsed_ms: u64 },
    /// Leave the node through the fallback. Nothing follows.
    Fallback(FallbackDecision),
}

/// The budget of one caller turn (and of the providers during it).
#[derive(Debug)]
pub struct TurnBudget {
    config: BudgetConfig,
    deadlines: BTreeMap<Timer, Instant>,
    started: BTreeMap<Stage, Instant>,
    last_progress: BTreeMap<Provider, Instant>,
    filler_played: bool,
    spent: bool,
    events: VecDeque<BudgetEvent>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl TurnBudget {
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            deadlines: BTreeMap::new(),
            started: BTreeMap::new(),
            last_progress: BTreeMap::new(),
            filler_played: false,
            spent: false,
            events: VecDeque::new(),
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// New thresholds, for the clocks started from now on (the caller
    /// calls it between turns).
    pub fn set_config(&mut self, config: BudgetConfig) {
        self.config = config;
    }

    /// Starts a new caller turn: clears every stage and allows one filler.
    /// A fallback already taken stays taken.
    pub fn begin_turn(&mut self) {
        self.deadlines.retain(|t, _| matches!(t, Timer::Stall(_)));
        self.started.clear();
        self.filler_played = false;
    }

    /// Whether the fallback was taken.
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    /// Starts the clock of `stage`.
    pub fn handle_start(&mut self, now: Instant, stage: Stage) {
        if self.spent {
            return;
        }
        let th = self.config.threshold(stage);
        self.started.insert(stage, now);
        if let Some(soft) = th.soft_ms.filter(|s| *s < th.hard_ms) {
            self.deadlines
                .insert(Timer::Soft(stage), now + Duration::from_millis(soft));
        }
        self.deadlines
            .insert(Timer::Hard(stage), now + Duration::from_millis(th.hard_ms));
    }

    /// `stage` produced its first useful output; returns how long it took.
    pub fn handle_done(&mut self, now: Instant, stage: Stage) -> Option<Duration> {
        self.deadlines.remove(&Timer::Soft(stage));
        self.deadlines.remove(&Timer::Hard(stage));
        self.started
            .remove(&stage)
            .map(|t| now.saturating_duration_since(t))
    }

    /// Watches a streaming provider for stalls from `now` on.
    pub fn handle_stream_open(&mut self, now: Instant, provider: Provider) {
        self.handle_progress(now, provider);
    }

    /// The provider delivered something.
    pub fn handle_progress(&mut self, now: Instant, provider: Provider) {
        if self.spent {
            return;
        }
        self.last_progress.insert(provider, now);
        self.deadlines.insert(
            Timer::Stall(provider),
            now + Duration::from_millis(self.config.stall_ms),
        );
    }

    /// The provider's stream ended normally; stop watching it.
    pub fn handle_stream_closed(&mut self, provider: Provider) {
        self.last_progress.remove(&provider);
        self.deadlines.remove(&Timer::Stall(provider));
    }

    /// The provider failed or disconnected: take the fallback at once.
    pub fn handle_provider_error(
        &mut self,
        _now: Instant,
        provider: Provider,
        error: &voxgate_stt_tts::EngineError,
    ) {
        self.fall_back(FallbackReason::ProviderError {
            provider,
            error: error.to_string(),
            retryable: error.retryable(),
        });
    }

    fn fall_back(&mut self, reason: FallbackReason) {
        if self.spent {
            return;
        }
        self.spent = true;
        self.deadlines.clear();
        self.events
            .push_back(BudgetEvent::Fallback(FallbackDecision {
                fallback: self.config.fallback,
                reason,
            }));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// The timer table's entry for `timer`, for records and tests.
    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(&timer).copied()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, Timer)> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*at, *t))
            .collect();
        due.sort();
        for (_, timer) in due {
            if self.spent {
                return;
            }
            self.deadlines.remove(&timer);
            match timer {
                Timer::Soft(stage) => {
                    if !self.filler_played {
                        self.filler_played = true;
                        let elapsed_ms = self
                            .started
                            .get(&stage)
                            .map_or(0, |t| ms(now.saturating_duration_since(*t)));
                        self.events
                            .push_back(BudgetEvent::Filler { stage, elapsed_ms });
                    }
                }
                Timer::Hard(stage) => {
                    let elapsed_ms = self
                        .started
                        .get(&stage)
                        .map_or(0, |t| ms(now.saturating_duration_since(*t)));
                    let hard_ms = self.config.threshold(stage).hard_ms;
                    self.fall_back(FallbackReason::Deadline {
                        stage,
                        elapsed_ms,
                        hard_ms,
                    });
                }
                Timer::Stall(provider) => {
                    let silent_ms = self
                        .last_progress
                        .get(&provider)
                        .map_or(0, |t| ms(now.saturating_duration_since(*t)));
                    self.fall_back(FallbackReason::Stall {
                        provider,
                        silent_ms,
                    });
                }
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<BudgetEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
