//! From a [`ServiceDeployment`] to a Swarm `ServiceSpec`, and what of a service Swarm's own
//! update cannot honour ([`limits`]).
//!
//! | ours | Swarm |
//! |---|---|
//! | replicas / global / job | `Mode.Replicated.Replicas` / `Mode.Global` / one replica with restart `none`, run to its exit (not `ReplicatedJob`: Swarm 20.10 leaves a job's task containers behind when the service is removed, moby/moby#42789) |
//! | image | `ContainerSpec.Image`, pinned to its digest by the manager (`--with-registry-auth`) |
//! | env / secrets | `Env` / a Swarm secret per value, mounted at `/run/secrets/KEY`, with `KEY_FILE` set |
//! | ports | host-mode publishing (no IPVS here), `dnsrr` endpoints; ephemeral ports chosen per task |
//! | volumes | `Mounts` (named volumes are the environment's, created on the node by the engine) |
//! | resources | `Resources.Limits` |
//! | restart | `RestartPolicy` (`none` for jobs) |
//! | role | a node label `io.harbormaster.role.ROLE=true` and a placement constraint on it |
//! | health check (exec, image) | `ContainerSpec.HealthCheck` (`CMD` form: scratch images have no shell) |
//! | health check (HTTP, TCP) | probed by the library once Swarm's update converged |
//! | rollout | `UpdateConfig`: parallelism, order, monitor (`min_ready`), failure action (`drain`: no ingress rotation to leave, not used) |

use std::collections::HashMap;
use std::time::Duration;

use std::str::FromStr;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig,
    Limit as SwarmLimit, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use crate::backend::{label, Limit, ServiceDeployment};
use crate::model::{OnFailure, Probe, Publish, RestartPolicy, Service, ServiceKind, Strategy, VolumeSource};

/// The label a node carries for each role mapped to it.
pub(super) fn role_label(role: &str) -> String {
    format!("io.harbormaster.role.{role}")
}

