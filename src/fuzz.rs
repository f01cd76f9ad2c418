//! The property suite over the builders and validation (part of the reliability suite; see the
//! README's Tests section). Generated descriptions, hostile values included (NUL, huge durations and
//! sizes, odd names, references Docker refuses), go through the public builders. Whatever they
//! accept must never panic anywhere after (getters, planning, the container-create body) and must be
//! valid for the engine: the create body is checked against Docker's and the kernel's rules, stated
//! here again independently of the validation code.
//!
//! `HM_FUZZ_CASES` sets the number of cases (default 100 000).

use std::collections::HashMap;
use std::time::Duration;

use proptest::option::weighted;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::backend::docker::create_body;
use crate::backend::{Instance, Scope};
use crate::model::{
    Amount, CanaryStep, Condition, Environment, HealthCheck, OnFailure, Port, Resources, RestartPolicy, Rollout,
    Secret, Service, ServiceBuilder, Volume,
};
use crate::plan::spec::Template;

fn cases() -> u32 {
    std::env::var("HM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// Strings a user (or an attacker feeding a user's program) might pass: mostly ordinary, one in
/// five hostile.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "[a-z][a-z0-9-]{0,10}",
        20 => "/[a-z]{1,6}(/[a-z0-9]{1,4})?",
        15 => "[A-Za-z0-9 ._:=/-]{0,16}",
        1 => Just(String::new()),
        1 => Just("/".to_string()),
        1 => Just("relative/dir".to_string()),
        1 => Just("a\0b".to_string()),
        1 => Just("é".to_string()),
        1 => Just("A B".to_string()),
        1 => Just("x".repeat(70)),
        1 => Just("y".repeat(132_000)),
        1 => "\\PC{0,16}",
        1 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

/// Environment variable names, mostly ordinary.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![20 => "[A-Z_][A-Z0-9_]{0,8}", 1 => text()]
}

fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("postgres:15".to_string()),
        2 => Just("registry.example.com:5000/team/api:2".to_string()),
        2 => Just("api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()),
        1 => Just("Postgres".to_string()),
        1 => Just("api:".to_string()),
        1 => Just("a b".to_string()),
        1 => Just("api@sha256:xyz".to_string()),
        24 => "[a-z]{1,8}([._-][a-z0-9]{1,3})?(/[a-z0-9]{1,6})?(:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,11})?",
        1 => text(),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
        1 => Just(Duration::from_secs(u64::MAX)),
        1 => Just(Duration::from_nanos(1)),
        60 => (1u64..100_000).prop_map(Duration::from_millis),
        1 => any::<u64>().prop_map(Duration::from_secs),
    ]
}

fn big_u32() -> impl Strategy<Value = u32> {
    prop_oneof![2 => Just(0u32), 40 => 1u32..4, 1 => Just(u32::MAX), 1 => Just(10_001), 1 => any::<u32>()]
}

fn health() -> impl Strategy<Value = HealthCheck> {
    let probe = prop_oneof![
        (1u16..=65535, prop_oneof![9 => "/[a-z]{0,8}", 1 => text()]).prop_map(|(p, path)| HealthCheck::http(p, path)),
        prop_oneof![20 => 1u16..=65535, 1 => Just(0u16)].prop_map(HealthCheck::tcp),
        proptest::collection::vec(text(), 0..3).prop_map(HealthCheck::exec),
        Just(HealthCheck::docker()),
        text().prop_map(HealthCheck::log_line),
    ];
    let d = || prop_oneof![6 => (1u64..2_000).prop_map(Duration::from_millis), 1 => duration()];
    let n = || prop_oneof![6 => 1u32..10, 1 => big_u32()];
    (probe, d(), d(), d(), d(), n(), n(), 100u16..600, 100u16..600).prop_map(|(h, i, si, t, sp, r, s, lo, hi)| {
        h.interval(i)
            .start_interval(si)
            .timeout(t)
            .start_period(sp)
            .retries(r)
            .success_threshold(s)
            .expect_status(lo..hi)
    })
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        big_u32().prop_map(Amount::count),
        (0u32..120).prop_map(Amount::percent),
        big_u32().prop_map(Amount::percent)
    ]
}

