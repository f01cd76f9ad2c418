//! Checked arithmetic on instants: a deadline computed from a user's duration never panics, however
//! large the duration (builders bound durations, and this holds even where they do not).

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: far enough to mean "never" for any wait.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `start + d`, or a far future instant if that does not fit.
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    start.checked_add(d).or_else(|| start.checked_add(FAR)).unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_do_not_panic() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now);
        assert_eq!(after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
    }
}