/// The Swarm service name of a service: `project-environment-service`.
pub(super) fn service_name(d: &ServiceDeployment<'_>) -> String {
    format!("{}-{}", d.scope.qualified(), d.service.name)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What Swarm's own update cannot honour as the library would.
pub(crate) fn limits(service: &Service) -> Vec<Limit> {
    let mut out = Vec::new();
    let mut say = |what: String, refused: bool| out.push(Limit { service: service.name.clone(), what, refused });
    let r = &service.rollout;
    match &r.strategy {
        Strategy::BlueGreen | Strategy::Canary { .. } => say(
            "Swarm has no ingress traffic split: blue/green and canary rollouts cannot run on it; use \
             Rollout::rolling() or Rollout::start_first()"
                .into(),
            true,
        ),
        Strategy::Rolling { max_surge, max_unavailable } => {
            let surge = max_surge.resolve(service.replicas, true);
            let unavailable = max_unavailable.resolve(service.replicas, false);
            if surge > 0 && unavailable > 0 {
                say(
                    format!(
                        "Swarm replaces {} task(s) at a time, either starting each new one first or stopping \
                         the old one first, not both: surge {surge} and unavailable {unavailable} run as \
                         start-first batches of {}",
                        surge.max(1),
                        surge.max(1)
                    ),
                    false,
                );
            }
        }
        Strategy::Recreate | Strategy::StartFirst => {}
    }
    if r.manual_promotion {
        say("Swarm's update cannot wait for a manual promotion".into(), true);
    }
    if r.max_hosts.is_some() {
        say("Swarm's update does not limit how many nodes change at once (max_hosts is ignored)".into(), false);
    }
    if r.on_failure == OnFailure::Fail {
        say(
            "Swarm continues past a failed task with failure_action `continue`; the library reports the failure".into(),
            false,
        );
    }
    if let Some(h) = &service.health {
        match &h.probe {
            Probe::Http { port, .. } | Probe::Tcp { port } => say(
                format!(
                    "Swarm runs health checks inside the container, so the {} check on port {port} is probed by \
                     the library once Swarm's update converged (its update waits only for tasks running for \
                     `min_ready`); a failed check rolls the service back. HealthCheck::exec gates each task",
                    if matches!(h.probe, Probe::Http { .. }) { "HTTP" } else { "TCP" }
                ),
                false,
            ),
            Probe::LogLine { .. } => {
                say("Swarm cannot gate tasks on a log line; use an exec or HTTP check".into(), true)
            }
            Probe::Exec { .. } | Probe::Docker => {}
        }
        if h.success_threshold > 1 {
            say("Swarm counts one passing check as healthy (success_threshold is ignored)".into(), false);
        }
    }
    for why in super::options::refusals(service) {
        say(why, true);
    }
    for key in service.secrets.keys() {
        say(
            format!(
                "secret {key} is a Swarm secret, mounted at /run/secrets/{key} with {key}_FILE pointing at it \
                 (the `_FILE` convention of the official images): the variable {key} itself is not set"
            ),
            false,
        );
    }
    out
}

/// Swarm's update config from the service's rollout.
fn update_config(service: &Service) -> (ServiceSpecUpdateConfig, ServiceSpecRollbackConfig) {
    let r = &service.rollout;
    let replicas = service.replicas.max(1);
    // Every task at once (0: all of a global service's, however many nodes it has).
    let all = if service.global { 0 } else { i64::from(replicas) };
    let (parallelism, start_first) = match &r.strategy {
        Strategy::Recreate => (all, false),
        Strategy::StartFirst | Strategy::BlueGreen | Strategy::Canary { .. } => (all, true),
        Strategy::Rolling { max_surge, max_unavailable } => {
            let surge = max_surge.resolve(replicas, true);
            let unavailable = max_unavailable.resolve(replicas, false);
            if surge > 0 {
                (i64::from(surge), true)
            } else {
                (i64::from(unavailable.max(1)), false)
            }
        }
    };
    let failure_action = match r.on_failure {
        OnFailure::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        OnFailure::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        OnFailure::Fail => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
    };
    // Swarm watches each updated task for `monitor` before it counts as updated.
    let monitor = r.min_ready.max(Duration::from_millis(500));
    let update = ServiceSpecUpdateConfig {
        parallelism: Some(parallelism),
        delay: Some(nanos(r.batch_delay)),
        failure_action: Some(failure_action),
        monitor: Some(nanos(monitor)),
        max_failure_ratio: Some(0.0),
        order: Some(if start_first {
            ServiceSpecUpdateConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
        }),
    };
    // Going back to the version that ran needs no long watch.
    let rollback = ServiceSpecRollbackConfig {
        parallelism: Some(parallelism),
        delay: Some(0),
        failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
        monitor: Some(nanos(monitor.min(Duration::from_secs(2)))),
        max_failure_ratio: Some(0.0),
        order: Some(if start_first {
            ServiceSpecRollbackConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecRollbackConfigOrderEnum::STOP_FIRST
        }),
    };
    (update, rollback)
}

/// The container health check Swarm runs, where it can run ours.
fn health_config(service: &Service) -> Option<HealthConfig> {
    let h = service.health.as_ref()?;
    let Probe::Exec { command } = &h.probe else { return None };
    let mut test = vec!["CMD".to_string()];
    test.extend(command.iter().cloned());
    Some(HealthConfig {
        test: Some(test),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.failure_threshold)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    })
}

