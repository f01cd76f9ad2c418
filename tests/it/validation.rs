//! Every validation error, without an engine: each is typed and names what is wrong and where.

use std::time::Duration;

use harbormaster::{Condition, Environment, HealthCheck, Port, Resources, Rollout, Service, ValidationError, Volume};

fn svc(name: &str) -> harbormaster::ServiceBuilder {
    Service::builder(name).image("local/x:1")
}

fn env_of(services: Vec<Service>) -> Result<Environment, ValidationError> {
    Environment::builder("shop", "staging").services(services).build()
}

#[test]
fn invalid_names_are_rejected_with_the_rule() {
    for bad in ["", "API", "1api", "api-", "api.v2", "my api", &"a".repeat(64)] {
        let err = svc(bad).build().unwrap_err();
        assert!(matches!(err, ValidationError::InvalidName { kind: "service", .. }), "{bad:?}: {err}");
    }
    // Compose files name services `plausible_db`: the engine's DNS resolves such a name.
    assert!(svc("my_api").build().is_ok());
    let err = Environment::builder("Shop", "staging").build().unwrap_err();
    assert!(matches!(err, ValidationError::InvalidName { kind: "project", .. }));
    let err = Environment::builder("shop", "stag ing").build().unwrap_err();
    assert!(matches!(err, ValidationError::InvalidName { kind: "environment", .. }));
    let err = svc("db").volume(Volume::named("PG").at("/data")).build().unwrap_err();
    assert!(matches!(err, ValidationError::InvalidName { kind: "volume", .. }));
}

#[test]
fn duplicate_services() {
    let err = env_of(vec![svc("a").build().unwrap(), svc("a").build().unwrap()]).unwrap_err();
    assert_eq!(err, ValidationError::DuplicateService("a".into()));
}

#[test]
fn unknown_dependency() {
    let err = env_of(vec![svc("api").depends_on("db", Condition::Started).build().unwrap()]).unwrap_err();
    assert_eq!(err, ValidationError::UnknownDependency { service: "api".into(), dependency: "db".into() });
    assert!(err.to_string().contains("`api` depends on `db`"));
}

#[test]
fn dependency_cycles_are_named() {
    let a = svc("a").depends_on("b", Condition::Started).build().unwrap();
    let b = svc("b").depends_on("c", Condition::Started).build().unwrap();
    let c = svc("c").depends_on("a", Condition::Started).build().unwrap();
    let d = svc("d").depends_on("a", Condition::Started).build().unwrap();
    let err = env_of(vec![d, a, b, c]).unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    let err = svc("x").depends_on("x", Condition::Started).build().unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: x -> x");
}

#[test]
fn host_port_conflicts() {
    let a = svc("a").port(Port::tcp(80).publish(8080)).build().unwrap();
    let b = svc("b").port(Port::tcp(81).publish(8080)).build().unwrap();
    let err = env_of(vec![a, b]).unwrap_err();
    assert_eq!(err, ValidationError::HostPortConflict { port: 8080, first: "a".into(), second: "b".into() });
    // UDP and TCP on the same number do not conflict.
    let a = svc("a").port(Port::tcp(53).publish(5353)).build().unwrap();
    let b = svc("b").port(Port::udp(53).publish(5353)).build().unwrap();
    assert!(env_of(vec![a, b]).is_ok());
    // Replicas of one service cannot share a fixed host port.
    let err = svc("a").port(Port::tcp(80).publish(8080)).replicas(2).build().unwrap_err();
    assert!(matches!(err, ValidationError::HostPortConflict { port: 8080, .. }));
}

#[test]
fn services_on_different_hosts_may_publish_the_same_port() {
    let on = |name: &str, role: &str| svc(name).role(role).port(Port::tcp(80).publish(8080)).build().unwrap();
    let roles = |web: &[&str], api: &[&str]| {
        Environment::builder("shop", "prod")
            .hosts("web", web.iter().copied())
            .hosts("api", api.iter().copied())
            .service(on("web", "web"))
            .service(on("api", "api"))
            .build()
    };
    assert!(roles(&["h1"], &["h2"]).is_ok(), "different hosts: no conflict");
    let err = roles(&["h1", "h2"], &["h2"]).unwrap_err();
    assert!(matches!(err, ValidationError::HostPortConflict { port: 8080, .. }), "h2 has both: {err}");
    // A role mapped to no host yet may end up anywhere: assumed together.
    let err =
        Environment::builder("shop", "prod").hosts("web", ["h1"]).service(on("web", "web")).service(on("api", "api"));
    assert!(err.build().is_err());
}

