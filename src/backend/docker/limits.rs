//! What the Docker engine cannot honour of a description, said before anything changes
//! ([`Backend::limits`](crate::backend::Backend::limits)): its own numbers, which the neutral
//! model does not carry (another target has others: Kubernetes measures CPUs in thousandths).

use crate::backend::Limit;
use crate::model::Service;

/// The smallest CPU limit the engine accepts (`--cpus 0.01`: 10⁷ NanoCPUs).
pub(crate) const MIN_CPUS: f64 = 0.01;
/// The smallest memory limit and reservation the engine accepts: 6 MiB.
pub(crate) const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// What of `service` a Docker engine (local, over SSH, a fleet's hosts, a swarm's nodes) refuses.
pub(crate) fn of(service: &Service) -> Vec<Limit> {
    let r = &service.resources;
    let mut out = Vec::new();
    let mut refuse = |what: String| out.push(Limit { service: service.name.clone(), what, refused: true });
    if let Some(c) = r.cpus.filter(|c| *c < MIN_CPUS) {
        refuse(format!("cpus {c}: the Docker engine's smallest CPU limit is {MIN_CPUS}"));
    }
    if let Some(m) = r.memory_limit_bytes().filter(|m| *m < MIN_MEMORY_BYTES) {
        refuse(format!("memory of {m} bytes: the Docker engine's smallest memory limit is 6 MiB"));
    }
    if let Some(m) = r.memory_reservation.filter(|m| *m < MIN_MEMORY_BYTES) {
        refuse(format!("memory reservation of {m} bytes: the Docker engine's smallest is 6 MiB"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resources;

    fn limits(r: Resources) -> Vec<Limit> {
        of(&Service::builder("api").image("a:1").resources(r).build().expect("a valid service"))
    }

    #[test]
    fn below_the_engines_minimums_is_refused_and_at_them_is_not() {
        assert!(limits(Resources::new().cpus(0.01).memory_mb(6)).is_empty());
        let low = limits(Resources::new().cpus(0.005).memory_mb(4).memory_reservation(1024 * 1024));
        assert_eq!(low.len(), 3, "{low:?}");
        assert!(low.iter().all(|l| l.refused && l.service == "api"));
        assert!(low[1].what.contains("6 MiB"), "{}", low[1].what);
    }
}
