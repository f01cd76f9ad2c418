//! Which backups to delete (by count and by age), and whether one is due: decisions from the
//! listing alone, so every process and every run agrees.

use std::time::{Duration, SystemTime};

use super::{PostgresBackup, S3Storage};
use crate::error::Result;
use crate::model::Environment;

/// What is kept: at most the newest `keep_last`, none older than `max_age`; the newest backup is
/// always kept, whatever its age (a retention never leaves nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    keep_last: Option<usize>,
    max_age: Option<Duration>,
}

impl Retention {
    /// Keeps everything until told otherwise.
    pub fn new() -> Retention {
        Retention::default()
    }

    /// Keeps at most the newest `n` (at least 1).
    pub fn keep_last(mut self, n: usize) -> Retention {
        self.keep_last = Some(n.max(1));
        self
    }

    /// Deletes backups older than `age` (but never the newest).
    pub fn max_age(mut self, age: Duration) -> Retention {
        self.max_age = Some(age);
        self
    }

    /// Of `(key, taken)` pairs, those to delete at `now`.
    pub fn select(&self, backups: &[(String, SystemTime)], now: SystemTime) -> Vec<String> {
        let mut sorted: Vec<&(String, SystemTime)> = backups.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        sorted
            .iter()
            .enumerate()
            .filter(|(i, (_, taken))| {
                *i > 0
                    && (self.keep_last.is_some_and(|n| *i >= n)
                        || self.max_age.is_some_and(|age| now.duration_since(*taken).is_ok_and(|d| d > age)))
            })
            .map(|(_, (key, _))| key.clone())
            .collect()
    }

    /// Deletes what this retention does not keep of `backup`'s backups of `env`; returns the
    /// deleted keys.
    pub async fn apply(&self, backup: &PostgresBackup, env: &Environment, storage: &S3Storage) -> Result<Vec<String>> {
        let listed = backup.list(env, storage).await?;
        let pairs: Vec<(String, SystemTime)> = listed.iter().map(|b| (b.key.clone(), b.taken)).collect();
        let doomed = self.select(&pairs, SystemTime::now());
        for key in &doomed {
            storage.delete(key).await?;
        }
        Ok(doomed)
    }
}

/// When backups are due: every `interval` after the newest one. The caller drives it (a timer, a
/// cron job, a loop) and asks; the answer comes from storage, so a restarted process, or another
/// one, neither repeats nor skips a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    every: Duration,
}

impl Schedule {
    /// A backup every `interval`.
    pub fn every(interval: Duration) -> Schedule {
        Schedule { every: interval }
    }

    /// Whether one is due at `now`, given when the newest was taken.
    pub fn is_due(&self, newest: Option<SystemTime>, now: SystemTime) -> bool {
        match newest {
            None => true,
            Some(t) => now.duration_since(t).is_ok_and(|d| d >= self.every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn by_count_by_age_and_never_the_newest() {
        let backups: Vec<(String, SystemTime)> = (1..=6).map(|i| (format!("b{i}"), at(i * 100))).collect();
        let now = at(700);
        assert!(Retention::new().select(&backups, now).is_empty());
        let mut by_count = Retention::new().keep_last(4).select(&backups, now);
        by_count.sort();
        assert_eq!(by_count, ["b1", "b2"]);
        let mut by_age = Retention::new().max_age(Duration::from_secs(350)).select(&backups, now);
        by_age.sort();
        assert_eq!(by_age, ["b1", "b2", "b3"], "older than 350 s at 700 s: taken before 350 s");
        let mut both = Retention::new().keep_last(5).max_age(Duration::from_secs(450)).select(&backups, now);
        both.sort();
        assert_eq!(both, ["b1", "b2"]);
        // Everything old: the newest stays.
        let old = Retention::new().max_age(Duration::from_secs(1)).select(&backups, at(10_000));
        assert_eq!(old.len(), 5);
        assert!(!old.contains(&"b6".to_string()));
        assert_eq!(Retention::new().keep_last(0).select(&backups, now).len(), 5, "keep_last(0) keeps one");
    }

    #[test]
    fn due_every_interval_after_the_newest() {
        let s = Schedule::every(Duration::from_secs(3600));
        assert!(s.is_due(None, at(0)));
        assert!(!s.is_due(Some(at(1000)), at(4599)));
        assert!(s.is_due(Some(at(1000)), at(4600)));
        assert!(!s.is_due(Some(at(5000)), at(4600)), "a clock behind the newest backup is not due");
    }
}
