//! How a changed service replaces its running instances: the [`Rollout`] spec.
//! The engine that carries it out is [`crate::engine`]; where it decides each step is
//! `engine/rollout/`.
//!
//! The names follow the systems users know (see the table on [`Rollout`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How a service's instances are replaced when its configuration or image changes.
///
/// | here | Kubernetes | Nomad | Swarm | Kamal |
/// |---|---|---|---|---|
/// | [`Strategy::Rolling`] `max_surge` / `max_unavailable` | `maxSurge` / `maxUnavailable` | `max_parallel` | `parallelism` + `order` | `boot.limit` |
/// | [`Rollout::batch_delay`] | — | `stagger` | `delay` | `boot.wait` |
/// | [`Rollout::max_hosts`] | — | — | — | `boot.limit` |
/// | [`Rollout::min_ready`] | `minReadySeconds` | `min_healthy_time` | `monitor` | `readiness_delay` |
/// | [`Rollout::deadline`] (always enforced) | `progressDeadlineSeconds` | `progress_deadline` | — | `deploy_timeout` |
/// | [`Rollout::on_failure`] | — | `auto_revert` | `failure_action` | — |
/// | [`Rollout::drain`] | `terminationGracePeriod` + endpoints removal | `shutdown_delay` | — | `drain_timeout` |
/// | [`Strategy::BlueGreen`], [`Strategy::Canary`] | Argo Rollouts | `canary` + `auto_promote` | — | — |
///
/// ```
/// use std::time::Duration;
/// use harbormaster::{Amount, CanaryStep, Rollout};
/// let rolling = Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0))
///     .min_ready(Duration::from_secs(2));
/// let canary = Rollout::canary([CanaryStep::weight(20), CanaryStep::pause(Duration::from_secs(60)),
///     CanaryStep::weight(50), CanaryStep::pause(Duration::from_secs(60))]);
/// let blue_green = Rollout::blue_green();
/// # let _ = (rolling, canary, blue_green);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollout {
    pub(crate) strategy: Strategy,
    pub(crate) min_ready: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) on_failure: OnFailure,
    pub(crate) drain: Duration,
    pub(crate) batch_delay: Duration,
    pub(crate) manual_promotion: bool,
    pub(crate) max_hosts: Option<u32>,
}

/// The order in which old instances leave and new ones arrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Stop every old instance, then start the new ones (Kubernetes `Recreate`, Swarm `stop-first`).
    /// Needed when instances cannot run side by side, such as a fixed host port.
    Recreate,
    /// Start every new instance beside the old ones, wait until all are healthy (and have stayed
    /// so for `min_ready`), then stop the old ones (Swarm `start-first`). The same as
    /// `Rolling { max_surge: 100 %, max_unavailable: 0 }`.
    StartFirst,
    /// Replace instances in batches, Kubernetes' `RollingUpdate`: at most `max_surge` instances above
    /// the wanted count and at most `max_unavailable` below it at any time. Surge rounds up and
    /// unavailable rounds down, as in Kubernetes; both may not be zero.
    Rolling {
        /// How many extra instances may run during the rollout.
        max_surge: Amount,
        /// How many wanted instances may be out of rotation during the rollout.
        max_unavailable: Amount,
    },
    /// The whole new set starts beside the old one; traffic moves to it at once through the
    /// ingress when every new instance is ready, then the old set is drained and stopped.
    BlueGreen,
    /// The new set starts beside the old one and receives a growing share of the ingress traffic,
    /// step by step; after the last step it takes all of it.
    Canary {
        /// The steps, in order.
        steps: Vec<CanaryStep>,
    },
}

/// A number of instances, absolute or relative to the wanted replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// This many instances.
    Count(u32),
    /// This percentage (0–100) of the replicas.
    Percent(u32),
}

impl Amount {
    /// An absolute count.
    pub fn count(n: u32) -> Self {
        Amount::Count(n)
    }

