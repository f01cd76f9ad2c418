//! Where a rollout picks its batches: [`batches`] splits the slots to replace as the strategy says
//! (Kubernetes' `max_surge` / `max_unavailable` arithmetic), [`limit_hosts`] keeps each batch to at
//! most `max_hosts` hosts. Pure functions, unit-tested.

use crate::backend::Instance;
use crate::model::Strategy;

/// Whether any of `old` publishes a host port `svc` publishes as fixed (a new instance could not
/// bind it while they run). Instances read without their ports count as holding them.
pub(super) fn holds_ports<'i>(svc: &crate::model::Service, mut old: impl Iterator<Item = &'i Instance>) -> bool {
    let fixed: Vec<u16> = svc
        .ports
        .iter()
        .filter_map(|p| match p.publish {
            crate::model::Publish::Fixed(h) => Some(h),
            _ => None,
        })
        .collect();
    old.any(|i| {
        (i.is_running() && i.published.is_empty() && !fixed.is_empty())
            || i.published.iter().any(|p| fixed.contains(&p.host_port))
    })
}

/// One batch: slots whose old instance stops before the new one starts, and slots whose old
/// instance stops after the new one is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub stop_first: Vec<u32>,
    pub start_first: Vec<u32>,
}

/// Splits the slots to replace into batches, as the strategy says. `replicas` is the wanted count.
pub(crate) fn batches(strategy: &Strategy, replicas: u32, slots: &[u32]) -> Vec<Batch> {
    if slots.is_empty() {
        return Vec::new();
    }
    let all = |stop_first: bool| {
        let s = slots.to_vec();
        vec![if stop_first {
            Batch { stop_first: s, start_first: Vec::new() }
        } else {
            Batch { stop_first: Vec::new(), start_first: s }
        }]
    };
    match strategy {
        Strategy::Recreate => all(true),
        Strategy::Rolling { max_surge, max_unavailable } => {
            let surge = max_surge.resolve(replicas, true);
            let mut unavailable = max_unavailable.resolve(replicas, false);
            if surge == 0 && unavailable == 0 {
                unavailable = 1; // as Kubernetes does when percentages round both to 0
            }
            let size = usize::try_from(surge.saturating_add(unavailable).max(1)).unwrap_or(usize::MAX);
            slots
                .chunks(size)
                .map(|chunk| {
                    let u = usize::try_from(unavailable).unwrap_or(usize::MAX).min(chunk.len());
                    Batch { stop_first: chunk[..u].to_vec(), start_first: chunk[u..].to_vec() }
                })
                .collect()
        }
        // Start-first, blue/green and canary start the whole new set beside the old one.
        _ => all(false),
    }
}