fn rollout() -> impl Strategy<Value = Rollout> {
    let base = prop_oneof![
        Just(Rollout::recreate()),
        Just(Rollout::start_first()),
        (amount(), amount()).prop_map(|(s, u)| Rollout::rolling().max_surge(s).max_unavailable(u)),
        Just(Rollout::blue_green()),
        proptest::collection::vec(
            prop_oneof![any::<u8>().prop_map(CanaryStep::weight), duration().prop_map(CanaryStep::pause)],
            0..4
        )
        .prop_map(Rollout::canary),
    ];
    let d = || prop_oneof![12 => (1u64..2_000).prop_map(Duration::from_millis), 1 => duration()];
    (base, d(), proptest::option::weighted(0.2, duration()), d(), d(), any::<u32>(), 0u8..3).prop_map(
        |(r, min_ready, deadline, drain, delay, hosts, fail)| {
            let r = r.min_ready(min_ready).drain(drain).batch_delay(delay).max_hosts(hosts);
            let r = match deadline {
                Some(d) => r.deadline(d),
                None => r,
            };
            r.on_failure([OnFailure::Rollback, OnFailure::Pause, OnFailure::Fail][usize::from(fail)])
        },
    )
}

fn volume() -> impl Strategy<Value = Volume> {
    let source = prop_oneof![15 => "[a-z][a-z0-9-]{0,8}", 1 => text()];
    let target = prop_oneof![15 => "/[a-z]{1,8}", 1 => text()];
    (0u8..3, source, target, any::<bool>()).prop_map(|(kind, source, target, ro)| {
        let v = match kind {
            0 => Volume::named(source),
            1 => Volume::bind(source),
            _ => Volume::tmpfs(),
        }
        .at(target);
        if ro {
            v.read_only()
        } else {
            v
        }
    })
}

fn port() -> impl Strategy<Value = Port> {
    let number = || prop_oneof![8 => 1u16..=65535, 1 => Just(0u16)];
    (number(), any::<bool>(), 0u8..6, number()).prop_map(|(p, udp, publish, host)| {
        let port = if udp { Port::udp(p) } else { Port::tcp(p) };
        match publish {
            0..=2 => port,
            3..=4 => port.publish_ephemeral(),
            _ => port.publish(host),
        }
    })
}

/// A service builder with arbitrary settings (each applied or not).
fn service() -> impl Strategy<Value = ServiceBuilder> {
    let strings = || proptest::collection::vec((key(), text()), 0..3);
    let name = prop_oneof![20 => "[a-z][a-z0-9-]{0,12}[a-z0-9]", 1 => text()];
    let cpus = prop_oneof![30 => 0.01f64..8.0, 1 => any::<f64>(), 1 => Just(1e-12), 1 => Just(f64::NAN)];
    let memory = prop_oneof![30 => 6u64..8192, 1 => any::<u64>(), 1 => Just(1u64 << 44), 1 => Just(0u64)];
    (
        (
            prop_oneof![4 => Just(false), 1 => Just(true)],
            name,
            image(),
            strings(),
            strings(),
            proptest::collection::vec(text(), 0..3),
        ),
        (proptest::collection::vec(port(), 0..2), proptest::collection::vec(volume(), 0..2)),
        (weighted(0.3, cpus), weighted(0.3, memory), big_u32(), duration()),
        (weighted(0.5, health()), weighted(0.4, rollout()), weighted(0.2, duration())),
        (weighted(0.2, text()), weighted(0.2, prop_oneof![9 => "/[a-z]{1,6}", 1 => text()]), strings(), 0u8..4),
    )
        .prop_map(|(a, b, c, d, e)| {
            let (job, name, img, env, secrets, command) = a;
            let (ports, volumes) = b;
            let (cpus, memory, replicas, grace) = c;
            let (check, rollout, deadline) = d;
            let (user, workdir, labels, restart) = e;
            let name = if name.is_empty() { "svc".to_string() } else { name };
            let mut s = if job { Service::job(name) } else { Service::builder(name) }.image(img);
            // A job with replicas or a health check is refused; mostly leave them out.
            let (replicas, check) = if job && replicas % 10 != 0 { (1, None) } else { (replicas, check) };
            for (k, v) in env {
                s = s.env(k, v);
            }
            // Secret values from a small pool of distinctive ones: every value made is remembered
            // by the scrubber for the life of the process.
            for (n, (k, v)) in secrets.into_iter().enumerate() {
                let value = match v.len() % 16 {
                    0 => "fz-secret-\0-nul".to_string(),
                    1 => format!("fz-secret-big-{}", "z".repeat(140_000)),
                    2 => "fz-secret-\"quoted\"".to_string(),
                    _ => format!("fz-secret-{n}"),
                };
                s = s.secret(k, Secret::new(value));
            }
            if !command.is_empty() {
                s = s.command(command);
            }
            for p in ports {
                s = s.port(p);
            }
            for v in volumes {
                s = s.volume(v);
            }
            let mut r = Resources::new();
            if let Some(c) = cpus {
                r = r.cpus(c);
            }
            if let Some(m) = memory {
                r = r.memory_mb(m);
            }
            s = s.resources(r).replicas(replicas).stop_grace_period(grace);
            if let Some(h) = check {
                s = s.health(h);
            }
            if let Some(r) = rollout {
                s = s.rollout(r);
            }
            if let Some(d) = deadline {
                s = s.deadline(d);
            }
            if let Some(u) = user {
                s = s.user(u);
            }
            if let Some(w) = workdir {
                s = s.workdir(w);
            }
            for (k, v) in labels {
                s = s.label(k, v);
            }
            s.restart(
                [RestartPolicy::No, RestartPolicy::Always, RestartPolicy::UnlessStopped, RestartPolicy::OnFailure(3)]
                    [usize::from(restart)],
            )
        })
}

