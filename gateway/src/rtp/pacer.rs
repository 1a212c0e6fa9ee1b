//! The outbound packet schedule: deadline n is `start + n * interval`, so
//! the schedule never drifts however late the driver wakes.

use std::time::{Duration, Instant};

/// Lateness samples kept for the percentiles (10 s of 20 ms packets).
const WINDOW: usize = 500;

/// One packet time that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerTick {
    /// Index of the packet time since the start.
    pub index: u64,
    /// Media time of the packet's first sample: `index * samples_per_tick`.
    pub media_samples: u64,
    /// How late the driver woke against this packet's deadline.
    pub lateness: Duration,
    /// Packet times skipped just before this one because the driver woke
    /// too late to send them without a burst.
    pub skipped: u64,
}

/// The monotonic packet schedule of one outbound stream.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    samples_per_tick: u64,
    next_index: u64,
    /// At most this many packet times may be sent back to back to catch up;
    /// later than that the pacer skips ahead.
    max_catch_up: u64,
    skipped_total: u64,
    lateness_us: Box<[u32; WINDOW]>,
    lateness_len: usize,
    lateness_pos: usize,
}

impl Pacer {
    /// A schedule whose first deadline is `start`.
    pub fn new(start: Instant, interval: Duration, samples_per_tick: u64) -> Self {
        Self {
            start,
            interval,
            samples_per_tick,
            next_index: 0,
            max_catch_up: 2,
            skipped_total: 0,
            lateness_us: Box::new([0; WINDOW]),
            lateness_len: 0,
            lateness_pos: 0,
        }
    }

    /// How many overdue packet times may be sent back to back before the
    /// pacer skips instead (default 2).
    pub fn with_max_catch_up(mut self, frames: u64) -> Self {
        self.max_catch_up = frames.max(1);
        self
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The deadline of the next packet time.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline(self.next_index)
    }

    fn deadline(&self, index: u64) -> Instant {
        // u32 is 2.7 years of 20 ms ticks; saturate rather than overflow.
        let n = u32::try_from(index).unwrap_or(u32::MAX);
        self.start + self.interval * n
    }

    /// The packet time due at `now`, if one is. Call again until `None` to
    /// catch up after a small delay; after a large one this skips ahead and
    /// reports how many packet times were dropped.
    pub fn poll_tick(&mut self, now: Instant) -> Option<PacerTick> {
        let deadline = self.deadline(self.next_index);
        if now < deadline {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let interval_ns = self.interval.as_nanos().max(1);
        let current = (elapsed.as_nanos() / interval_ns) as u64;
        let behind = current - self.next_index;
        let mut skipped = 0;
        if behind > self.max_catch_up {
            skipped = behind;
            self.skipped_total += skipped;
            self.next_index = current;
        }
        let index = self.next_index;
        self.next_index += 1;
        let lateness = now.saturating_duration_since(self.deadline(index));
        self.record(lateness);
        Some(PacerTick {
            index,
            media_samples: index * self.samples_per_tick,
            lateness,
            skipped,
        })
    }

    fn record(&mut self, lateness: Duration) {
        let us = u32::try_from(lateness.as_micros()).unwrap_or(u32::MAX);
        self.lateness_us[self.lateness_pos] = us;
        self.lateness_pos = (self.lateness_pos + 1) % WINDOW;
        self.lateness_len = (self.lateness_len + 1).min(WINDOW);
    }

    /// Packet times skipped since the start.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Percentile `p` (0..=100) of lateness over the last packets sent.
    pub fn lateness_percentile(&self, p: f64) -> Option<Duration> {
        if self.lateness_len == 0 {
            return None;
        }
        let mut v: Vec<u32> = self.lateness_us[..self.lateness_len].to_vec();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64).round() as usize;
        let (_, nth, _) = v.select_nth_unstable(rank);
        Some(Duration::from_micros(u64::from(*nth)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn deadlines_are_anchored_at_start() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 20 * MS, 160);
        assert_eq!(p.poll_timeout(), t0);
        // The driver always wakes 3 ms late; deadlines must not drift.
        for n in 0..100u32 {
            let due = p.poll_timeout();
            assert_eq!(due, t0 + 20 * MS * n);
            let tick = p.poll_tick(due + 3 * MS).expect("due");
            assert_eq!(tick.index, u64::from(n));
            assert_eq!(tick.media_samples, u64::from(n) * 160);
            assert_eq!(tick.lateness, 3 * MS);
            assert!(p.poll_tick(due + 3 * MS).is_none());
        }
        assert_eq!(p.lateness_percentile(50.0), Some(3 * MS));
        assert_eq!(p.skipped_total(), 0);
    }

    #[test]
    fn early_wakeups_send_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 20 * MS, 160);
        assert!(p.poll_tick(t0).is_some());
        assert!(p.poll_tick(t0 + 19 * MS).is_none());
        assert_eq!(p.poll_tick(t0 + 20 * MS).map(|t| t.index), Some(1));
    }

    #[test]
    fn small_delay_catches_up_large_delay_skips() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 20 * MS, 160);
        assert!(p.poll_tick(t0).is_some());
        // Woke at 45 ms: ticks 1 and 2 are due; send both, no skip.
        let now = t0 + 45 * MS;
        let a = p.poll_tick(now).expect("tick 1");
        let b = p.poll_tick(now).expect("tick 2");
        assert_eq!((a.index, b.index, a.skipped + b.skipped), (1, 2, 0));
        assert!(p.poll_tick(now).is_none());
        // Stalled until 305 ms: ticks 3..=15 are due. Skip to 15, no burst.
        let now = t0 + 305 * MS;
        let c = p.poll_tick(now).expect("tick");
        assert_eq!(c.index, 15);
        assert_eq!(c.skipped, 12);
        assert_eq!(c.media_samples, 15 * 160);
        assert_eq!(c.lateness, 5 * MS);
        assert!(p.poll_tick(now).is_none());
        assert_eq!(p.poll_timeout(), t0 + 320 * MS);
        assert_eq!(p.skipped_total(), 12);
    }

    #[test]
    fn percentiles_over_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 20 * MS, 160);
        assert_eq!(p.lateness_percentile(50.0), None);
        for n in 0..1000u32 {
            // 1% of wakeups are 10 ms late, the rest 1 ms.
            let late = if n % 100 == 99 { 10 } else { 1 };
            let due = p.poll_timeout();
            p.poll_tick(due + late * MS).expect("due");
        }
        assert_eq!(p.lateness_percentile(50.0), Some(MS));
        assert_eq!(p.lateness_percentile(100.0), Some(10 * MS));
        let p99 = p.lateness_percentile(99.0).expect("p99");
        assert!(p99 >= MS && p99 <= 10 * MS);
    }
}