/// The service spec, its secrets referenced by (name, key) from `secrets`.
pub(super) fn service_spec(
    d: &ServiceDeployment<'_>,
    network: &str,
    secrets: &[(String, String, String)],
) -> ServiceSpec {
    let t = d.template;
    let s = d.service;
    let mut labels: HashMap<String, String> = d.scope.labels().into_iter().collect();
    labels.insert(label::SERVICE.into(), s.name.clone());
    labels.insert(label::KIND.into(), label::kind_value(s.kind).into());
    labels.insert(label::SPEC_HASH.into(), d.spec_hash.to_string());
    if let Some(spec) = t.annotations.get(label::SPEC) {
        labels.insert(label::SPEC.into(), spec.clone());
    }
    labels.insert(label::IMAGE.into(), t.image_id.clone());
    // A task's container keeps one map: the annotations are labels too.
    let mut container_labels: HashMap<String, String> =
        t.labels.iter().chain(&t.annotations).map(|(k, v)| (k.clone(), v.clone())).collect();
    container_labels.remove(label::SLOT);
    container_labels.insert(label::IMAGE.into(), t.image_id.clone());
    let mut env: Vec<String> = t.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let secret_refs = secrets
        .iter()
        .map(|(id, name, key)| {
            env.push(format!("{key}_FILE=/run/secrets/{key}"));
            TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(key.clone()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                secret_id: Some(id.clone()),
                secret_name: Some(name.clone()),
            }
        })
        .collect();
    let mounts = t
        .volumes
        .iter()
        .map(|v| {
            let (typ, source) = match &v.source {
                VolumeSource::Named(n) => (MountType::VOLUME, Some(d.scope.volume_name(n))),
                VolumeSource::External(n) => (MountType::VOLUME, Some(n.clone())),
                VolumeSource::Bind(p) => (MountType::BIND, Some(p.display().to_string())),
                VolumeSource::Tmpfs => (MountType::TMPFS, None),
            };
            let o = &v.options;
            Mount {
                target: Some(v.target.clone()),
                source,
                typ: Some(typ),
                read_only: Some(v.read_only),
                bind_options: o.propagation.map(|p| MountBindOptions {
                    propagation: MountBindOptionsPropagationEnum::from_str(p.as_str()).ok(),
                    ..Default::default()
                }),
                volume_options: o.no_copy.then(|| MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
                tmpfs_options: (o.tmpfs_size.is_some() || o.tmpfs_mode.is_some()).then(|| MountTmpfsOptions {
                    size_bytes: o.tmpfs_size.and_then(|b| i64::try_from(b).ok()),
                    mode: o.tmpfs_mode.map(i64::from),
                    options: None,
                }),
                ..Default::default()
            }
        })
        .collect();
    let mut container = TaskSpecContainerSpec {
        image: Some(t.image_pull.clone().unwrap_or_else(|| t.image_id.clone())),
        labels: Some(container_labels),
        command: t.entrypoint.clone(),
        args: t.command.clone(),
        env: Some(env),
        dir: t.workdir.clone(),
        user: t.user.clone(),
        mounts: Some(mounts),
        stop_grace_period: Some(nanos(t.stop_grace)),
        health_check: health_config(s),
        secrets: Some(secret_refs),
        ..Default::default()
    };
    super::options::apply(&mut container, &s.container);
    let limits = SwarmLimit {
        nano_cpus: t.resources.cpus.map(|c| (c * 1e9) as i64),
        memory_bytes: t.resources.memory_limit_bytes().and_then(|m| i64::try_from(m).ok()),
        pids: t.resources.pids,
    };
    let reservations = t
        .resources
        .memory_reservation
        .map(|m| ResourceObject { memory_bytes: i64::try_from(m).ok(), ..Default::default() });
    let restart = if s.kind == ServiceKind::Job {
        TaskSpecRestartPolicy { condition: Some(TaskSpecRestartPolicyConditionEnum::NONE), ..Default::default() }
    } else {
        match t.restart {
            RestartPolicy::No => TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            },
            RestartPolicy::OnFailure(n) => TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                max_attempts: (n > 0).then_some(i64::from(n)),
                delay: Some(nanos(Duration::from_millis(200))),
                ..Default::default()
            },
            RestartPolicy::Always | RestartPolicy::UnlessStopped => TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(nanos(Duration::from_millis(200))),
                ..Default::default()
            },
        }
    };
    let mut constraints: Vec<String> = s.placement.clone();
    if let Some(r) = s.role.as_ref().filter(|_| !d.hosts.is_empty()) {
        constraints.push(format!("node.labels.{}==true", role_label(r)));
    }
    let constraints = (!constraints.is_empty()).then_some(constraints);
    let ports = t
        .ports
        .iter()
        .filter(|p| p.publishing() != Publish::No)
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol {
                crate::model::Protocol::Tcp => bollard::models::EndpointPortConfigProtocolEnum::TCP,
                crate::model::Protocol::Udp => bollard::models::EndpointPortConfigProtocolEnum::UDP,
            }),
            target_port: Some(i64::from(p.container_port())),
            published_port: match p.publishing() {
                Publish::Fixed(n) => Some(i64::from(n)),
                _ => None,
            },
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            name: None,
        })
        .collect();
    // A job is one replica that is never restarted: it runs to its exit once per service.
    let replicas = if s.kind == ServiceKind::Job { 1 } else { s.replicas };
    let mode = if s.global && s.kind == ServiceKind::Service {
        // One task on every node its placement allows.
        ServiceSpecMode { global: Some(Default::default()), ..Default::default() }
    } else {
        ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }),
            ..Default::default()
        }
    };
    let (update, rollback) = update_config(s);
    ServiceSpec {
        name: Some(service_name(d)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources { limits: Some(limits), reservations, ..Default::default() }),
            log_driver: super::options::log_driver(&s.container),
            restart_policy: Some(restart),
            placement: Some(TaskSpecPlacement { constraints, ..Default::default() }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_string()),
                aliases: Some(std::iter::once(s.name.clone()).chain(s.aliases.iter().cloned()).collect()),
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config: (s.kind == ServiceKind::Service).then_some(update),
        rollback_config: (s.kind == ServiceKind::Service).then_some(rollback),
        networks: None,
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: Some(ports) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Amount, HealthCheck, Rollout};

    fn svc(rollout: Rollout) -> Service {
        Service::builder("api").image("api:1").replicas(4).rollout(rollout).build().unwrap()
    }

    #[test]
    fn a_global_service_updates_every_node_at_once_unless_rolling() {
        let global = Service::builder("agent").image("a:1").global().rollout(Rollout::start_first()).build().unwrap();
        let (u, _) = update_config(&global);
        assert_eq!(u.parallelism, Some(0), "0: every task at once");
        let rolling = global.to_builder().rollout(Rollout::rolling()).build().unwrap();
        assert_eq!(update_config(&rolling).0.parallelism, Some(1));
    }

    #[test]
    fn rolling_maps_onto_start_first_batches_of_the_surge() {
        let (u, _) =
            update_config(&svc(Rollout::rolling().max_surge(Amount::count(2)).max_unavailable(Amount::count(0))));
        assert_eq!(u.parallelism, Some(2));
        assert_eq!(u.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(u.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        let (u, _) = update_config(&svc(Rollout::recreate()));
        assert_eq!((u.parallelism, u.order), (Some(4), Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)));
    }

    #[test]
    fn min_ready_is_the_monitor_period() {
        let (u, _) = update_config(&svc(Rollout::rolling().min_ready(Duration::from_secs(3))));
        assert_eq!(u.monitor, Some(3_000_000_000));
    }

    #[test]
    fn canary_and_manual_promotion_are_refused_and_http_checks_are_noted() {
        assert!(limits(&svc(Rollout::canary([crate::model::CanaryStep::weight(10)]))).iter().any(|l| l.refused));
        assert!(limits(&svc(Rollout::blue_green().manual_promotion())).iter().any(|l| l.refused));
        let http = Service::builder("api").image("api:1").health(HealthCheck::http(8080, "/health")).build().unwrap();
        let l = limits(&http);
        assert!(l.iter().all(|l| !l.refused) && l.iter().any(|l| l.what.contains("probed by the library")), "{l:?}");
        let exec = Service::builder("api").image("api:1").health(HealthCheck::exec(["/probe"])).build().unwrap();
        assert!(limits(&exec).iter().all(|l| !l.refused && !l.what.contains("probed")), "{:?}", limits(&exec));
        assert_eq!(health_config(&exec).and_then(|h| h.test), Some(vec!["CMD".to_string(), "/probe".to_string()]));
    }
}