/// Docker's reference grammar, as a regular expression (distribution/reference), independent of
/// the validation code.
fn docker_accepts_reference(r: &str) -> bool {
    use std::sync::OnceLock;
    static RE: OnceLock<regex_lite::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]+)";
        let component = format!("{alnum}(?:{sep}{alnum})*");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!("(?:{domain_component}(?:\\.{domain_component})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:/{component})*");
        let tag = "[\\w][\\w.-]{0,127}";
        let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        regex_lite::Regex::new(&format!("^{name}(?::{tag})?(?:@{digest})?$")).unwrap()
    });
    re.is_match(r) && r.split(['@', ':']).next().is_some_and(|n| n.len() <= 255)
}

/// Checks what the engine receives for an accepted service against the engine's rules: one
/// that builds and that the Docker backend's plan does not refuse (its own minimums).
fn assert_valid_for_the_engine(svc: &Service, env: &Environment) {
    if !crate::backend::docker::limits::of(svc).is_empty() {
        return;
    }
    let t = Template::new(env, svc, "sha256:0123456789abcdef");
    let scope = Scope::new("p", "e");
    let spec = t.instance(&scope, 0, "p-e-svc-0-abcdef".into());
    let body =
        create_body(&spec, Some(std::net::Ipv4Addr::LOCALHOST.into())).expect("an accepted service has a create body");
    if let crate::model::ImageSource::Reference(r) = &svc.image {
        assert!(docker_accepts_reference(r), "accepted an image reference Docker refuses: {r:?}");
    }
    for e in body.env.iter().flatten() {
        assert!(!e.contains('\0'), "NUL in an environment entry");
        assert!(e.len() < 128 * 1024, "environment entry of {} bytes", e.len());
        assert!(e.split_once('=').is_some_and(|(k, _)| !k.is_empty()), "entry without a name");
    }
    for a in body.cmd.iter().chain(body.entrypoint.iter()).flatten() {
        assert!(!a.contains('\0'), "NUL in an argument");
    }
    if let Some(w) = &body.working_dir {
        assert!(w.starts_with('/') && !w.contains('\0'), "working directory {w:?}");
    }
    if let Some(u) = &body.user {
        assert!(!u.is_empty() && !u.contains('\0'), "user {u:?}");
    }
    let host = body.host_config.clone().unwrap_or_default();
    if let Some(n) = host.nano_cpus {
        assert!(n >= 10_000_000, "cpus below 0.01 (NanoCPUs {n})");
    }
    if let Some(m) = host.memory {
        assert!(m >= 6 * 1024 * 1024, "memory below 6 MiB ({m})");
    }
    let mut targets = Vec::new();
    for m in host.mounts.iter().flatten() {
        let target = m.target.clone().unwrap_or_default();
        let trimmed = target.trim_end_matches('/').to_string();
        assert!(target.starts_with('/') && !trimmed.is_empty(), "mount target {target:?}");
        assert!(!targets.contains(&trimmed), "two mounts on {target:?}");
        targets.push(trimmed);
        if let Some(src) = &m.source {
            assert!(!src.is_empty() && !src.contains('\0'), "mount source {src:?}");
        }
    }
    assert!(body.stop_timeout.is_some_and(|t| t >= 0), "stop timeout {:?}", body.stop_timeout);
    for (k, v) in body.labels.iter().flatten() {
        assert!(!k.is_empty() && !k.contains('\0') && !v.contains('\0'), "label {k:?}");
    }
}

