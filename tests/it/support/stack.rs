//! The stack the kill suite and the kill benchmark deploy: `db` (a service with a named volume),
//! `migrate` (a job that appends one line per run to a log on that volume, then exits 0) and `api`
//! (three replicas, a rolling update one at a time, waiting for the migration).

use std::time::Duration;

use harbormaster::{Amount, Condition, Environment, HealthCheck, Port, Rollout, Service, Volume};

use super::PROJECT;

/// The migration's log, on the `data` volume.
pub const LOG: &str = "/data/migrations.log";

/// `db`: a service with the named volume `data`.
pub fn db() -> Service {
    Service::builder("db")
        .image(super::workload::IMAGE)
        .volume(Volume::named("data").at("/data"))
        .port(Port::tcp(8080))
        .health(check())
        .stop_grace_period(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// `migrate`: a job that appends `migrate <version>` to [`LOG`] on the `data` volume, once db is healthy.
pub fn migrate(version: &str) -> Service {
    Service::job("migrate")
        .image(super::workload::IMAGE)
        .env("JOB_EXIT_CODE", "0")
        .env("JOB_DURATION_MS", "300")
        .env("APPEND_FILE", LOG)
        .env("APPEND_LINE", format!("migrate {version}"))
        .volume(Volume::named("data").at("/data"))
        .depends_on("db", Condition::Healthy)
        .build()
        .unwrap()
}

fn check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(50)
}

/// The stack at `version`, in environment `env_name`.
pub fn stack(env_name: &str, version: &str) -> Environment {
    let api = Service::builder("api")
        .image(super::workload::IMAGE)
        .env("VERSION", version)
        .port(Port::tcp(8080))
        .replicas(3)
        .health(check())
        .stop_grace_period(Duration::from_secs(1))
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .rollout(Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0)).drain(Duration::ZERO))
        .build()
        .unwrap();
    Environment::builder(PROJECT, env_name)
        .service(db())
        .service(migrate(version))
        .service(api)
        .lock_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}