#[test]
fn fixed_host_port_and_start_first() {
    // Default rollout falls back to recreate; asking for start-first explicitly is an error.
    let s = svc("a").port(Port::tcp(80).publish(8080)).build().unwrap();
    assert_eq!(s.rollout().strategy(), &harbormaster::Strategy::Recreate);
    let err = svc("a").port(Port::tcp(80).publish(8080)).rollout(Rollout::start_first()).build().unwrap_err();
    assert!(err.to_string().contains("Rollout::recreate()"), "{err}");
}

#[test]
fn job_with_replicas() {
    let err = Service::job("migrate").image("x").replicas(3).build().unwrap_err();
    assert_eq!(err, ValidationError::JobWithReplicas { service: "migrate".into(), replicas: 3 });
    assert!(Service::job("migrate").image("x").replicas(1).build().is_ok());
}

#[test]
fn deadline_shorter_than_the_health_budget() {
    let check =
        HealthCheck::http(80, "/").interval(Duration::from_secs(2)).retries(5).start_period(Duration::from_secs(10));
    let err = svc("api").health(check.clone()).deadline(Duration::from_secs(15)).build().unwrap_err();
    assert_eq!(
        err,
        ValidationError::DeadlineTooShort {
            service: "api".into(),
            deadline: Duration::from_secs(15),
            needed: Duration::from_secs(20)
        }
    );
    assert!(svc("api").health(check.clone()).deadline(Duration::from_secs(20)).build().is_ok());
    let err =
        svc("api").health(check).rollout(Rollout::start_first().deadline(Duration::from_secs(5))).build().unwrap_err();
    assert!(matches!(err, ValidationError::DeadlineTooShort { .. }));
}

#[test]
fn impossible_conditions() {
    let db = svc("db").build().unwrap();
    let api = svc("api").depends_on("db", Condition::Healthy).build().unwrap();
    let err = env_of(vec![db.clone(), api]).unwrap_err();
    assert!(err.to_string().contains("has no health check"), "{err}");
    let api = svc("api").depends_on("db", Condition::CompletedSuccessfully).build().unwrap();
    assert!(env_of(vec![db, api]).unwrap_err().to_string().contains("not a job"));
    let job = Service::job("seed").image("x").build().unwrap();
    let api = svc("api").depends_on("seed", Condition::Healthy).build().unwrap();
    assert!(env_of(vec![job, api]).unwrap_err().to_string().contains("is a job"));
}