    /// A percentage of the replicas (0–100).
    pub fn percent(p: u32) -> Self {
        Amount::Percent(p)
    }

    /// The count for `replicas`, rounding a percentage up or down.
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let x = u64::from(replicas) * u64::from(p);
                let n = if round_up { x.div_ceil(100) } else { x / 100 };
                n.min(u64::from(u32::MAX)) as u32
            }
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::Percent(0))
    }
}

impl Strategy {
    /// Its name: `recreate`, `start_first`, `rolling`, `blue_green` or `canary`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Recreate => "recreate",
            Strategy::StartFirst => "start_first",
            Strategy::Rolling { .. } => "rolling",
            Strategy::BlueGreen => "blue_green",
            Strategy::Canary { .. } => "canary",
        }
    }
}

impl fmt::Display for Strategy {
    /// `recreate`, `start-first`, `rolling (max surge 1, max unavailable 0)`, `blue/green`,
    /// `canary (20%, pause 1m, 50%)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Recreate => f.write_str("recreate"),
            Strategy::StartFirst => f.write_str("start-first"),
            Strategy::Rolling { max_surge, max_unavailable } => {
                write!(f, "rolling (max surge {max_surge}, max unavailable {max_unavailable})")
            }
            Strategy::BlueGreen => f.write_str("blue/green"),
            Strategy::Canary { steps } => {
                let steps: Vec<String> = steps
                    .iter()
                    .map(|s| match s {
                        CanaryStep::Weight(w) => format!("{w}%"),
                        CanaryStep::Pause(d) => format!("pause {}", crate::duration::human(*d)),
                    })
                    .collect();
                write!(f, "canary ({})", steps.join(", "))
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One step of a canary rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryStep {
    /// Send this percentage (1–100) of the ingress traffic to the new version.
    Weight(u8),
    /// Wait this long, watching that the new instances keep running.
    Pause(Duration),
}

impl CanaryStep {
    /// Send `percent` of the traffic to the new version (Argo `setWeight`).
    pub fn weight(percent: u8) -> Self {
        CanaryStep::Weight(percent)
    }

    /// Wait (Argo `pause: {duration}`).
    pub fn pause(d: Duration) -> Self {
        CanaryStep::Pause(d)
    }
}

/// What happens when a rollout fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnFailure {
    /// Put back the old version everywhere it was replaced (the default; Nomad `auto_revert`,
    /// Swarm `failure_action: rollback`). The apply reports the service as rolled back, with the reason.
    Rollback,
    /// Stop where it is (Swarm `failure_action: pause`): the batches already replaced stay on the new
    /// version, the failed batch's new instances are removed, the rest stay on the old version.
    /// The next apply continues.
    Pause,
    /// Report the failure and leave the failed new instances in place for inspection, out of rotation.
    Fail,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout::start_first()
    }
}

impl Rollout {
    /// Stop the old instances, then start the new ones.
    pub fn recreate() -> Self {
        Rollout {
            strategy: Strategy::Recreate,
            min_ready: Duration::ZERO,
            deadline: None,
            on_failure: OnFailure::Rollback,
            drain: Duration::from_secs(2),
            batch_delay: Duration::ZERO,
            max_hosts: None,
            manual_promotion: false,
        }
    }

    /// Start new instances beside the old ones and stop the old ones once all new are healthy.
    pub fn start_first() -> Self {
        Rollout { strategy: Strategy::StartFirst, ..Rollout::recreate() }
    }

    /// Kubernetes' rolling update with its defaults: `max_surge` 25 %, `max_unavailable` 25 %.
    pub fn rolling() -> Self {
        Rollout {
            strategy: Strategy::Rolling { max_surge: Amount::Percent(25), max_unavailable: Amount::Percent(25) },
            ..Rollout::recreate()
        }
    }

