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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Circuit breaker settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Breaches and errors within `window_ms` that open the circuit.
    pub failures: u32,
    pub window_ms: u64,
    /// How long the circuit stays open.
    pub cooldown_ms: u64,
    /// Probe calls let through half-open; that many successes close it.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            window_ms: 60_000,
            cooldown_ms: 30_000,
            probes: 1,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: VecDeque<Instant>,
    },
    Open {
        until: Instant,
    },
    /// `admitted` probes since `since`, `succeeded` of them good.
    HalfOpen {
        since: Instant,
        admitted: u32,
        succeeded: u32,
    },
}

/// Whether a new call may use the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Allowed as a half-open probe: report its result.
    Probe,
    /// Open: skip the AI node and take its fallback.
    Rejected {
        retry_at: Instant,
    },
}

/// One (tenant, provider) circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed {
                failures: VecDeque::new(),
            },
        }
    }

    pub fn state(&self) -> &BreakerState {
        &self.state
    }

    fn cooldown(&self) -> Duration {
        Duration::from_millis(self.config.cooldown_ms)
    }

    /// Asks whether a new call may go through.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return Admission::Rejected { retry_at: until };
            }
            self.state = BreakerState::HalfOpen {
                since: now,
                admitted: 0,
                succeeded: 0,
            };
        }
        let cooldown = self.cooldown();
        match &mut self.state {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::HalfOpen {
                since,
                admitted,
                succeeded,
            } => {
                // Probes that never reported (their call hung up) expire
                // after a cool-down, so the breaker cannot stick half-open.
                if *admitted >= self.config.probes.max(1) && now >= *since + cooldown {
                    *since = now;
                    *admitted = *succeeded;
                }
                if *admitted < self.config.probes.max(1) {
                    *admitted += 1;
                    Admission::Probe
                } else {
                    Admission::Rejected {
                        retry_at: *since + cooldown,
                    }
                }
            }
            BreakerState::Open { until } => Admission::Rejected { retry_at: *until },
        }
    }

    /// A call through the provider went well.
    pub fn handle_success(&mut self, _now: Instant) {
        if let BreakerState::HalfOpen { succeeded, .. } = &mut self.state {
            *succeeded += 1;
            if *succeeded >= self.config.probes.max(1) {
                self.state = BreakerState::Closed {
                    failures: VecDeque::new(),
                };
            }
        }
    }

    /// A breach or an error.
    pub fn handle_failure(&mut self, now: Instant) {
        let window = Duration::from_millis(self.config.window_ms);
        let until = now + self.cooldown();
        match &mut self.state {
            BreakerState::Closed { failures } => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= window)
                {
                    failures.pop_front();
                }
                if failures.len() >= self.config.failures.max(1) as usize {
                    tracing::warn!(failures = failures.len(), "circuit breaker opens");
                    self.state = BreakerState::Open { until };
                }
            }
            BreakerState::HalfOpen { .. } => self.state = BreakerState::Open { until },
            BreakerState::Open { .. } => {}
        }
    }
}

/// Identifies a breaker: one tenant's use of one named provider (`worker`,
/// `deepgram`, …) of an engine kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderKey {
    pub tenant: String,
    pub provider: Provider,
    pub name: String,
}

/// The provider a call was admitted to, for one engine kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub provider: Provider,
    pub name: String,
    pub admission: Admission,
}

/// What a breaker looks like at one instant, for the NOC API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerStatus {
    /// Calls go through; `failures` breaches and errors in the window.
    Closed { failures: u32 },
    /// New calls take the fallback until the cool-down ends.
    Open { retry_in_ms: u64 },
    /// Probe calls are let through; their results decide. A circuit whose
    /// cool-down has ended shows half-open before the first probe arrives,
    /// because that probe is what the next call will be.
    HalfOpen { admitted: u32, succeeded: u32 },
}

impl BreakerStatus {
    /// The value of the `voxgate_ai_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerStatus::Closed { .. } => 0,
            BreakerStatus::HalfOpen { .. } => 1,
            BreakerStatus::Open { .. } => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BreakerStatus::Closed { .. } => "closed",
            BreakerStatus::HalfOpen { .. } => "half_open",
            BreakerStatus::Open { .. } => "open",
        }
    }
}

impl CircuitBreaker {
    /// The state as seen at `now`, without changing it.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        match &self.state {
            BreakerState::Closed { failures } => {
                let window = Duration::from_millis(self.config.window_ms);
                let recent = failures
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < window)
                    .count();
                BreakerStatus::Closed {
                    failures: u32::try_from(recent).unwrap_or(u32::MAX),
                }
            }
            BreakerState::Open { until } if now < *until => BreakerStatus::Open {
                retry_in_ms: ms(until.saturating_duration_since(now)),
            },
            BreakerState::Open { .. } => BreakerStatus::HalfOpen {
                admitted: 0,
                succeeded: 0,
            },
            BreakerState::HalfOpen {
                admitted,
                succeeded,
                ..
            } => BreakerStatus::HalfOpen {
                admitted: *admitted,
                succeeded: *succeeded,
            },
        }
    }

    /// New settings from now on. The state is kept: an open circuit stays
    /// open until the end of the cool-down it opened with, and recorded
    /// failures count against the new limit.
    pub fn set_config(&mut self, config: BreakerConfig) {
        self.config = config;
    }
}

