//! Backups as the guides do them, for real: PostgreSQL dumped with `pg_dump`, uploaded to
//! S3-compatible storage (moto's server), kept by count and by age, due on a schedule the caller
//! drives, and restored into a fresh environment with the rows back.

use crate::support;

use std::time::Duration;

use harbormaster::backup::{PostgresBackup, Retention, S3Storage, Schedule};
use harbormaster::testing::TestEnv;
use harbormaster::{Environment, ErrorKind, Port, Secret};
use support::{images, PROJECT};

const S3: &str = "http://127.0.0.1:5056";

fn storage(bucket: &str) -> S3Storage {
    support::fixture("s3.sh", "the backup tests need moto's S3 server");
    S3Storage::builder(S3, bucket)
        .credentials("hmtest", Secret::new("hmtest-s3-secret"))
        .create_bucket(true)
        .build()
        .unwrap()
}

fn shop(stem: &str) -> Environment {
    let db = images::shop_db("backup-test-db-secret").port(Port::tcp(5432).publish_ephemeral()).build().unwrap();
    Environment::builder(PROJECT, stem).service(db).build().unwrap()
}

async fn sql(stack: &TestEnv, statement: &str) -> String {
    let out = stack
        .exec("db", ["psql", "-U", "app", "-d", "shop", "-v", "ON_ERROR_STOP=1", "-Atc", statement])
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{statement}: {}", out.stderr);
    out.stdout.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_goes_to_s3_and_comes_back_into_a_fresh_environment() {
    images::ensure();
    let bucket = support::unique("backups");
    let storage = storage(&bucket);
    let prod = TestEnv::up(shop("prod")).await.unwrap();
    sql(&prod, "CREATE TABLE orders (id int primary key, item text)").await;
    sql(&prod, "INSERT INTO orders VALUES (1, 'tea'), (2, 'cake'), (3, 'scone ☕')").await;

    let backup = PostgresBackup::new("db").database("shop").user("app").prefix("nightly/");
    let taken = backup.run(prod.environment(), prod.backend(), &storage).await.unwrap();
    assert!(
        taken.key.starts_with(&format!("nightly/{}/db/shop-", prod.environment().qualified_name())),
        "{}",
        taken.key
    );
    assert!(taken.size > 100, "{taken:?}");
    let listed = backup.list(prod.environment(), &storage).await.unwrap();
    assert_eq!(listed, vec![taken.clone()]);

    // A fresh environment, empty, gets the rows back.
    let fresh = TestEnv::up(shop("restore")).await.unwrap();
    let report = backup.restore(fresh.environment(), fresh.backend(), &storage, &taken.key).await.unwrap();
    assert_eq!(report.size, taken.size);
    assert_eq!(
        sql(&fresh, "SELECT string_agg(id || ':' || item, ',' ORDER BY id) FROM orders").await,
        "1:tea,2:cake,3:scone ☕"
    );
    // Restoring again over it (the dump cleans first) keeps the same rows.
    backup.restore(fresh.environment(), fresh.backend(), &storage, &taken.key).await.unwrap();
    assert_eq!(sql(&fresh, "SELECT count(*) FROM orders").await, "3");

    // A key that is not there: NotFound, and the secret key is nowhere in the error.
    let err = backup.restore(fresh.environment(), fresh.backend(), &storage, "nightly/none.sql").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!format!("{err} {err:?} {storage:?}").contains("hmtest-s3-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_the_caller_drives_and_retention_by_count_and_age() {
    images::ensure();
    let storage = storage(&support::unique("retention"));
    let stack = TestEnv::up(shop("sched")).await.unwrap();
    let backup = PostgresBackup::new("db").database("shop").user("app");
    let (env, docker) = (stack.environment(), stack.backend());
    // Nothing yet: due.
    let every_hour = Schedule::every(Duration::from_secs(3600));
    let first = backup.run_if_due(&every_hour, env, docker, &storage).await.unwrap();
    assert!(first.is_some());
    // Just taken: not due again for an hour, whoever asks.
    assert!(backup.run_if_due(&every_hour, env, docker, &storage).await.unwrap().is_none());
    // Keys are by the second: four more, a second apart, by a schedule that is always due.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert!(backup.run_if_due(&Schedule::every(Duration::ZERO), env, docker, &storage).await.unwrap().is_some());
    }
    let all = backup.list(env, &storage).await.unwrap();
    assert_eq!(all.len(), 5);
    // By count: the newest three stay.
    let deleted = Retention::new().keep_last(3).apply(&backup, env, &storage).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let left = backup.list(env, &storage).await.unwrap();
    assert_eq!(left, all[2..].to_vec());
    // By age: everything is older than a millisecond, but the newest always stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let deleted = Retention::new().max_age(Duration::from_millis(1)).apply(&backup, env, &storage).await.unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(backup.list(env, &storage).await.unwrap(), vec![all[4].clone()]);
}

#[tokio::test]
async fn storage_errors_are_typed_and_say_where() {
    support::fixture("s3.sh", "the backup tests need moto's S3 server");
    // Nothing listens there.
    let nowhere = S3Storage::builder("http://127.0.0.1:9", "b")
        .credentials("k", Secret::new("nowhere-secret-value"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = nowhere.get("x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    assert!(!err.to_string().contains("X-Amz-Signature"), "no signed URL in errors: {err}");
    // A bucket that does not exist, without create_bucket.
    let missing = S3Storage::builder(S3, support::unique("absent")).credentials("k", Secret::new("s")).build().unwrap();
    assert_eq!(missing.list("").await.unwrap_err().kind(), ErrorKind::NotFound);
    // Bad options are refused before any request.
    assert_eq!(
        S3Storage::builder("not a url", "b").credentials("k", Secret::new("s")).build().unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(S3Storage::builder(S3, "b").build().unwrap_err().kind(), ErrorKind::Invalid);
}