    /// Blue/green: the new set beside the old one, then all traffic at once.
    pub fn blue_green() -> Self {
        Rollout { strategy: Strategy::BlueGreen, ..Rollout::recreate() }
    }

    /// A canary with these steps.
    pub fn canary(steps: impl IntoIterator<Item = CanaryStep>) -> Self {
        Rollout { strategy: Strategy::Canary { steps: steps.into_iter().collect() }, ..Rollout::recreate() }
    }

    /// Sets `max_surge` (turning the strategy into [`Strategy::Rolling`] if it was not).
    pub fn max_surge(mut self, n: Amount) -> Self {
        let unavailable = match self.strategy {
            Strategy::Rolling { max_unavailable, .. } => max_unavailable,
            _ => Amount::Percent(25),
        };
        self.strategy = Strategy::Rolling { max_surge: n, max_unavailable: unavailable };
        self
    }

    /// Sets `max_unavailable` (turning the strategy into [`Strategy::Rolling`] if it was not).
    pub fn max_unavailable(mut self, n: Amount) -> Self {
        let surge = match self.strategy {
            Strategy::Rolling { max_surge, .. } => max_surge,
            _ => Amount::Percent(25),
        };
        self.strategy = Strategy::Rolling { max_surge: surge, max_unavailable: n };
        self
    }

    /// How long a new instance must stay healthy before it counts (Kubernetes `minReadySeconds`,
    /// Nomad `min_healthy_time`, Swarm `monitor`).
    pub fn min_ready(mut self, d: Duration) -> Self {
        self.min_ready = d;
        self
    }

    /// Deadline for the whole rollout of the service, enforced by the library.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// What to do when it fails.
    pub fn on_failure(mut self, action: OnFailure) -> Self {
        self.on_failure = action;
        self
    }

    /// How long an instance taken out of rotation keeps running, so requests in flight finish,
    /// before it is sent its stop signal (default 2 s).
    pub fn drain(mut self, d: Duration) -> Self {
        self.drain = d;
        self
    }

    /// On several hosts: a batch changes instances on at most `n` hosts at once (Kamal's
    /// `boot.limit`); batches the strategy makes are split further where they would touch more.
    /// Ignored on one engine. At least 1.
    pub fn max_hosts(mut self, n: u32) -> Self {
        self.max_hosts = Some(n.max(1));
        self
    }

    /// A pause between batches of a rolling update (Swarm `delay`, Nomad `stagger`).
    pub fn batch_delay(mut self, d: Duration) -> Self {
        self.batch_delay = d;
        self
    }

    /// Blue/green and canary only: once the new set is healthy (blue/green) or the last step has
    /// run (canary), stop there, with the new set running beside the old one, and let a person
    /// decide (Argo Rollouts' indefinite pause, Nomad's `auto_promote = false`). The apply returns
    /// [`RolloutOutcome::AwaitingPromotion`](crate::RolloutOutcome::AwaitingPromotion); the
    /// state is kept on the target, so any process can then call
    /// [`Environment::promote`](crate::Environment::promote) (all traffic to the new set, the old
    /// one drains and goes) or [`Environment::abort_promotion`](crate::Environment::abort_promotion).
    /// Applying the same description again leaves it waiting; applying a different one replaces the
    /// waiting new set.
    pub fn manual_promotion(mut self) -> Self {
        self.manual_promotion = true;
        self
    }

