//! Circuit breakers per (tenant, named provider): a [`CircuitBreaker`]
//! counts breaches and errors in a sliding window, opens for a cool-down,
//! then lets probe calls through half-open; [`BreakerRegistry`] shares
//! them across calls and picks, per call, the first provider in the
//! tenant's order whose breaker admits it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ms, FallbackReason, Provider};

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