/// Every getter and computation on an accepted service, which must not panic.
fn exercise(svc: &Service, env: &Environment) {
    let _ = (svc.deadline(), svc.health().map(HealthCheck::startup_budget), env.deadline(), env.lock_timeout());
    let templates: HashMap<String, Template> =
        env.services().iter().map(|s| (s.name.clone(), Template::new(env, s, "sha256:1"))).collect();
    // Planning against nothing, and against a stale instance in every slot up to 3.
    let plan = crate::plan::compute(env, &templates, &[], &HashMap::new());
    let _ = plan.to_string();
    let observed: Vec<Instance> =
        (0..svc.replicas().min(3)).map(|slot| Instance::sample(&svc.name, svc.kind, slot, "old", "sha256:0")).collect();
    let plan = crate::plan::compute(env, &templates, &observed, &HashMap::new());
    let _ = plan.to_string();
    let slots: Vec<u32> = (0..svc.replicas().min(50)).collect();
    let _ = crate::engine::rollout_batches(svc.rollout().strategy(), svc.replicas(), &slots);
}

#[test]
fn accepted_descriptions_never_panic_and_are_valid_for_the_engine() {
    // The generated strategies nest deeply: a thread with room for them.
    let run = std::thread::Builder::new().stack_size(256 << 20).spawn(run_cases).expect("a thread for the cases");
    if let Err(e) = run.join() {
        std::panic::resume_unwind(e);
    }
}

fn run_cases() {
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let refused = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    let env_settings = (
        weighted(0.2, duration()),
        weighted(0.2, duration()),
        weighted(0.2, 0usize..8),
        weighted(0.1, (key(), text())),
    );
    let result = runner.run(
        &(service(), proptest::option::of(text()), any::<bool>(), env_settings),
        |(builder, dep, ingress, settings)| {
            let svc = match builder.build() {
                Ok(s) => s,
                Err(e) => {
                    let why = match &e {
                        crate::ValidationError::InvalidValue { field, .. } => (*field).to_string(),
                        other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or_default().to_string(),
                    };
                    if let Ok(mut r) = refused.lock() {
                        *r.entry(why).or_default() += 1;
                    }
                    return Ok(());
                }
            };
            let mut env = Environment::builder("p", "e").service(svc.clone());
            let (deadline, lock_timeout, history, shared) = settings;
            if let Some(d) = deadline {
                env = env.deadline(d);
            }
            if let Some(d) = lock_timeout {
                env = env.lock_timeout(d);
            }
            if let Some(n) = history {
                env = env.revision_history(n);
            }
            if let Some((k, v)) = shared {
                env = env.env(k, v);
            }
            if let Some(d) = dep {
                let other = Service::builder("other").image("x").depends_on(d, Condition::Started).build();
                if let Ok(o) = other {
                    env = env.service(o);
                }
            }
            if ingress {
                if let Some(p) = svc.ports().first() {
                    let route = crate::model::Route::to(svc.name(), p.container_port());
                    if let Ok(i) = crate::model::Ingress::builder().image("caddy:2").route(route).build() {
                        env = env.ingress(i);
                    }
                }
            }
            let Ok(env) = env.build() else { return Ok(()) };
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_valid_for_the_engine(&svc, &env);
            exercise(&svc, &env);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let accepted = accepted.into_inner();
    println!("{} generated descriptions, {accepted} accepted and checked", cases());
    println!("refused, by first reason: {:?}", refused.into_inner().unwrap_or_default());
    assert!(accepted > u64::from(cases()) / 100, "the generator must produce valid descriptions too ({accepted})");
}
