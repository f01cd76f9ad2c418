//! The container options of a compose file, deployed on the real engine and looked at from the
//! engine (`docker inspect`) and from inside the container: capabilities, a read-only root,
//! tmpfs options, kernel parameters, limits, DNS, `/etc/hosts`, host name, init, stop signal,
//! the engine's own health check, SELinux-relabelled and created binds, external volumes and
//! networks, a service on the host's network probed through loopback, and a service in another's
//! network namespace.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harbormaster::compose::Compose;
use harbormaster::{Down, Environment};
use serde_json::Value;
use support::{images, workload, Harness, PROJECT};

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("the docker CLI");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inspect(id: &str) -> Value {
    let v: Value = serde_json::from_str(&docker(&["inspect", id])).unwrap();
    v[0].clone()
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(support::unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load(dir: &Path, env: &str, text: &str) -> Environment {
    std::fs::write(dir.join("docker-compose.yml"), text).unwrap();
    let imported = Compose::new(dir.join("docker-compose.yml"))
        .project(PROJECT)
        .environment(env)
        .process_env(false)
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    imported.environment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_container_options_reach_the_container() {
    images::ensure();
    let h = Harness::new("copts").await;
    let d = dir("copts");
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/hello.txt"), "hello\n").unwrap();
    let external_volume = support::unique("hm-ext-vol");
    let external_network = support::unique("hm-ext-net");
    docker(&["volume", "create", &external_volume]);
    docker(&["network", "create", &external_network]);
    let compose = format!(
        r#"
services:
  box:
    image: {redis}
    entrypoint: ["/bin/busybox", "sleep", "3600"]
    user: "0:0"
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    mac_address: 02:42:ac:11:65:43
    read_only: true
    tmpfs:
      - /scratch:size=1m,mode=1777,noexec
    sysctls:
      net.core.somaxconn: 1234
    ulimits:
      nofile:
        soft: 4321
        hard: 8642
    dns: 9.9.9.9
    dns_search: example.com
    extra_hosts:
      - "myhost=10.1.2.3"
    hostname: box-host
    init: true
    stop_signal: SIGUSR1
    stop_grace_period: 3s
    shm_size: 32m
    pids_limit: 77
    mem_limit: 96m
    security_opt:
      - no-new-privileges:true
    healthcheck:
      test: ["CMD", "/bin/busybox", "true"]
      interval: 1s
      retries: 30
    volumes:
      - ./data:/data:ro,z
      - ./created:/created
      - cache:/cache:nocopy
      - fast:/fast
      - legacy:/legacy
    networks:
      - default
      - outside
volumes:
  cache:
  fast:
    driver: local
    driver_opts:
      type: tmpfs
      device: tmpfs
      o: size=2m
  legacy:
    external: true
    name: {external_volume}
networks:
  outside:
    external: true
    name: {external_network}
"#,
        redis = images::REDIS
    );
    let env = load(&d, &h.name, &compose);
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let id = deployed.instances("box")[0].id.clone();
    let c = inspect(&id);
    let hc = &c["HostConfig"];
    assert_eq!(hc["CapAdd"], serde_json::json!(["NET_ADMIN"]));
    assert_eq!(hc["CapDrop"], serde_json::json!(["MKNOD"]));
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Sysctls"]["net.core.somaxconn"], "1234");
    assert_eq!(hc["Ulimits"][0]["Soft"], 4321);
    assert_eq!(hc["Dns"], serde_json::json!(["9.9.9.9"]));
    assert_eq!(hc["ExtraHosts"], serde_json::json!(["myhost:10.1.2.3"]));
    assert_eq!(hc["Init"], true);
    assert_eq!(hc["ShmSize"], 32 << 20);
    assert_eq!(hc["PidsLimit"], 77);
    assert_eq!(hc["Memory"], 96 << 20);
    assert_eq!(hc["RestartPolicy"]["Name"], "no", "Docker's default where the file is silent");
    assert_eq!(c["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(c["Config"]["StopTimeout"], 3);
    assert_eq!(c["Config"]["Hostname"], "box-host");
    let networks = c["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(networks.values().any(|n| n["MacAddress"] == "02:42:ac:11:65:43"), "{networks:?}");
    assert_eq!(c["Config"]["Healthcheck"]["Test"], serde_json::json!(["CMD", "/bin/busybox", "true"]));
    assert!(hc["Binds"].as_array().unwrap().iter().any(|b| b.as_str().unwrap().ends_with("/data:/data:ro,z")), "{hc}");
    let networks = c["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(networks.contains_key(&external_network), "joined {external_network}: {networks:?}");
    let aliases = &networks[&external_network]["Aliases"];
    assert!(aliases.as_array().unwrap().iter().any(|a| a == "box"), "the service name answers there: {aliases}");
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["Name"] == external_volume.as_str() && m["Destination"] == "/legacy"));

    let sh = |script: &str| {
        let out = docker(&["exec", &id, "/bin/busybox", "sh", "-c", script]);
        out.trim().to_string()
    };
    assert_eq!(sh("cat /proc/sys/net/core/somaxconn"), "1234");
    assert_eq!(sh("ulimit -n"), "4321");
    assert!(sh("grep myhost /etc/hosts").contains("10.1.2.3"));
    // On a network of its own the engine's DNS (127.0.0.11) answers, forwarding to 9.9.9.9.
    assert!(sh("cat /etc/resolv.conf").contains("example.com"));
    assert_eq!(sh("hostname"), "box-host");
    assert_eq!(sh("cat /data/hello.txt"), "hello");
    assert_eq!(sh("touch /root-is-read-only 2>/dev/null && echo wrote || echo refused"), "refused");
    assert_eq!(sh("touch /scratch/x && echo wrote"), "wrote", "tmpfs is writable");
    assert!(sh("grep ' /scratch ' /proc/mounts").contains("noexec"));
    assert!(sh("grep ' /fast ' /proc/mounts").starts_with("tmpfs"), "the volume's driver options made it a tmpfs");
    let fast: Value =
        serde_json::from_str(&docker(&["volume", "inspect", &format!("{PROJECT}-{}-fast", h.name)])).unwrap();
    assert_eq!(fast[0]["Options"]["type"], "tmpfs");
    assert!(d.join("created").is_dir(), "the short-form bind's missing source was created, as Compose creates it");
    // The engine's own health check runs and reports healthy.
    let mut status = String::new();
    for _ in 0..60 {
        status = inspect(&id)["State"]["Health"]["Status"].as_str().unwrap_or_default().to_string();
        if status == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, "healthy");

    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let vols = docker(&["volume", "ls", "-q"]);
    assert!(vols.lines().any(|v| v == external_volume), "an external volume is never the environment's to remove");
    docker(&["volume", "rm", &external_volume]);
    docker(&["network", "rm", &external_network]);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_external_volume_or_network_is_refused_by_the_plan() {
    images::ensure();
    let h = Harness::new("copts-missing").await;
    let d = dir("copts-missing");
    let text = format!(
        "services:\n  box:\n    image: {}\n    volumes:\n      - gone:/gone\nvolumes:\n  gone:\n    external: true\n    name: {}\n",
        images::REDIS,
        support::unique("hm-no-such-volume")
    );
    let env = load(&d, &h.name, &text);
    let err = env.plan(&h.docker).await.unwrap_err().to_string();
    assert!(err.contains("does not exist") && err.contains("docker volume create"), "{err}");
    let text = format!(
        "services:\n  box:\n    image: {}\n    networks: [edge]\nnetworks:\n  edge:\n    external: true\n    name: {}\n",
        images::REDIS,
        support::unique("hm-no-such-network")
    );
    let env = load(&d, &h.name, &text);
    let err = env.plan(&h.docker).await.unwrap_err().to_string();
    assert!(err.contains("does not exist") && err.contains("docker network create"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_the_host_network_is_probed_through_loopback() {
    let h = Harness::new("copts-host").await;
    let d = dir("copts-host");
    // A port of its own on the host: the workload listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = format!(
        "services:\n  web:\n    image: {}\n    network_mode: host\n    environment:\n      PORT: \"{port}\"\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:{port}/health\"]\n      interval: 1s\n      retries: 30\n",
        workload::IMAGE
    );
    let env = load(&d, &h.name, &text);
    let web = env.service("web").unwrap();
    assert!(matches!(web.health().unwrap().probe(), harbormaster::Probe::Http { .. }), "probed from outside");
    env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = support::get(&format!("http://127.0.0.1:{port}/health")).await;
    assert_eq!(status, 200, "the service answers on the host's own port");
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// A migration retried by its restart policy until the database takes it (a common compose
/// idiom): the job completes when a restarted run exits 0, as under Compose, and its dependent
/// starts then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_restarted_on_failure_completes_as_under_compose() {
    let h = Harness::new("copts-job").await;
    let d = dir("copts-job");
    let text = format!(
        r#"
services:
  migrate:
    image: {image}
    restart: on-failure
    volumes:
      - runs:/runs
    environment:
      APPEND_FILE: /runs/count
      APPEND_LINE: run
      FAIL_UNTIL_LINES: "3"
      JOB_EXIT_CODE: "0"
  api:
    image: {image}
    depends_on:
      migrate:
        condition: service_completed_successfully
volumes:
  runs:
"#,
        image = workload::IMAGE
    );
    let env = load(&d, &h.name, &text);
    assert_eq!(env.service("migrate").unwrap().kind(), harbormaster::ServiceKind::Job);
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let job = &deployed.instances("migrate")[0];
    let c = inspect(&job.id);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(c["RestartCount"], 2, "it failed twice, and was restarted each time");
    assert_eq!(c["State"]["ExitCode"], 0);
    assert!(!deployed.instances("api").is_empty());
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// A volume keeps the driver options it was created with: a description with others is refused
/// by the plan, before anything changes, saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_created_with_other_driver_options_is_refused_by_the_plan() {
    images::ensure();
    let h = Harness::new("copts-opts").await;
    let d = dir("copts-opts");
    let volume = format!("{PROJECT}-{}-data", h.name);
    docker(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m", &volume]);
    let text = format!(
        "services:\n  box:\n    image: {}\n    volumes:\n      - data:/data\nvolumes:\n  data:\n    driver_opts:\n      type: tmpfs\n      device: tmpfs\n      o: size=2m\n",
        images::REDIS
    );
    let env = load(&d, &h.name, &text);
    let err = env.plan(&h.docker).await.unwrap_err().to_string();
    assert!(err.contains("o=size=1m") && err.contains("o=size=2m") && err.contains("remove the volume"), "{err}");
    docker(&["volume", "rm", &volume]);
    let _ = std::fs::remove_dir_all(&d);
}

/// `network_mode: service:vpn` (a VPN client's namespace shared by what must go through it): the
/// client listens on the owner's address and ports and reaches it on localhost; replacing the
/// owner replaces the client too, into the new namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_in_another_services_network_namespace_follows_it() {
    let h = Harness::new("copts-netns").await;
    let d = dir("copts-netns");
    let text = |version: &str| {
        format!(
            r#"
services:
  vpn:
    image: {image}
    environment:
      VERSION: {version}
    ports:
      - "127.0.0.1::8081"
  client:
    image: {image}
    network_mode: service:vpn
    environment:
      PORT: "8081"
      VERSION: client
"#,
            image = workload::IMAGE
        )
    };
    let env = load(&d, &h.name, &text("vpn-1"));
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let url = deployed.endpoint("vpn", 8081).unwrap().http_url();
    let (status, body) = support::get(&format!("{url}/version")).await;
    assert_eq!((status, body.trim()), (200, "client"), "the owner's published port reaches the client");
    let (status, body) = support::get(&format!("{url}/call/127.0.0.1/8080/version")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vpn-1"), "the client reaches the owner on loopback: {body}");
    let vpn = deployed.instances("vpn")[0].id.clone();
    let client = deployed.instances("client")[0].id.clone();
    assert_eq!(inspect(&client)["HostConfig"]["NetworkMode"], format!("container:{vpn}"));
    assert!(env.plan(&h.docker).await.unwrap().is_noop(), "a second plan changes nothing");

    // A new owner takes its namespace with it: the client is replaced into the new one.
    let env = load(&d, &h.name, &text("vpn-2"));
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(
        matches!(plan.service("client").unwrap().action, harbormaster::Action::Replace { .. }),
        "the client is replaced with its namespace's owner: {plan}"
    );
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let new_vpn = deployed.instances("vpn")[0].id.clone();
    let new_client = deployed.instances("client")[0].id.clone();
    assert_ne!(new_vpn, vpn);
    assert_ne!(new_client, client);
    assert_eq!(inspect(&new_client)["HostConfig"]["NetworkMode"], format!("container:{new_vpn}"));
    let url = deployed.endpoint("vpn", 8081).unwrap().http_url();
    let (status, body) = support::get(&format!("{url}/call/127.0.0.1/8080/version")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vpn-2"), "{body}");
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// `deploy.mode: global` on a single engine runs one instance, as Compose runs it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_service_runs_once_on_a_single_engine() {
    let h = Harness::new("copts-global").await;
    let d = dir("copts-global");
    let text = format!("services:\n  agent:\n    image: {}\n    deploy:\n      mode: global\n", workload::IMAGE);
    let env = load(&d, &h.name, &text);
    assert!(env.service("agent").unwrap().is_global());
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deployed.instances("agent").len(), 1);
    let status = env.status(&h.docker).await.unwrap();
    assert_eq!(status.services[0].desired, 1);
    assert!(env.plan(&h.docker).await.unwrap().is_noop());
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// Configs and secrets given inline (`content`) or from a variable (`environment`) are written
/// into the container before it starts, where Compose puts them, with their mode; the secret's
/// value is in the file and nowhere else (not in labels, not in what the library shows), and a
/// changed value or text replaces the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_configs_and_secrets_from_variables_are_written_into_the_container() {
    let h = Harness::new("copts-files").await;
    let d = dir("copts-files");
    let text = format!(
        r#"
services:
  app:
    image: {image}
    configs:
      - source: app_conf
        target: /etc/app/app.conf
        mode: 0440
      - plain
    secrets:
      - token
configs:
  app_conf:
    content: |
      greeting=${{GREETING}}
  plain:
    environment: PLAIN_VALUE
secrets:
  token:
    environment: APP_TOKEN
"#,
        image = workload::IMAGE
    );
    std::fs::write(d.join("docker-compose.yml"), &text).unwrap();
    let load = |greeting: &str, token: &str| {
        Compose::new(d.join("docker-compose.yml"))
            .project(PROJECT)
            .environment(&h.name)
            .process_env(false)
            .var("GREETING", greeting)
            .var("PLAIN_VALUE", "plain text")
            .var("APP_TOKEN", token)
            .load()
            .unwrap_or_else(|e| panic!("{e}"))
            .environment
    };
    let token = "tok-9f8e7d6c5b4a";
    let env = load("hello", token);
    let files = env.service("app").unwrap().files();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0].permissions(), 0o440);
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let id = deployed.instances("app")[0].id.clone();
    assert_eq!(docker(&["exec", &id, "/workload", "cat", "/etc/app/app.conf"]), "greeting=hello\n");
    assert_eq!(docker(&["exec", &id, "/workload", "cat", "/plain"]), "plain text");
    // The mode, from the tar header `docker cp` gives (bytes 100..108, octal).
    let tar =
        std::process::Command::new("docker").args(["cp", &format!("{id}:/etc/app/app.conf"), "-"]).output().unwrap();
    let mode = String::from_utf8_lossy(&tar.stdout[100..107]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
    assert_eq!(u32::from_str_radix(&mode, 8).unwrap() & 0o7777, 0o440);
    assert_eq!(docker(&["exec", &id, "/workload", "cat", "/run/secrets/token"]), token);
    let c = inspect(&id);
    assert!(!c["Config"].to_string().contains(token), "the secret is in the container's configuration");
    let out = env.exec(&h.docker, "app", ["/workload", "cat", "/run/secrets/token"]).await.unwrap();
    assert_eq!(out.stdout.trim(), "[redacted]", "what comes back is scrubbed");
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "the files read back match: {plan}");
    assert!(!plan.to_string().contains(token));

    // A new secret value, found by reading the file back.
    let env = load("hello", "tok-0a1b2c3d4e5f");
    let plan = env.plan(&h.docker).await.unwrap();
    let app = plan.service("app").unwrap();
    assert!(matches!(app.action, harbormaster::Action::Replace { .. }), "{plan}");
    assert!(app.reasons.iter().any(|r| r.contains("secret file /run/secrets/token changed")), "{:?}", app.reasons);
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let id = deployed.instances("app")[0].id.clone();
    assert_eq!(docker(&["exec", &id, "/workload", "cat", "/run/secrets/token"]), "tok-0a1b2c3d4e5f");
    // New text.
    let env = load("bonjour", "tok-0a1b2c3d4e5f");
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(matches!(plan.service("app").unwrap().action, harbormaster::Action::Replace { .. }), "{plan}");
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let id = deployed.instances("app")[0].id.clone();
    assert_eq!(docker(&["exec", &id, "/workload", "cat", "/etc/app/app.conf"]), "greeting=bonjour\n");
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// An image's `VOLUME` (postgres's data directory) survives a replacement under Compose, which
/// hands the old container's anonymous volume to the new one: so does a compose file's service
/// here, and the volume goes with the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_images_anonymous_volume_survives_a_replacement_as_under_compose() {
    let h = Harness::new("copts-anon").await;
    let d = dir("copts-anon");
    let image = format!("hmtest/{}:1", support::unique("anon"));
    std::fs::write(d.join("Dockerfile"), format!("FROM {}\nVOLUME /data\n", workload::IMAGE)).unwrap();
    docker(&["build", "-q", "-t", &image, d.to_str().unwrap()]);
    let text = |line: &str| {
        format!(
            "services:\n  db:\n    image: {image}\n    environment:\n      APPEND_FILE: /data/runs\n      APPEND_LINE: {line}\n"
        )
    };
    let env = load(&d, &h.name, &text("first"));
    assert!(env.service("db").unwrap().keeps_anonymous_volumes());
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let first = deployed.instances("db")[0].id.clone();
    let volume = inspect(&first)["Mounts"][0]["Name"].as_str().unwrap().to_string();
    assert_eq!(docker(&["exec", &first, "/workload", "cat", "/data/runs"]), "first\n");

    let env = load(&d, &h.name, &text("second"));
    let deployed = env.apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let second = deployed.instances("db")[0].id.clone();
    assert_ne!(second, first, "replaced");
    assert_eq!(inspect(&second)["Mounts"][0]["Name"], volume.as_str(), "the same volume");
    assert_eq!(docker(&["exec", &second, "/workload", "cat", "/data/runs"]), "first\nsecond\n");

    // Without it (a builder service, as `docker run` does), a replacement starts afresh.
    let fresh = |line: &str| {
        harbormaster::Environment::builder(PROJECT, &h.name)
            .service(
                harbormaster::Service::builder("db")
                    .image(&image)
                    .env("APPEND_FILE", "/data/runs")
                    .env("APPEND_LINE", line)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let deployed = fresh("third").apply(&h.docker).await.unwrap_or_else(|e| panic!("{e}"));
    let third = deployed.instances("db")[0].id.clone();
    assert_eq!(docker(&["exec", &third, "/workload", "cat", "/data/runs"]), "third\n");
    fresh("third").down(&h.docker, Down::default().with_volumes()).await.unwrap();
    let left = docker(&["volume", "ls", "-q"]);
    assert!(!left.contains(&volume), "the anonymous volume went with its last container");
    docker(&["rmi", &image]);
    let _ = std::fs::remove_dir_all(&d);
}
