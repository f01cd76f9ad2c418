//! Seed 001's shape deployed over SSH to three hosts, then re-applied unchanged; side by side with
//! the way the seed guides do it by hand: the Docker CLI over `ssh://` (one `ssh` per command).
//!
//! Hosts are the test hosts of `tests/fixtures/hosts.sh` (each its own netns, dockerd and sshd;
//! `hm-host-c` is reached through `hm-host-a` as a jump host). Topology: gateway on A, the API (2
//! replicas) on B and C, the database and the broker on C; every service waits for its
//! dependencies to be healthy. Each run uses a freshly built image (the workload with a label of
//! the run), so shipping it to the three hosts is part of the first deploy.
//!
//! SSH handshakes are counted from the hosts' sshd logs ("Accepted publickey"; a connection to C
//! through A counts on both). Reports medians of `RUNS` (default 3).
//! Run: `cargo bench --bench multi_host` (as root: it sets the hosts up).

mod common;
#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harbormaster::{
    Condition, DockerBackend, Down, Environment, Fleet, HealthCheck, Port, Service, ServiceRef, SshHost,
};

const HOSTS: [(&str, &str, &str); 3] =
    [("hm-host-a", "a", "10.77.0.11"), ("hm-host-b", "b", "10.77.0.12"), ("hm-host-c", "c", "10.77.0.13")];

fn handshakes() -> u64 {
    HOSTS
        .iter()
        .map(|(_, dir, _)| {
            std::fs::read_to_string(format!("/run/hm-hosts/{dir}/sshd.log"))
                .map(|l| l.matches("Accepted publickey").count() as u64)
                .unwrap_or(0)
        })
        .sum()
}

