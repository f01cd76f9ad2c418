//! A real PostgreSQL (`postgres:15`, as users write it) with a named volume: its rows survive a
//! re-apply, a rollout of its clients, and down/up; a client reaches it over the environment
//! network with the password from a secret. Redis 7 beside it.

use crate::support;

use std::time::Duration;

use harbormaster::{Action, Condition, Down, Environment, HealthCheck, Secret, Service, Volume};
use support::images::{POSTGRES, REDIS};
use support::Harness;

const URL: &str = "postgresql://app:pg-test-pass-31@db:5432/shop";

fn stack(h: &Harness, client_version: &str) -> Environment {
    let db = Service::builder("db")
        .image(POSTGRES)
        .env("POSTGRES_USER", "app")
        .env("POSTGRES_DB", "shop")
        .secret("POSTGRES_PASSWORD", Secret::new("pg-test-pass-31"))
        .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
        .health(
            HealthCheck::exec(["pg_isready", "-U", "app", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .stop_grace_period(Duration::from_secs(10))
        .build()
        .unwrap();
    // Over the network, with the password: an idempotent seed, as a migration would be.
    let seed = Service::job("seed")
        .image(POSTGRES)
        .entrypoint(["psql"])
        .command([
            URL,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, item text); \
             INSERT INTO orders VALUES (1, 'tea') ON CONFLICT DO NOTHING;",
        ])
        .depends_on("db", Condition::Healthy)
        .build()
        .unwrap();
    let cache = Service::builder("cache")
        .image(REDIS)
        .volume(Volume::named("cachedata").at("/data"))
        .health(HealthCheck::exec(["redis-cli", "ping"]).interval(Duration::from_millis(300)).retries(50))
        .build()
        .unwrap();
    let api = h
        .svc("api")
        .env("VERSION", client_version)
        .env("REQUIRE", "db:5432,cache:6379")
        .depends_on("seed", Condition::CompletedSuccessfully)
        .depends_on("cache", Condition::Healthy)
        .health(support::http_check())
        .replicas(2)
        .build()
        .unwrap();
    h.env().service(db).service(seed).service(cache).service(api).build().unwrap()
}

async fn rows(env: &Environment, h: &Harness) -> String {
    let out = env
        .exec(
            &h.docker,
            "db",
            ["psql", "-U", "app", "-d", "shop", "-tA", "-c", "SELECT id || ':' || item FROM orders ORDER BY id"],
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

#[tokio::test]
async fn postgres_keeps_its_rows_across_reapply_client_rollout_and_down_up() {
    support::images::ensure();
    let h = Harness::new("pg").await;
    let v1 = stack(&h, "v1");
    v1.apply(&h.docker).await.unwrap();
    assert_eq!(rows(&v1, &h).await, "1:tea");
    let add = v1
        .exec(&h.docker, "db", ["psql", "-U", "app", "-d", "shop", "-c", "INSERT INTO orders VALUES (2, 'cake')"])
        .await
        .unwrap();
    assert_eq!(add.exit_code, 0, "{add:?}");
    let set = v1.exec(&h.docker, "cache", ["redis-cli", "set", "greeting", "hello"]).await.unwrap();
    assert_eq!(set.stdout.trim(), "OK");
    let db_before = v1.status(&h.docker).await.unwrap();
    let db_instances = |s: &harbormaster::Status| {
        s.services.iter().find(|x| x.name == "db").unwrap().instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>()
    };

    // Re-apply: nothing to do, nothing lost.
    let plan = v1.plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    v1.apply(&h.docker).await.unwrap();
    assert_eq!(rows(&v1, &h).await, "1:tea\n2:cake");

    // A rollout of its clients leaves the database alone.
    let v2 = stack(&h, "v2");
    let plan = v2.plan(&h.docker).await.unwrap();
    assert_eq!(plan.service("db").unwrap().action, Action::Unchanged, "{plan}");
    assert!(matches!(plan.service("api").unwrap().action, Action::Replace { .. }), "{plan}");
    v2.apply(&h.docker).await.unwrap();
    assert_eq!(db_instances(&v2.status(&h.docker).await.unwrap()), db_instances(&db_before));
    assert_eq!(rows(&v2, &h).await, "1:tea\n2:cake");

    // Down (volumes kept) and up again: initdb does not run on the existing data; rows and keys remain.
    v2.down(&h.docker, Down::default()).await.unwrap();
    v2.apply(&h.docker).await.unwrap();
    assert_eq!(rows(&v2, &h).await, "1:tea\n2:cake");
    let get = v2.exec(&h.docker, "cache", ["redis-cli", "get", "greeting"]).await.unwrap();
    assert_eq!(get.stdout.trim(), "hello", "redis lost its key (it saves on shutdown to its volume)");
    use futures::StreamExt;
    let logs: Vec<String> = v2
        .logs(&h.docker, "db", harbormaster::LogOptions::default())
        .await
        .unwrap()
        .filter_map(|l| async move { l.ok().map(|l| l.text) })
        .collect()
        .await;
    let inits = logs.iter().filter(|l| l.contains("init process complete")).count();
    assert_eq!(inits, 0, "initdb ran again on a non-empty data directory: {logs:?}");
    // The images declare volumes (`VOLUME /var/lib/postgresql/data`, `/data`): containers that
    // mount nothing there (the seed job) get anonymous ones, which go with their containers.
    let filters =
        std::collections::HashMap::from([("name".to_string(), vec![format!("{}-{}-", support::PROJECT, h.name)])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let anonymous: Vec<String> = h
        .docker
        .client()
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.mounts.unwrap_or_default())
        .filter_map(|m| m.name)
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(!anonymous.is_empty(), "the seed job's container has an anonymous volume");
    v2.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    for v in &anonymous {
        let gone = h.docker.client().inspect_volume(v).await.is_err();
        assert!(gone, "anonymous volume {v} outlived its container");
    }
}
