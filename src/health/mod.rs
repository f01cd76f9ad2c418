//! Health probing: running one probe (`probe.rs`) and waiting for an instance to pass its
//! [`HealthCheck`](crate::HealthCheck) gate (`gate.rs`).
//!
//! HTTP and TCP probes run from the library against the container's address (or a published port
//! for remote engines), so images need no curl. Exec probes and the image's own `HEALTHCHECK` go
//! through the backend; log-line probes follow the container's log.

pub(crate) mod gate;
pub(crate) mod probe;

pub use crate::error::ProbeRecord;

/// The last few probe results, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProbeHistory {
    records: std::collections::VecDeque<ProbeRecord>,
}

impl ProbeHistory {
    const KEEP: usize = 5;

    pub(crate) fn push(&mut self, r: ProbeRecord) {
        if self.records.len() == Self::KEEP {
            self.records.pop_front();
        }
        self.records.push_back(r);
    }

    pub(crate) fn to_vec(&self) -> Vec<ProbeRecord> {
        self.records.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn history_keeps_last_five() {
        let mut h = ProbeHistory::default();
        for i in 0..8 {
            h.push(ProbeRecord {
                at: SystemTime::UNIX_EPOCH,
                passed: false,
                detail: i.to_string(),
                took: Duration::ZERO,
            });
        }
        let v: Vec<String> = h.to_vec().into_iter().map(|r| r.detail).collect();
        assert_eq!(v, ["3", "4", "5", "6", "7"]);
    }

    #[test]
    fn record_display_is_readable() {
        let r = ProbeRecord {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(3_723_004),
            passed: false,
            detail: "GET /health -> 503".into(),
            took: Duration::from_millis(2),
        };
        assert_eq!(r.to_string(), "01:02:03.004 UTC failed GET /health -> 503 (2 ms)");
    }
}