fn build_image(tag: &str) {
    let dir = std::env::temp_dir().join(tag.replace(['/', ':'], "-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nLABEL io.hmbench.run={tag}\n", workload::IMAGE)).unwrap();
    let ok = Command::new("docker").args(["build", "-q", "-t", tag]).arg(&dir).stdout(Stdio::null()).status().unwrap();
    assert!(ok.success(), "docker build {tag}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100)
}

fn environment(name: &str, image: &str, ports: [u16; 4]) -> Environment {
    let svc = |n: &str, role: &str| {
        Service::builder(n)
            .image(image)
            .role(role)
            .env("VERSION", n)
            .health(check())
            .stop_grace_period(Duration::from_secs(1))
    };
    Environment::builder("hmbench", name)
        .hosts("gateway", ["hm-host-a"])
        .hosts("app", ["hm-host-b", "hm-host-c"])
        .hosts("db", ["hm-host-c"])
        .service(svc("db", "db").port(Port::tcp(8080).publish(ports[0])).build().unwrap())
        .service(
            svc("message", "db")
                .port(Port::tcp(8081).publish(ports[1]))
                .env("PORT", "8081")
                .health(HealthCheck::http(8081, "/health").interval(Duration::from_millis(100)).retries(100))
                .build()
                .unwrap(),
        )
        .service(
            svc("api", "app")
                .replicas(2)
                .port(Port::tcp(8080).publish(ports[2]))
                .env_ref("DATABASE_URL", ServiceRef::to("db", 8080).format("postgres://app@{host}:{port}/shop"))
                .env_ref("BROKER", ServiceRef::to("message", 8081))
                .depends_on("db", Condition::Healthy)
                .depends_on("message", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .service(
            svc("gateway", "gateway")
                .port(Port::tcp(8080).publish(ports[3]))
                .env_ref("UPSTREAM", ServiceRef::to("api", 8080))
                .depends_on("api", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

struct Sample {
    connect: Duration,
    connect_handshakes: u64,
    deploy: Duration,
    deploy_handshakes: u64,
    reapply: Duration,
    reapply_handshakes: u64,
}

async fn harbormaster_run(run: usize) -> Sample {
    let image = format!("hmbench/hm-{}:1", common::unique(""));
    build_image(&image);
    let name = common::unique(&format!("mh{run}-"));
    let h0 = handshakes();
    let t = Instant::now();
    let connected =
        futures::future::join_all(HOSTS.iter().map(|(alias, _, _)| SshHost::builder(*alias).connect())).await;
    let mut b = Fleet::builder();
    for h in connected {
        b = b.host(h.expect("connect"));
    }
    let fleet = b.images_from(DockerBackend::connect().await.unwrap()).build().unwrap();
    let connect = t.elapsed();
    let h1 = handshakes();
    let env = environment(&name, &image, [21001, 21002, 21003, 21004]);
    let t = Instant::now();
    env.apply(&fleet).await.expect("deploy");
    let deploy = t.elapsed();
    let h2 = handshakes();
    let t = Instant::now();
    env.apply(&fleet).await.expect("re-apply");
    let reapply = t.elapsed();
    let h3 = handshakes();
    env.down(&fleet, Down::default().with_volumes()).await.expect("down");
    Sample {
        connect,
        connect_handshakes: h1 - h0,
        deploy,
        deploy_handshakes: h2 - h1,
        reapply,
        reapply_handshakes: h3 - h2,
    }
}

fn docker_ssh(host: &str, args: &[&str]) -> bool {
    Command::new("docker")
        .arg("-H")
        .arg(format!("ssh://{host}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn wait_http(url: &str) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    for _ in 0..200 {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// The by-hand way: per host, ship the image if missing (`docker save | docker -H ssh:// load`), make
/// a network, `docker run` each container in dependency order, and poll each until healthy; the
/// "re-apply" is what a script needs to see that nothing changed: `docker ps` per host.
async fn by_hand_run(run: usize) -> (Duration, u64, Duration, u64) {
    let image = format!("hmbench/cli-{}:1", common::unique(""));
    build_image(&image);
    let net = format!("hmbench-cli{run}");
    let h0 = handshakes();
    let t = Instant::now();
    std::thread::scope(|s| {
        for (alias, _, _) in HOSTS {
            let (image, net) = (&image, &net);
            s.spawn(move || {
                if !docker_ssh(alias, &["image", "inspect", image]) {
                    let ok = Command::new("sh")
                        .arg("-c")
                        .arg(format!("docker save {image} | docker -H ssh://{alias} load"))
                        .stdout(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(ok.success());
                }
                assert!(docker_ssh(alias, &["network", "create", net]));
            });
        }
    });
    let run_on = |alias: &str, name: &str, port: u16, container_port: u16, env: &[String]| {
        let mut args: Vec<String> =
            vec!["run".into(), "-d".into(), "--name".into(), name.into(), "--network".into(), net.clone()];
        args.extend(["-p".into(), format!("{port}:{container_port}"), "-e".into(), format!("PORT={container_port}")]);
        for e in env {
            args.extend(["-e".into(), e.clone()]);
        }
        args.push(image.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(docker_ssh(alias, &refs), "docker run {name} on {alias}");
    };
    let (a, b, c) = (HOSTS[0].2, HOSTS[1].2, HOSTS[2].2);
    run_on("hm-host-c", "db", 21011, 8080, &["VERSION=db".into()]);
    run_on("hm-host-c", "message", 21012, 8081, &["VERSION=message".into()]);
    wait_http(&format!("http://{c}:21011/health")).await;
    wait_http(&format!("http://{c}:21012/health")).await;
    let api_env = [format!("DATABASE_URL=postgres://app@{c}:21011/shop"), format!("BROKER={c}:21012")];
    run_on("hm-host-b", "api-0", 21013, 8080, &api_env);
    run_on("hm-host-c", "api-1", 21013, 8080, &api_env);
    wait_http(&format!("http://{b}:21013/health")).await;
    wait_http(&format!("http://{c}:21013/health")).await;
    run_on("hm-host-a", "gateway", 21014, 8080, &[format!("UPSTREAM={b}:21013")]);
    wait_http(&format!("http://{a}:21014/health")).await;
    let deploy = t.elapsed();
    let h1 = handshakes();
    let t = Instant::now();
    for (alias, _, _) in HOSTS {
        assert!(docker_ssh(alias, &["ps", "--filter", &format!("network={net}")]));
    }
    let check = t.elapsed();
    let h2 = handshakes();
    for (alias, _, _) in HOSTS {
        for n in ["db", "message", "api-0", "api-1", "gateway"] {
            let _ = docker_ssh(alias, &["rm", "-f", n]);
        }
        let _ = docker_ssh(alias, &["network", "rm", &net]);
    }
    (deploy, h1 - h0, check, h2 - h1)
}

#[tokio::main]
async fn main() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts.sh");
    let ok = Command::new("bash").arg(script).arg("up").status().expect("hosts.sh");
    assert!(ok.success(), "the SSH test hosts could not be set up");
    workload::ensure_images();
    let runs = common::runs(3);
    let mut hm = Vec::new();
    let mut cli = Vec::new();
    for run in 0..runs {
        hm.push(harbormaster_run(run).await);
        cli.push(by_hand_run(run).await);
        eprintln!("run {run} done");
    }
    let ms = |d: Duration| d.as_millis();
    let med_d = |f: &dyn Fn(&Sample) -> Duration| common::median(hm.iter().map(|s| ms(f(s))).collect());
    let med_n = |f: &dyn Fn(&Sample) -> u64| common::median(hm.iter().map(f).collect());
    println!("multi-host deploy, 3 hosts over SSH, 5 containers, medians of {runs} runs");
    println!("| | time | SSH handshakes |");
    println!("|---|---|---|");
    println!(
        "| harbormaster: connect (3 hosts, one via a jump host) + host checks | {} ms | {} |",
        med_d(&|s| s.connect),
        med_n(&|s| s.connect_handshakes)
    );
    println!(
        "| harbormaster: first deploy (image shipped to 3 hosts) | {} ms | {} |",
        med_d(&|s| s.deploy),
        med_n(&|s| s.deploy_handshakes)
    );
    println!("| harbormaster: no-op re-apply | {} ms | {} |", med_d(&|s| s.reapply), med_n(&|s| s.reapply_handshakes));
    let cli_deploy = common::median(cli.iter().map(|c| ms(c.0)).collect());
    let cli_hs = common::median(cli.iter().map(|c| c.1).collect());
    let cli_check = common::median(cli.iter().map(|c| ms(c.2)).collect());
    let cli_check_hs = common::median(cli.iter().map(|c| c.3).collect());
    println!("| docker CLI over ssh:// by hand: deploy (image shipped to 3 hosts) | {cli_deploy} ms | {cli_hs} |");
    println!("| docker CLI over ssh:// by hand: `docker ps` on each host | {cli_check} ms | {cli_check_hs} |");
}