/// One breaker in a [`BreakerRegistry::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerSnapshot {
    pub tenant: String,
    pub provider: Provider,
    pub name: String,
    pub status: BreakerStatus,
}

#[derive(Debug, Default)]
struct Breakers {
    by_key: HashMap<ProviderKey, CircuitBreaker>,
    /// Tenants with settings of their own (their NOC policy's `breaker`).
    configs: HashMap<String, BreakerConfig>,
}

/// The breakers of every (tenant, provider), shared by all calls. The lock
/// is held only for one state change; no call waits on another.
///
/// Each tenant's breakers run with that tenant's settings
/// ([`BreakerRegistry::set_tenant_config`], fed from its NOC policy), and
/// with the registry's default until it has some.
#[derive(Debug, Default)]
pub struct BreakerRegistry {
    config: BreakerConfig,
    inner: Mutex<Breakers>,
}

impl BreakerRegistry {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Breakers::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breakers> {
        // A poisoned lock only means another call panicked mid-update; the
        // breaker data is still a valid state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(
        &self,
        tenant: &str,
        provider: Provider,
        name: &str,
        f: impl FnOnce(&mut CircuitBreaker) -> T,
    ) -> T {
        let key = ProviderKey {
            tenant: tenant.to_string(),
            provider,
            name: name.to_string(),
        };
        let mut inner = self.lock();
        let Breakers { by_key, configs } = &mut *inner;
        let b = by_key.entry(key).or_insert_with(|| {
            CircuitBreaker::new(configs.get(tenant).unwrap_or(&self.config).clone())
        });
        f(b)
    }

    /// Runs `tenant`'s breakers with `config` from now on (`None`: the
    /// registry's default). Breakers keep their state.
    pub fn set_tenant_config(&self, tenant: &str, config: Option<BreakerConfig>) {
        let mut inner = self.lock();
        let effective = config.clone().unwrap_or_else(|| self.config.clone());
        for (key, b) in inner.by_key.iter_mut() {
            if key.tenant == tenant {
                b.set_config(effective.clone());
            }
        }
        match config {
            Some(c) => inner.configs.insert(tenant.to_string(), c),
            None => inner.configs.remove(tenant),
        };
    }

    /// The settings `tenant`'s breakers run with.
    pub fn tenant_config(&self, tenant: &str) -> BreakerConfig {
        self.lock()
            .configs
            .get(tenant)
            .unwrap_or(&self.config)
            .clone()
    }

    /// Every breaker that has seen a call, as of `now`, sorted by tenant
    /// and provider. A (tenant, provider) not listed is closed.
    pub fn snapshot(&self, now: Instant) -> Vec<BreakerSnapshot> {
        let mut out: Vec<BreakerSnapshot> = self
            .lock()
            .by_key
            .iter()
            .map(|(key, b)| BreakerSnapshot {
                tenant: key.tenant.clone(),
                provider: key.provider,
                name: key.name.clone(),
                status: b.status(now),
            })
            .collect();
        out.sort_by(|a, b| (&a.tenant, a.provider, &a.name).cmp(&(&b.tenant, b.provider, &b.name)));
        out
    }

    /// The status of one tenant's breaker for provider `name` of kind
    /// `provider` at `now`.
    pub fn status(
        &self,
        now: Instant,
        tenant: &str,
        provider: Provider,
        name: &str,
    ) -> BreakerStatus {
        let key = ProviderKey {
            tenant: tenant.to_string(),
            provider,
            name: name.to_string(),
        };
        self.lock()
            .by_key
            .get(&key)
            .map_or(BreakerStatus::Closed { failures: 0 }, |b| b.status(now))
    }

    pub fn admit(&self, now: Instant, tenant: &str, provider: Provider, name: &str) -> Admission {
        self.with(tenant, provider, name, |b| b.admit(now))
    }

    pub fn handle_success(&self, now: Instant, tenant: &str, provider: Provider, name: &str) {
        self.with(tenant, provider, name, |b| b.handle_success(now))
    }

    pub fn handle_failure(&self, now: Instant, tenant: &str, provider: Provider, name: &str) {
        self.with(tenant, provider, name, |b| b.handle_failure(now))
    }

    /// Admits a new call: for each engine kind, the first of its candidate
    /// providers (in the tenant's order) whose breaker lets it through. A
    /// kind whose every candidate is open becomes the fallback reason.
    pub fn admit_call(
        &self,
        now: Instant,
        tenant: &str,
        candidates: &[(Provider, Vec<String>)],
    ) -> Result<Vec<Admitted>, FallbackReason> {
        let mut out = Vec::with_capacity(candidates.len());
        for (provider, names) in candidates {
            let mut soonest: Option<Instant> = None;
            let mut chosen = None;
            for name in names {
                match self.admit(now, tenant, *provider, name) {
                    Admission::Rejected { retry_at } => {
                        soonest = Some(soonest.map_or(retry_at, |s| s.min(retry_at)));
                    }
                    admission => {
                        chosen = Some(Admitted {
                            provider: *provider,
                            name: name.clone(),
                            admission,
                        });
                        break;
                    }
                }
            }
            match chosen {
                Some(a) => out.push(a),
                None => {
                    return Err(FallbackReason::CircuitOpen {
                        provider: *provider,
                        retry_in_ms: ms(soonest.unwrap_or(now).saturating_duration_since(now)),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