#[test]
fn field_errors_name_service_and_field() {
    let cases: Vec<(harbormaster::ServiceBuilder, &str)> = vec![
        (Service::builder("a"), "image"),
        (svc("a").port(Port::tcp(0)), "ports"),
        (svc("a").port(Port::tcp(80)).port(Port::tcp(80)), "ports"),
        (svc("a").volume(Volume::named("v").at("data")), "volumes"),
        (svc("a").resources(Resources::new().cpus(0.0)), "resources"),
        (svc("a").resources(Resources::new().memory_mb(0)), "resources"),
        (svc("a").health(HealthCheck::tcp(80).retries(0)), "health"),
        (svc("a").env("A=B", "x"), "env"),
        (svc("a").env("K", "1").secret("K", harbormaster::Secret::new("2")), "env"),
        (svc("a").label("io.harbormaster.service", "x"), "labels"),
        (svc("a").command(["with\0nul"]), "command"),
        (svc("a").cap_add("NET ADMIN"), "container"),
        (svc("a").sysctl("", "1"), "container"),
        (svc("a").volume(Volume::tmpfs().at("/t").propagation(harbormaster::Propagation::Shared)), "volumes"),
        (Service::job("j").image("x").health(HealthCheck::tcp(1)), "health"),
    ];
    for (builder, field) in cases {
        match builder.build() {
            Err(ValidationError::InvalidValue { owner, field: f, .. }) => {
                assert!(owner == "service `a`" || owner == "service `j`", "{owner}");
                assert_eq!(f, field);
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn nothing_panics_on_odd_input() {
    let names = ["", "-", "a", "é", "\0", "a\nb", &"x".repeat(1000)];
    for n in names {
        let _ = Service::builder(n).image(n).env(n, n).command([n]).port(Port::tcp(1).publish(0)).build();
        let _ = Environment::builder(n, n).env(n, n).build();
        let _ = HealthCheck::http(0, n).expect_status(std::ops::Range { start: 600, end: 100 }).retries(0);
    }
}

#[test]
fn rollout_combinations_that_cannot_work_are_refused() {
    use harbormaster::{Amount, CanaryStep, Ingress, Route};
    let both_zero = Service::builder("api")
        .image("x")
        .rollout(Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::count(0)))
        .build()
        .unwrap_err();
    assert!(both_zero.to_string().contains("both be 0"), "{both_zero}");

    let fixed_port_surge = Service::builder("api")
        .image("x")
        .port(Port::tcp(80).publish(8080))
        .rollout(Rollout::rolling().max_surge(Amount::count(1)))
        .build()
        .unwrap_err();
    assert!(fixed_port_surge.to_string().contains("8080"), "{fixed_port_surge}");

    // Canary and blue/green move traffic through the ingress: they need a route.
    let canary = Service::builder("api")
        .image("x")
        .port(Port::tcp(8080))
        .rollout(Rollout::canary([CanaryStep::weight(10)]))
        .build()
        .unwrap();
    let err = Environment::builder("p", "e").service(canary.clone()).build().unwrap_err();
    assert!(err.to_string().contains("no ingress route goes to `api`"), "{err}");
    let ingress = Ingress::builder().image("caddy").route(Route::to("api", 8080)).build().unwrap();
    assert!(Environment::builder("p", "e").ingress(ingress).service(canary).build().is_ok());

    // Routes must reach a declared port of an existing service.
    let web = Service::builder("web").image("x").port(Port::tcp(3000)).build().unwrap();
    let wrong_port = Ingress::builder().image("caddy").route(Route::to("web", 80)).build().unwrap();
    let err = Environment::builder("p", "e").ingress(wrong_port).service(web.clone()).build().unwrap_err();
    assert!(err.to_string().contains("port 80 of `web`"), "{err}");
    let unknown = Ingress::builder().image("caddy").route(Route::to("nope", 80)).build().unwrap();
    let err = Environment::builder("p", "e").ingress(unknown).service(web).build().unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}

#[test]
fn manual_promotion_needs_blue_green_or_canary_and_history_keeps_one() {
    let err = Service::builder("api")
        .image("local/api:1")
        .rollout(harbormaster::Rollout::rolling().manual_promotion())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("manual promotion needs a blue/green or canary"), "{err}");
    let err = Environment::builder("p", "e").revision_history(0).build().unwrap_err();
    assert!(err.to_string().contains("revision_history"), "{err}");
}

/// What Docker, runc or the kernel would refuse later is refused when building, naming the field;
/// a secret's value is never in the message.
#[test]
fn what_the_engine_would_refuse_is_refused_at_build() {
    use harbormaster::Secret;
    let field = |b: harbormaster::ServiceBuilder| match b.build() {
        Err(ValidationError::InvalidValue { field, reason, .. }) => (field, reason),
        other => panic!("expected InvalidValue, got {other:?}"),
    };
    for bad in ["Postgres:15", "api:", "a b", "api@sha256:xyz", "team/API", "host:port/x", "-api"] {
        assert_eq!(field(Service::builder("a").image(bad)).0, "image", "{bad:?}");
    }
    assert_eq!(field(svc("a").env("K", "v\0w")).0, "env");
    assert_eq!(field(svc("a").env("K\0", "v")).0, "env");
    assert_eq!(field(svc("a").command(["run", "x\0y"])).0, "command");
    assert_eq!(field(svc("a").entrypoint(["\0"])).0, "command");
    assert_eq!(field(svc("a").user("app\0")).0, "user");
    assert_eq!(field(svc("a").user("")).0, "user");
    assert_eq!(field(svc("a").workdir("relative/dir")).0, "workdir");
    assert_eq!(field(svc("a").workdir("/srv\0")).0, "workdir");
    assert_eq!(field(svc("a").volume(Volume::tmpfs().at("/"))).0, "volumes");
    assert_eq!(
        field(svc("a").volume(Volume::tmpfs().at("/data")).volume(Volume::named("v").at("/data/"))).0,
        "volumes"
    );
    assert_eq!(field(svc("a").resources(Resources::new().cpus(1e-12))).0, "resources");
    assert_eq!(field(svc("a").resources(Resources::new().cpus(f64::INFINITY))).0, "resources");
    assert_eq!(field(svc("a").resources(Resources::new().memory_mb(1 << 44))).0, "resources");
    assert_eq!(field(svc("a").env("BIG", "x".repeat(128 * 1024))).0, "env");
    assert_eq!(field(svc("a").label("l", "a\0")).0, "labels");
    let (f, reason) = field(svc("a").secret("PW", Secret::new("hunter2-\0-secret")));
    assert_eq!(f, "secrets");
    assert!(!reason.contains("hunter2"), "{reason}");
    let (f, reason) = field(svc("a").secret("PW", Secret::new("s3cr3t".repeat(30_000))));
    assert_eq!(f, "env");
    assert!(!reason.contains("s3cr3t"), "{reason}");
    // Accepted forms: registries with ports, digests, relative bind sources (made absolute).
    for ok in [
        "registry.example.com:5000/team/api:2",
        "postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(Service::builder("a").image(ok).build().is_ok(), "{ok}");
    }
    assert!(svc("a").volume(Volume::bind("conf").at("/conf")).workdir("/srv").user("1000:1000").build().is_ok());
}

/// Huge durations, sizes and counts are refused when building; nothing panics on them, and the
/// public getters saturate instead of overflowing.
#[test]
fn huge_values_are_refused_and_never_panic() {
    let max = Duration::MAX;
    let refused = |b: harbormaster::ServiceBuilder| assert!(b.build().is_err());
    refused(svc("a").deadline(max));
    refused(svc("a").stop_grace_period(max));
    refused(svc("a").replicas(u32::MAX));
    refused(svc("a").health(HealthCheck::tcp(1).interval(max)));
    refused(svc("a").health(HealthCheck::tcp(1).start_interval(max)));
    refused(svc("a").health(HealthCheck::tcp(1).timeout(max)));
    refused(svc("a").health(HealthCheck::tcp(1).start_period(max)));
    refused(svc("a").health(HealthCheck::tcp(1).retries(u32::MAX)));
    refused(svc("a").rollout(Rollout::rolling().min_ready(max)));
    refused(svc("a").rollout(Rollout::rolling().deadline(max)));
    refused(svc("a").rollout(Rollout::rolling().drain(max)));
    refused(svc("a").rollout(Rollout::rolling().batch_delay(max)));
    assert!(Environment::builder("p", "e").deadline(max).build().is_err());
    assert!(Environment::builder("p", "e").lock_timeout(max).build().is_err());
    // The getters of what was never built saturate.
    let check = HealthCheck::tcp(1).interval(max).start_period(max).retries(u32::MAX);
    assert_eq!(check.startup_budget(), max);
}

#[test]
fn another_services_network_namespace() {
    use harbormaster::{ContainerOptions, NetworkMode};
    let joins =
        |owner: &str| svc("client").container(ContainerOptions::new().network_mode(NetworkMode::Service(owner.into())));
    let vpn = || svc("vpn").port(Port::tcp(8080).publish_ephemeral()).build().unwrap();

    // The owner starts first; the default rollout stops the old instance before the new one
    // listens in the same namespace.
    let env = env_of(vec![vpn(), joins("vpn").build().unwrap()]).unwrap();
    let client = env.service("client").unwrap();
    assert_eq!(client.dependencies()[0].service, "vpn");
    assert_eq!(client.dependencies()[0].condition, Condition::Started);
    assert_eq!(client.rollout().strategy(), &harbormaster::Strategy::Recreate);
    // A stronger wait of its own is kept.
    let waits = joins("vpn").depends_on("vpn", Condition::Healthy).build().unwrap();
    let vpn_checked = svc("vpn").health(HealthCheck::tcp(8080)).build().unwrap();
    let env = env_of(vec![vpn_checked, waits]).unwrap();
    assert_eq!(env.service("client").unwrap().dependencies().len(), 1);
    assert_eq!(env.service("client").unwrap().dependencies()[0].condition, Condition::Healthy);

    // The owner publishes the namespace's ports.
    let err = joins("vpn").port(Port::tcp(9000).publish_ephemeral()).build().unwrap_err();
    assert!(err.to_string().contains("publish it there"), "{err}");
    let err = joins("client").build().unwrap_err();
    assert!(err.to_string().contains("names the service itself"), "{err}");
    let err = env_of(vec![joins("vpn").build().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("`vpn` is not a service of the environment"), "{err}");
    let job = Service::job("vpn").image("local/x:1").build().unwrap();
    let err = env_of(vec![job, joins("vpn").build().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("a job"), "{err}");
    let chained = svc("vpn").container(ContainerOptions::new().network_mode(NetworkMode::Host)).build().unwrap();
    assert!(env_of(vec![chained, joins("vpn").build().unwrap()]).is_ok(), "the host's namespace may be shared");
    let chained = svc("vpn")
        .container(ContainerOptions::new().network_mode(NetworkMode::Container("other".into())))
        .build()
        .unwrap();
    let err = env_of(vec![chained, joins("vpn").build().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("name that one directly"), "{err}");
}

#[test]
fn a_global_service() {
    let s = svc("agent").global().build().unwrap();
    assert!(s.is_global());
    assert_eq!(s.replicas(), 1);
    let err = svc("agent").global().replicas(3).build().unwrap_err();
    assert!(err.to_string().contains("drop one"), "{err}");
    let err = Service::job("seed").image("local/x:1").global().build().unwrap_err();
    assert!(err.to_string().contains("runs once"), "{err}");
}

#[test]
fn anonymous_volumes_taken_over_need_the_old_instance_stopped_first() {
    let s = svc("db").keep_anonymous_volumes().build().unwrap();
    assert!(s.keeps_anonymous_volumes());
    assert_eq!(s.rollout().strategy(), &harbormaster::Strategy::Recreate, "the default stops the old one first");
    let err = svc("db").keep_anonymous_volumes().rollout(Rollout::start_first()).build().unwrap_err();
    assert!(err.to_string().contains("two writers on one volume"), "{err}");
    assert!(svc("db").keep_anonymous_volumes().rollout(Rollout::recreate()).build().is_ok());
}

#[test]
fn a_mac_address_is_one_containers() {
    use harbormaster::ContainerOptions;
    let mac = || ContainerOptions::new().mac_address("02:42:ac:11:65:43");
    let s = svc("nas").container(mac()).build().unwrap();
    assert_eq!(s.rollout().strategy(), &harbormaster::Strategy::Recreate);
    let err = svc("nas").container(mac()).replicas(2).build().unwrap_err();
    assert!(err.to_string().contains("share the MAC address"), "{err}");
    let err = svc("nas").container(ContainerOptions::new().mac_address("02:42:zz")).build().unwrap_err();
    assert!(err.to_string().contains("not six hexadecimal pairs"), "{err}");
}

/// What the engine would refuse later is refused at build: an environment without services, an
/// image repository with capitals, a health check expecting only interim (1xx) statuses.
#[test]
fn what_the_engine_refuses_is_refused_at_build() {
    let err = Environment::builder("p", "e").build().unwrap_err();
    assert!(err.to_string().contains("no services"), "{err}");
    assert!(Environment::named("p", "e").unwrap().services().is_empty(), "by name only, to take it down");
    let err = Service::builder("a").image("UPPER/x:1").build().unwrap_err();
    assert!(err.to_string().contains("lowercase"), "{err}");
    assert!(Service::builder("a").image("Registry.Example.com:5000/x:1").build().is_ok());
    let err = Service::builder("a")
        .image("x")
        .health(HealthCheck::http(80, "/").expect_status(100..200))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no final HTTP status"), "{err}");
    assert!(Service::builder("a")
        .image("x")
        .health(HealthCheck::http(80, "/").expect_status(200..=204))
        .build()
        .is_ok());
}

/// A compose file that cannot be read is named without a line or key that do not exist.
#[test]
fn a_missing_compose_file_is_named_plainly() {
    let err = Environment::from_compose("/nonexistent-harbormaster/docker-compose.yml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/nonexistent-harbormaster/docker-compose.yml: cannot read it"), "{text}");
    assert!(!text.contains(":0:") && !text.contains("``"), "{text}");
}