    /// Whether the rollout waits for [`Environment::promote`](crate::Environment::promote).
    pub fn waits_for_promotion(&self) -> bool {
        self.manual_promotion
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// Whether old and new instances run side by side at some point (impossible with a fixed host port).
    pub fn runs_side_by_side(&self) -> bool {
        match &self.strategy {
            Strategy::Recreate => false,
            Strategy::Rolling { max_surge, .. } => !max_surge.is_zero(),
            _ => true,
        }
    }

    /// Whether the strategy moves traffic by weights or at once through the ingress.
    pub fn needs_ingress(&self) -> bool {
        matches!(self.strategy, Strategy::BlueGreen | Strategy::Canary { .. })
    }

    /// Problems with the combination of settings, if any.
    pub(crate) fn problems(&self) -> Option<String> {
        use super::limits::{duration, MAX_WAIT};
        let pauses = match &self.strategy {
            Strategy::Canary { steps } => steps
                .iter()
                .filter_map(|s| match s {
                    CanaryStep::Pause(d) => Some(*d),
                    CanaryStep::Weight(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let waits = [("min_ready", self.min_ready), ("drain", self.drain), ("batch_delay", self.batch_delay)]
            .into_iter()
            .chain(self.deadline.map(|d| ("deadline", d)))
            .chain(pauses.into_iter().map(|d| ("canary pause", d)));
        for (what, d) in waits {
            if let Some(p) = duration(what, d, MAX_WAIT) {
                return Some(p);
            }
        }
        if self.deadline == Some(Duration::ZERO) {
            return Some("the rollout deadline must be greater than zero".into());
        }
        if self.manual_promotion && !self.needs_ingress() {
            return Some(
                "manual promotion needs a blue/green or canary strategy, where two sets run side by side".into(),
            );
        }
        match &self.strategy {
            Strategy::Rolling { max_surge, max_unavailable } => {
                if max_surge.is_zero() && max_unavailable.is_zero() {
                    return Some(
                        "max_surge and max_unavailable cannot both be 0: nothing could ever be replaced".into(),
                    );
                }
                for (name, a) in [("max_surge", max_surge), ("max_unavailable", max_unavailable)] {
                    if let Amount::Percent(p) = a {
                        if *p > 100 {
                            return Some(format!("{name} is {p}%, more than 100%"));
                        }
                    }
                }
            }
            Strategy::Canary { steps } => {
                if !steps.iter().any(|s| matches!(s, CanaryStep::Weight(_))) {
                    return Some("a canary needs at least one CanaryStep::weight(..)".into());
                }
                let mut last = 0;
                for s in steps {
                    if let CanaryStep::Weight(w) = s {
                        if *w == 0 || *w > 100 {
                            return Some(format!("canary weight {w} is outside 1..=100"));
                        }
                        if *w < last {
                            return Some(format!("canary weights must not decrease ({last} then {w})"));
                        }
                        last = *w;
                    }
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_like_kubernetes() {
        assert_eq!(Amount::percent(25).resolve(3, true), 1);
        assert_eq!(Amount::percent(25).resolve(3, false), 0);
        assert_eq!(Amount::percent(50).resolve(6, false), 3);
        assert_eq!(Amount::count(2).resolve(10, false), 2);
        assert_eq!(Amount::percent(100).resolve(4, true), 4);
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let r = Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::percent(0));
        assert!(r.problems().is_some_and(|p| p.contains("both be 0")));
        assert!(Rollout::rolling().max_surge(Amount::percent(150)).problems().is_some());
        assert!(Rollout::canary([CanaryStep::pause(Duration::from_secs(1))]).problems().is_some());
        assert!(Rollout::canary([CanaryStep::weight(50), CanaryStep::weight(20)]).problems().is_some());
        assert!(Rollout::canary([CanaryStep::weight(0)]).problems().is_some());
        assert!(Rollout::canary([CanaryStep::weight(20), CanaryStep::pause(Duration::from_secs(1))])
            .problems()
            .is_none());
        assert!(Rollout::rolling().problems().is_none());
    }

    #[test]
    fn side_by_side_is_known_per_strategy() {
        assert!(!Rollout::recreate().runs_side_by_side());
        assert!(Rollout::start_first().runs_side_by_side());
        assert!(!Rollout::rolling().max_surge(Amount::count(0)).runs_side_by_side());
        assert!(Rollout::blue_green().runs_side_by_side());
        assert!(Rollout::blue_green().needs_ingress());
    }
}