/// Splits batches so that none touches more than `max` hosts (`host_of` gives a slot's host).
pub(crate) fn limit_hosts<'a>(plan: Vec<Batch>, host_of: impl Fn(u32) -> Option<&'a str>, max: u32) -> Vec<Batch> {
    let mut out = Vec::new();
    for batch in plan {
        let mut current = Batch { stop_first: Vec::new(), start_first: Vec::new() };
        let mut hosts: Vec<Option<&str>> = Vec::new();
        // Grouped by host, so that each part is whole hosts.
        let mut tagged: Vec<(u32, bool)> =
            batch.stop_first.iter().map(|s| (*s, true)).chain(batch.start_first.iter().map(|s| (*s, false))).collect();
        tagged.sort_by_key(|(slot, _)| host_of(*slot));
        for (slot, stop_first) in tagged {
            let h = host_of(slot);
            if !hosts.contains(&h) {
                if hosts.len() as u32 >= max {
                    out.push(std::mem::replace(
                        &mut current,
                        Batch { stop_first: Vec::new(), start_first: Vec::new() },
                    ));
                    hosts.clear();
                }
                hosts.push(h);
            }
            if stop_first {
                current.stop_first.push(slot);
            } else {
                current.start_first.push(slot);
            }
        }
        if !current.stop_first.is_empty() || !current.start_first.is_empty() {
            out.push(current);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Amount;

    fn rolling(surge: Amount, unavailable: Amount) -> Strategy {
        Strategy::Rolling { max_surge: surge, max_unavailable: unavailable }
    }

    #[test]
    fn a_listener_moved_to_other_ports_holds_none_of_them() {
        let listener = |port: u16| {
            crate::Ingress::builder()
                .image("caddy:2")
                .http(crate::Port::tcp(80).publish(port))
                .build()
                .map(|i| i.service().clone())
                .unwrap()
        };
        let mut old = crate::backend::Instance::sample("ingress", crate::ServiceKind::Service, 0, "h", "i");
        old.published = vec![crate::backend::PublishedPort {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port: 8080,
        }];
        assert!(holds_ports(&listener(8080), [&old].into_iter()), "the same port is held");
        assert!(!holds_ports(&listener(8081), [&old].into_iter()), "another port is free to take");
        old.published.clear();
        assert!(
            holds_ports(&listener(8081), [&old].into_iter()),
            "a running instance read without ports may hold them"
        );
    }

    #[test]
    fn one_surge_no_unavailable_replaces_one_at_a_time_start_first() {
        let b = batches(&rolling(Amount::count(1), Amount::count(0)), 3, &[0, 1, 2]);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.stop_first.is_empty() && b.start_first.len() == 1));
    }

    #[test]
    fn kubernetes_defaults_on_four_replicas() {
        // 25 % of 4: surge 1 (up), unavailable 1 (down): batches of two, one of each kind.
        let b = batches(&rolling(Amount::percent(25), Amount::percent(25)), 4, &[0, 1, 2, 3]);
        assert_eq!(
            b,
            vec![
                Batch { stop_first: vec![0], start_first: vec![1] },
                Batch { stop_first: vec![2], start_first: vec![3] },
            ]
        );
    }

    #[test]
    fn percentages_rounding_to_zero_still_progress() {
        // 25 % of 3: surge 1, unavailable 0.
        let b = batches(&rolling(Amount::percent(25), Amount::percent(25)), 3, &[0, 1, 2]);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.stop_first.is_empty()));
        // 10 % of 2 for both: surge rounds up to 1.
        let b = batches(&rolling(Amount::percent(10), Amount::percent(10)), 2, &[0, 1]);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn batches_touch_at_most_max_hosts() {
        // 4 replicas round 2 hosts (a, b, a, b); start-first would replace all at once.
        let host = |s: u32| Some(if s.is_multiple_of(2) { "a" } else { "b" });
        let plan = limit_hosts(batches(&Strategy::StartFirst, 4, &[0, 1, 2, 3]), host, 1);
        assert_eq!(
            plan,
            vec![
                Batch { stop_first: vec![], start_first: vec![0, 2] },
                Batch { stop_first: vec![], start_first: vec![1, 3] },
            ],
            "one host at a time, all of its slots together"
        );
        // Two hosts at once keep the batch whole; a rolling batch keeps its stop-first part.
        let plan = limit_hosts(batches(&Strategy::Recreate, 4, &[0, 1, 2, 3]), host, 2);
        assert_eq!(plan, vec![Batch { stop_first: vec![0, 2, 1, 3], start_first: vec![] }]);
        let rolling = Strategy::Rolling { max_surge: Amount::count(2), max_unavailable: Amount::count(1) };
        let plan = limit_hosts(batches(&rolling, 3, &[0, 1, 2]), host, 1);
        assert_eq!(
            plan,
            vec![
                Batch { stop_first: vec![0], start_first: vec![2] },
                Batch { stop_first: vec![], start_first: vec![1] }
            ]
        );
    }

    #[test]
    fn recreate_and_start_first_are_single_batches() {
        assert_eq!(
            batches(&Strategy::Recreate, 3, &[0, 1, 2]),
            vec![Batch { stop_first: vec![0, 1, 2], start_first: vec![] }]
        );
        assert_eq!(batches(&Strategy::StartFirst, 3, &[1]), vec![Batch { stop_first: vec![], start_first: vec![1] }]);
        assert!(batches(&Strategy::StartFirst, 3, &[]).is_empty());
    }

    #[test]
    fn max_unavailable_only_is_stop_first() {
        let b = batches(&rolling(Amount::count(0), Amount::count(2)), 5, &[0, 1, 2, 3, 4]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], Batch { stop_first: vec![0, 1], start_first: vec![] });
        assert_eq!(b[2], Batch { stop_first: vec![4], start_first: vec![] });
    }
}
