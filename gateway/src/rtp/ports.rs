//! Even RTP ports from a configured range; RTCP uses port + 1.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// Why no port could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("the RTP port range {min}-{max} holds no even port with a free odd neighbour")]
    EmptyRange { min: u16, max: u16 },
    #[error("all {capacity} RTP ports in {min}-{max} are in use")]
    Exhausted { min: u16, max: u16, capacity: usize },
}

/// Hands out even RTP ports; each [`PortLease`] gives its port back when
/// dropped. Released ports go to the back of the queue so a port that just
/// closed is reused last, which keeps stray packets of an old call away
/// from a new one.
#[derive(Debug)]
pub struct PortAllocator {
    min: u16,
    max: u16,
    capacity: usize,
    free: Mutex<VecDeque<u16>>,
}

impl PortAllocator {
    /// A pool of every even port `p` in `range` such that `p + 1` is in
    /// `range` too.
    pub fn new(range: RangeInclusive<u16>) -> Result<Arc<Self>, PortError> {
        let (min, max) = (*range.start(), *range.end());
        let first = if min % 2 == 0 {
            min
        } else {
            min.saturating_add(1)
        };
        let free: VecDeque<u16> = (first..max).step_by(2).filter(|p| *p != 0).collect();
        if free.is_empty() {
            return Err(PortError::EmptyRange { min, max });
        }
        Ok(Arc::new(Self {
            min,
            max,
            capacity: free.len(),
            free: Mutex::new(free),
        }))
    }

    /// Takes the next free port.
    pub fn allocate(self: &Arc<Self>) -> Result<PortLease, PortError> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        match free.pop_front() {
            Some(port) => Ok(PortLease {
                port,
                pool: Arc::clone(self),
            }),
            None => Err(PortError::Exhausted {
                min: self.min,
                max: self.max,
                capacity: self.capacity,
            }),
        }
    }

    /// Ports not leased right now.
    pub fn available(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Ports in the pool.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn release(&self, port: u16) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(port);
    }
}

/// One leased RTP port (even); RTCP is [`PortLease::rtcp_port`].
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<PortAllocator>,
}

impl PortLease {
    pub fn rtp_port(&self) -> u16 {
        self.port
    }

    pub fn rtcp_port(&self) -> u16 {
        self.port + 1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_ports_and_takes_them_back() {
        let pool = PortAllocator::new(10001..=10008).expect("range");
        // Even ports with an odd neighbour inside: 10002, 10004, 10006.
        assert_eq!(pool.capacity(), 3);
        let a = pool.allocate().expect("a");
        let b = pool.allocate().expect("b");
        let c = pool.allocate().expect("c");
        assert_eq!(
            [a.rtp_port(), b.rtp_port(), c.rtp_port()],
            [10002, 10004, 10006]
        );
        assert_eq!(a.rtcp_port(), 10003);
        assert!(matches!(
            pool.allocate(),
            Err(PortError::Exhausted { capacity: 3, .. })
        ));
        drop(b);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.allocate().expect("again").rtp_port(), 10004);
        drop((a, c));
    }

    #[test]
    fn released_ports_are_reused_last() {
        let pool = PortAllocator::new(20000..=20005).expect("range");
        let first = pool.allocate().expect("first").rtp_port();
        // The lease above is already dropped, so 20000 went to the back.
        assert_eq!(first, 20000);
        assert_eq!(pool.allocate().expect("next").rtp_port(), 20002);
    }

    #[test]
    fn a_range_without_a_pair_is_an_error() {
        assert!(matches!(
            PortAllocator::new(30001..=30001),
            Err(PortError::EmptyRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(30000..=30000),
            Err(PortError::EmptyRange { .. })
        ));
        assert!(PortAllocator::new(30000..=30001).is_ok());
    }
}
