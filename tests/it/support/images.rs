//! `postgres:15` and `redis:7` on a machine with no registry: packaged from Debian's own
//! PostgreSQL and Redis by tests/fixtures/images.sh (idempotent), with the official images'
//! contract; `rabbitmq:3-management`, `prom/prometheus` and `edoburu/pgbouncer` installed from
//! Debian's archive on a debootstrapped base by tests/fixtures/debian.sh.
#![allow(dead_code)]

pub const POSTGRES: &str = "postgres:15";
pub const REDIS: &str = "redis:7";

/// Makes sure both images are in the local engine's store (panics loudly if they cannot be made).
pub fn ensure() {
    super::fixture("images.sh", "these tests need postgres:15 and redis:7");
}

/// Makes sure the servers of the guides' stacks are there: RabbitMQ, Prometheus, PgBouncer.
pub fn ensure_servers() {
    super::fixture("debian.sh", "the guides' stacks need rabbitmq:3-management, prom/prometheus and edoburu/pgbouncer");
}

/// PostgreSQL as the shop of the guides runs it: user `app`, database `shop`, its data in volume
/// `pgdata`, healthy once `pg_isready` says so. Publish its port as the test needs.
pub fn shop_db(password: &str) -> harbormaster::ServiceBuilder {
    use std::time::Duration;
    harbormaster::Service::builder("db")
        .image(POSTGRES)
        .env("POSTGRES_USER", "app")
        .env("POSTGRES_DB", "shop")
        .secret("POSTGRES_PASSWORD", harbormaster::Secret::new(password))
        .volume(harbormaster::Volume::named("pgdata").at("/var/lib/postgresql/data"))
        .health(
            harbormaster::HealthCheck::exec(["pg_isready", "-U", "app", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(200))
                .retries(150),
        )
}
