//! The set of workers the gateway may use: least-loaded choice, health
//! checks, and recovery probes of failed workers.
//!
//! Load is what this process knows (its own sessions on each worker) plus
//! what the worker last reported in a `pong`. Health checks open a fresh
//! connection, ping, and close: a worker that cannot take a new connection
//! is not healthy, however well its old ones still run.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use url::Url;
use voxgate_gateway::clock::{self, Instant};

use super::client::{connect, WorkerConnection};
use super::{WorkerError, WorkerToken};
use crate::protocol::SessionConfig;

/// How a [`WorkerPool`] behaves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// `ws://host:port/path` of each worker.
    pub workers: Vec<Url>,
    pub token: WorkerToken,
    /// How often healthy workers are pinged.
    pub health_interval: Duration,
    /// How often failed workers are probed for recovery.
    pub recovery_interval: Duration,
    /// Limit on the TCP + websocket handshake.
    pub connect_timeout: Duration,
    /// Limit on `ready` after `start` and `pong` after `ping`.
    pub reply_timeout: Duration,
    /// How many times one STT session may move to another worker.
    pub max_failovers: u32,
}

impl PoolConfig {
    /// Defaults for `workers`: health every 5 s, recovery probes every 2 s.
    pub fn new(workers: Vec<Url>, token: WorkerToken) -> Self {
        Self {
            workers,
            token,
            health_interval: Duration::from_secs(5),
            recovery_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(2),
            max_failovers: 3,
        }
    }
}

/// A snapshot of one worker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub url: Url,
    pub healthy: bool,
    /// Sessions this process has open on it.
    pub in_flight: usize,
    /// Sessions it reported in its last pong.
    pub reported_load: u32,
    pub failures: u32,
}

pub(crate) struct Slot {
    url: Url,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    reported_load: AtomicU32,
    failures: AtomicU32,
}

pub(crate) struct PoolInner {
    pub(crate) config: PoolConfig,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

/// A shared, cloneable handle on the workers. It implements
/// [`SttEngine`](crate::stt::SttEngine), [`TtsEngine`](crate::tts::TtsEngine)
/// and [`IntentEngine`](crate::nlu::IntentEngine), so callers never see a
/// worker URL.
#[derive(Clone)]
pub struct WorkerPool {
    pub(crate) inner: Arc<PoolInner>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.status())
            .finish()
    }
}

