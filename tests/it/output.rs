//! What the library reports, as a program reads it (serde JSON: `snake_case`, `kind` tags,
//! `_ms` durations, RFC 3339 times) and as a person reads it (`Display`, no Debug text), driven
//! through the in-memory runtime.

use std::time::Duration;

use futures::StreamExt;
use harbormaster::backend::memory::{Behavior, MemoryBackend};
use harbormaster::{Amount, Down, Environment, HealthCheck, Port, Rollout, Secret, Service};
use serde_json::Value;

fn api(tag: &str, replicas: u32) -> Service {
    Service::builder("api")
        .image(format!("api:{tag}"))
        .port(Port::tcp(8080).publish_ephemeral())
        .secret("TOKEN", Secret::new("s3cr3t-value-never-shown"))
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(10)).retries(50))
        .replicas(replicas)
        .rollout(Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0)))
        .stop_grace_period(Duration::from_millis(20))
        .build()
        .unwrap()
}

fn env(tag: &str) -> Environment {
    Environment::builder("json", "test").service(api(tag, 2)).deadline(Duration::from_secs(20)).build().unwrap()
}

fn no_debug_text(text: &str) {
    for debug in ["Rolling {", "Count(", "Some(", "None", "Running", "Exited", "{ ", "ns)", "\""] {
        assert!(!text.contains(debug), "Debug text `{debug}` in: {text}");
    }
    assert!(!text.contains("s3cr3t"), "a secret in: {text}");
}

#[tokio::test]
async fn plan_deployment_status_history_and_down_serialize_to_the_documented_shape() {
    let target = MemoryBackend::new();
    target.behave("api:1", Behavior::healthy());
    target.behave("api:2", Behavior::healthy());

    let first = env("1").plan(&target).await.unwrap();
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json["environment"], "json-test");
    assert_eq!(json["changes"], true);
    assert_eq!(json["services"][0]["service"], "api");
    assert_eq!(json["services"][0]["action"], serde_json::json!({"kind": "create", "replicas": 2}));

    let deployed = env("1").apply(&target).await.unwrap();
    let json = serde_json::to_value(&deployed).unwrap();
    let instances = json["services"]["api"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0]["state"], "running");
    let published = &instances[0]["endpoints"][0];
    assert_eq!(published["container_port"], 8080);
    assert_eq!(published["protocol"], "tcp");
    let endpoint = deployed.endpoint("api", 8080).unwrap();
    assert!(instances.iter().any(|i| i["endpoints"][0]["port"] == endpoint.port));
    assert_eq!(json["services"]["api"]["outcome"]["kind"], "succeeded");
    assert_eq!(serde_json::to_value(&endpoint).unwrap()["port"], endpoint.port);

    let plan = env("2").plan(&target).await.unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    let action = &json["services"][0]["action"];
    assert_eq!(action["kind"], "replace");
    assert_eq!(action["instances"], 2);
    assert_eq!(action["strategy"], "rolling");
    assert_eq!(json["services"][0]["remove"].as_array().unwrap().len(), 2);
    assert!(json["services"][0]["reasons"][0].as_str().unwrap().starts_with("image"), "{json}");
    let text = plan.to_string();
    assert!(text.contains("replace 2 instance(s) (rolling (max surge 1, max unavailable 0))"), "{text}");
    no_debug_text(&text);
    assert!(!serde_json::to_string(&plan).unwrap().contains("s3cr3t"));

    let noop = env("1").plan(&target).await.unwrap();
    assert_eq!(serde_json::to_value(&noop).unwrap()["changes"], false);

    let status = env("1").status(&target).await.unwrap();
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["services"][0]["running"], 2);
    assert_eq!(json["services"][0]["desired"], 2);
    assert_eq!(json["services"][0]["instances"][0]["health"]["status"], "healthy");
    let text = status.to_string();
    assert!(text.contains("api  2/2 running"), "{text}");
    assert!(text.contains("running: healthy"), "{text}");

    let history = env("1").history(&target, "api").await.unwrap();
    let json = serde_json::to_value(&history).unwrap();
    assert_eq!(json[0]["number"], 1);
    assert_eq!(json[0]["outcome"]["kind"], "succeeded");
    let at = json[0]["at"].as_str().unwrap();
    assert!(at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "RFC 3339 with milliseconds: {at}");
    assert!(json[0].get("spec_json").is_none() && json[0].get("spec_hash").is_none());

    let audit = env("1").audit_log(&target).await.unwrap();
    let json = serde_json::to_value(&audit).unwrap();
    assert_eq!(json[0]["operation"], "apply");
    assert!(json[0]["took_ms"].is_u64(), "{json}");
    assert!(json[0]["at"].as_str().unwrap().ends_with('Z'));

    let report = env("1").down(&target, Down::default()).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["removed_instances"].as_array().unwrap().len(), 2);
    assert!(json["kept_volumes"].is_array() && json["removed_network"].is_boolean());
}

#[tokio::test]
async fn events_are_flat_tagged_objects_and_lines_for_people() {
    let target = MemoryBackend::new();
    target.behave("api:1", Behavior::healthy());
    let mut run = env("1").apply_streaming(&target);
    let mut events = Vec::new();
    while let Some(e) = run.next().await {
        events.push(e);
    }
    run.finish().await.unwrap();
    let kinds: Vec<String> =
        events.iter().map(|e| serde_json::to_value(e).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    for kind in ["planned", "instance_created", "instance_started", "instance_healthy", "rollout_finished", "applied"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    for e in &events {
        let json: Value = serde_json::to_value(e).unwrap();
        assert_eq!(json["environment"], "json-test");
        assert_eq!(json["kind"], e.kind.name());
        assert!(json["at"].as_str().unwrap().ends_with('Z'));
        let line = e.to_string();
        assert!(line.starts_with("json-test: "), "{line}");
        no_debug_text(&line);
        assert!(!serde_json::to_string(e).unwrap().contains("s3cr3t"));
        if let Some(service) = e.kind.service() {
            assert_eq!(json["service"], service);
        }
    }
    let healthy = events.iter().find(|e| e.kind.name() == "instance_healthy").unwrap();
    assert!(serde_json::to_value(healthy).unwrap()["after_ms"].is_u64());
    let applied = events.iter().find(|e| e.kind.name() == "applied").unwrap();
    assert!(serde_json::to_value(applied).unwrap()["took_ms"].is_u64());
    let finished = events.iter().find(|e| e.kind.name() == "rollout_finished").unwrap();
    assert_eq!(serde_json::to_value(finished).unwrap()["outcome"]["kind"], "succeeded");
    env("1").down(&target, Down::default()).await.unwrap();
}
