//! Pure helpers of the softphone: the INVITE response log and the silence
//! test on received frames.

/// Responses to our INVITEs in arrival order, with retransmissions (same
/// CSeq, same status) folded.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResponseLog {
    seen: Vec<(u32, u16)>,
}

impl ResponseLog {
    pub(crate) fn handle_response(&mut self, cseq: u32, status: u16) {
        if !self.seen.contains(&(cseq, status)) {
            self.seen.push((cseq, status));
        }
    }

    pub(crate) fn statuses(&self) -> Vec<u16> {
        self.seen.iter().map(|(_, s)| *s).collect()
    }
}

/// RMS level below which a frame counts as silence (about -50 dBFS); G.711
/// silence decodes to 0 or a few units.
pub(crate) const SILENCE_RMS: f64 = 100.0;

pub(crate) fn is_silent(samples: &[i16]) -> bool {
    if samples.is_empty() {
        return true;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / samples.len() as f64).sqrt() < SILENCE_RMS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_fold_and_retries_show() {
        let mut log = ResponseLog::default();
        for (cseq, status) in [
            (1, 100),
            (1, 401),
            (1, 401),
            (2, 100),
            (2, 180),
            (2, 180),
            (2, 200),
            (2, 200),
        ] {
            log.handle_response(cseq, status);
        }
        assert_eq!(log.statuses(), vec![100, 401, 100, 180, 200]);
    }

    #[test]
    fn silence() {
        assert!(is_silent(&[]));
        assert!(is_silent(&[0; 160]));
        assert!(is_silent(&[8, -8, 4, 0].repeat(40)));
        let tone: Vec<i16> = (0..160)
            .map(|i| ((i as f64 * 0.3).sin() * 3000.0) as i16)
            .collect();
        assert!(!is_silent(&tone));
    }
}