/// One session's claim on a worker; releases the load count on drop.
pub(crate) struct Lease {
    pool: Arc<PoolInner>,
    pub(crate) index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.slots[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl WorkerPool {
    /// A pool over `config.workers`, all assumed healthy until proven not.
    pub fn new(config: PoolConfig) -> Result<Self, WorkerError> {
        if config.workers.is_empty() {
            return Err(WorkerError::NoWorkers);
        }
        if let Some(bad) = config.workers.iter().find(|u| u.scheme() != "ws") {
            return Err(WorkerError::InvalidUrl {
                url: bad.to_string(),
            });
        }
        let slots = config
            .workers
            .iter()
            .map(|url| Slot {
                url: url.clone(),
                healthy: AtomicBool::new(true),
                in_flight: AtomicUsize::new(0),
                reported_load: AtomicU32::new(0),
                failures: AtomicU32::new(0),
            })
            .collect();
        Ok(Self {
            inner: Arc::new(PoolInner {
                config,
                slots,
                next: AtomicUsize::new(0),
            }),
        })
    }

    pub fn status(&self) -> Vec<WorkerStatus> {
        self.inner
            .slots
            .iter()
            .map(|s| WorkerStatus {
                url: s.url.clone(),
                healthy: s.healthy.load(Ordering::Relaxed),
                in_flight: s.in_flight.load(Ordering::Relaxed),
                reported_load: s.reported_load.load(Ordering::Relaxed),
                failures: s.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Starts the background task of health checks and recovery probes.
    /// It ends by itself when the last pool handle is dropped.
    pub fn spawn_health_checks(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<PoolInner> = Arc::downgrade(&self.inner);
        let config = &self.inner.config;
        let tick = config
            .health_interval
            .min(config.recovery_interval)
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut last: Vec<Option<Instant>> = Vec::new();
            loop {
                tokio::time::sleep(tick).await;
                let Some(inner) = weak.upgrade() else { return };
                let pool = WorkerPool { inner };
                last.resize(pool.inner.slots.len(), None);
                let now = clock::now();
                let due: Vec<usize> = (0..pool.inner.slots.len())
                    .filter(|i| {
                        let slot = &pool.inner.slots[*i];
                        let every = if slot.healthy.load(Ordering::Relaxed) {
                            pool.inner.config.health_interval
                        } else {
                            pool.inner.config.recovery_interval
                        };
                        last[*i].is_none_or(|t| now.duration_since(t) >= every)
                    })
                    .collect();
                for i in &due {
                    last[*i] = Some(now);
                }
                futures_util::future::join_all(due.into_iter().map(|i| pool.probe(i))).await;
            }
        })
    }

    /// Checks every worker once, now.
    pub async fn check_all(&self) {
        futures_util::future::join_all((0..self.inner.slots.len()).map(|i| self.probe(i))).await;
    }

    async fn probe(&self, index: usize) -> bool {
        let slot = &self.inner.slots[index];
        let config = &self.inner.config;
        let result = async {
            let mut conn = connect(&slot.url, &config.token, config.connect_timeout).await?;
            let load = conn.ping(config.reply_timeout).await?;
            conn.close().await;
            Ok::<u32, WorkerError>(load)
        }
        .await;
        match result {
            Ok(load) => {
                slot.reported_load.store(load, Ordering::Relaxed);
                if !slot.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(worker = %slot.url, "worker recovered");
                }
                true
            }
            Err(e) => {
                self.mark_failed(index, &e);
                false
            }
        }
    }

    pub(crate) fn mark_failed(&self, index: usize, why: &WorkerError) {
        let slot = &self.inner.slots[index];
        slot.failures.fetch_add(1, Ordering::Relaxed);
        if slot.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(worker = %slot.url, error = %why, "worker marked failed");
        }
    }

    /// The least-loaded worker not in `exclude`: healthy ones first, and if
    /// none is healthy, any (it may have recovered since the last probe).
    /// Ties go round-robin.
    pub(crate) fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let slots = &self.inner.slots;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let n = slots.len();
        let candidates = |healthy_only: bool| {
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|i| !exclude.contains(i))
                .filter(move |i| !healthy_only || slots[*i].healthy.load(Ordering::Relaxed))
                .min_by_key(|i| {
                    let s = &slots[*i];
                    (
                        s.in_flight.load(Ordering::Relaxed),
                        s.reported_load.load(Ordering::Relaxed),
                    )
                })
        };
        candidates(true).or_else(|| candidates(false))
    }

    /// Opens `session` on the best worker, trying others (skipping
    /// `exclude`) when one cannot be reached or refuses with a retryable
    /// error.
    pub(crate) async fn open(
        &self,
        session: &SessionConfig,
        exclude: &mut Vec<usize>,
    ) -> Result<(Lease, WorkerConnection), WorkerError> {
        let config = &self.inner.config;
        let mut last = WorkerError::NoWorkers;
        while let Some(index) = self.pick(exclude) {
            exclude.push(index);
            let slot = &self.inner.slots[index];
            slot.in_flight.fetch_add(1, Ordering::Relaxed);
            let lease = Lease {
                pool: self.inner.clone(),
                index,
            };
            let attempt = async {
                let mut conn = connect(&slot.url, &config.token, config.connect_timeout).await?;
                conn.start(session.clone(), config.reply_timeout).await?;
                Ok::<_, WorkerError>(conn)
            }
            .await;
            match attempt {
                Ok(conn) => return Ok((lease, conn)),
                Err(
                    e @ WorkerError::Remote {
                        retryable: false, ..
                    },
                )
                | Err(e @ WorkerError::Unauthorized { .. }) => return Err(e),
                Err(e) => {
                    if !matches!(e, WorkerError::Remote { .. }) {
                        self.mark_failed(index, &e);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> WorkerPool {
        let urls = (0..n)
            .map(|i| Url::parse(&format!("ws://127.0.0.1:{}/", 9000 + i)).expect("url"))
            .collect();
        WorkerPool::new(PoolConfig::new(urls, WorkerToken::new("t"))).expect("pool")
    }

    #[test]
    fn picks_least_loaded_healthy_worker() {
        let p = pool(3);
        p.inner.slots[0].in_flight.store(2, Ordering::Relaxed);
        p.inner.slots[1].in_flight.store(1, Ordering::Relaxed);
        p.inner.slots[2].in_flight.store(1, Ordering::Relaxed);
        p.inner.slots[2].reported_load.store(5, Ordering::Relaxed);
        assert_eq!(p.pick(&[]), Some(1));
        p.inner.slots[1].healthy.store(false, Ordering::Relaxed);
        assert_eq!(p.pick(&[]), Some(2));
        assert_eq!(p.pick(&[2]), Some(0));
        // Nothing healthy left outside the exclusions: fall back to any.
        assert_eq!(p.pick(&[0, 2]), Some(1));
        assert_eq!(p.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn ties_rotate() {
        let p = pool(2);
        let a = p.pick(&[]);
        let b = p.pick(&[]);
        assert_ne!(a, b);
    }

    #[test]
    fn config_is_checked() {
        assert!(matches!(
            WorkerPool::new(PoolConfig::new(vec![], WorkerToken::new("t"))),
            Err(WorkerError::NoWorkers)
        ));
        let http = Url::parse("http://127.0.0.1:1/").expect("url");
        assert!(matches!(
            WorkerPool::new(PoolConfig::new(vec![http], WorkerToken::new("t"))),
            Err(WorkerError::InvalidUrl { .. })
        ));
    }
}
