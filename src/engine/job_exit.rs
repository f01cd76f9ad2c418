//! When a job is done: its container's exit, through the restarts its restart policy makes.
//!
//! A job with `restart: on-failure` (a migration retried until the database takes it, as compose
//! files often write it) has not failed at its first non-zero exit: the engine starts it again,
//! and Compose waits for it to complete. So a non-zero exit is final only when the policy makes
//! no more restarts (`no`, or `on-failure:N` with its N restarts used).

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Backend, InstanceState};
use crate::error::Result;
use crate::model::RestartPolicy;

/// How often the instance is looked at while the engine restarts it.
const POLL: Duration = Duration::from_millis(250);

/// The job's final exit code, or `None` if `end` came first.
pub(super) async fn final_exit(
    backend: &dyn Backend,
    id: &str,
    restart: RestartPolicy,
    end: Instant,
) -> Result<Option<i64>> {
    loop {
        let code = match tokio::time::timeout_at(end, backend.wait_exit(id)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if code == 0 || !restarts_after_failure(restart) {
            return Ok(Some(code));
        }
        // The engine may restart it: wait until it runs again, or stays exited for good.
        loop {
            if Instant::now() >= end {
                return Ok(None);
            }
            let i = backend.inspect_instance(id).await?;
            match i.state {
                InstanceState::Running => break,
                InstanceState::Exited | InstanceState::Dead if !will_restart(restart, i.restarts) => {
                    return Ok(Some(i.exit_code.unwrap_or(code)));
                }
                InstanceState::Exited if i.exit_code == Some(0) => return Ok(Some(0)),
                _ => tokio::time::sleep(POLL.min(end.saturating_duration_since(Instant::now()))).await,
            }
        }
    }
}

/// Whether the policy restarts a container after a non-zero exit at all.
fn restarts_after_failure(p: RestartPolicy) -> bool {
    !matches!(p, RestartPolicy::No)
}

/// Whether the engine restarts it again after `restarts` restarts.
fn will_restart(p: RestartPolicy, restarts: u32) -> bool {
    match p {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure(0) | RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure(n) => restarts < n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_final_once_the_policy_restarts_no_more() {
        assert!(!restarts_after_failure(RestartPolicy::No));
        assert!(will_restart(RestartPolicy::OnFailure(3), 2));
        assert!(!will_restart(RestartPolicy::OnFailure(3), 3));
        assert!(will_restart(RestartPolicy::OnFailure(0), 100));
        assert!(will_restart(RestartPolicy::Always, 5));
    }
}
