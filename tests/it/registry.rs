//! Images from a real registry (Debian's docker-registry with htpasswd, on loopback): pulls with
//! progress, one transfer per image, typed and fast failures, credentials from the Docker CLI's
//! configuration and its helpers, a tag moved between deploys, rollback to the old digest, a
//! stalled registry, an image for another platform, and an SSH host pulling for itself.

use crate::support;

use std::time::{Duration, Instant};

use harbormaster::{
    DockerBackend, Down, Environment, Error, EventKind, ImageAction, ImageStore, PullPolicy, RegistryAuth,
    RegistryErrorKind, Secret,
};
use support::registry::{self, ADDR, PASSWORD, USER};
use support::{apply_collect, unique, Harness, PROJECT};

async fn harness(tag: &str) -> Harness {
    Harness { docker: registry::docker().await, name: unique(tag) }
}

/// `/marker` of the first running instance of `service`.
async fn marker(env: &Environment, docker: &DockerBackend, service: &str) -> String {
    let out = env.exec(docker, service, ["/workload", "cat", "/marker"]).await.unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout
}

#[tokio::test]
async fn a_missing_image_is_pulled_once_with_progress_and_its_digest_pinned() {
    let h = harness("pull").await;
    let repo = unique("pull");
    let (id, digest) = registry::push_variant(&h.docker, &repo, "1", "one").await;
    let reference = format!("{ADDR}/{repo}:1");
    let env = h
        .env()
        .service(h.svc("a").image(&reference).build().unwrap())
        .service(h.svc("b").image(&reference).build().unwrap())
        .build()
        .unwrap();

    // The plan pulls nothing: it asks the registry and says what it would pull.
    let plan = env.plan(&h.docker).await.unwrap();
    let image = plan.images.iter().find(|i| i.reference == reference).expect("the image is in the plan");
    assert_eq!(image.action, ImageAction::Pull);
    assert_eq!(image.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(image.services, vec!["a".to_string(), "b".to_string()]);
    assert!(h.docker.image_id(&reference).await.unwrap().is_none(), "a plan pulled the image");
    assert!(plan.to_string().contains(&reference), "{plan}");

    let (r, events) = apply_collect(&env, &h.docker).await;
    r.unwrap();
    let pulled: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ImagePulled { reference: r, services, image_id, digest: d, .. } if *r == reference => {
                Some((services.clone(), image_id.clone(), d.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(pulled.len(), 1, "two services, one pull: {pulled:?}");
    assert_eq!(pulled[0], (vec!["a".to_string(), "b".to_string()], id.clone(), Some(digest.clone())));
    let progress: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ImagePulling { progress, .. } => Some(*progress),
            _ => None,
        })
        .collect();
    let last = progress.last().expect("progress was reported");
    assert!(last.layers > 0 && last.layers_done == last.layers, "{last:?}");
    assert!(progress.iter().all(|p| p.done <= p.total), "{progress:?}");
    assert_eq!(marker(&env, &h.docker, "a").await, "one");

    // The revision pins the digest; the next plan changes nothing and finds the image present.
    let history = env.history(&h.docker, "a").await.unwrap();
    assert_eq!(history.last().unwrap().image_pin.as_deref(), Some(format!("{ADDR}/{repo}@{digest}").as_str()));
    let again = env.plan(&h.docker).await.unwrap();
    assert!(again.is_noop(), "{again}");
    assert_eq!(again.images[0].action, ImageAction::Present);
    env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    registry::remove_local(&h.docker, &reference).await;
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_transfer_it_once() {
    let docker = registry::docker().await;
    let repo = unique("dedup");
    let (id, _) = registry::push_variant(&docker, &repo, "1", "dedup").await;
    let reference = format!("{ADDR}/{repo}:1");
    let pulls = (0..4).map(|_| {
        let (docker, reference) = (docker.clone(), reference.clone());
        async move {
            let reports = std::sync::atomic::AtomicU32::new(0);
            let report = |_| {
                reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            };
            let r = docker.pull_image(&reference, &report).await;
            (r, reports.load(std::sync::atomic::Ordering::Relaxed))
        }
    });
    let results = futures::future::join_all(pulls).await;
    for (r, _) in &results {
        assert_eq!(r.as_ref().unwrap().id, id);
    }
    // Only the one transfer reports progress; the other three take its result.
    let transfers = results.iter().filter(|(_, reports)| *reports > 0).count();
    assert_eq!(transfers, 1, "{:?}", results.iter().map(|(_, n)| *n).collect::<Vec<_>>());
    registry::remove_local(&docker, &reference).await;
}

#[tokio::test]
async fn registry_failures_are_typed_named_and_fast() {
    registry::ensure();
    let repo = unique("fail");
    let good = registry::docker().await;
    let (_, _) = registry::push_variant(&good, &repo, "1", "fail").await;
    let reference = format!("{ADDR}/{repo}:1");
    let expect = |r: harbormaster::Result<harbormaster::ImageInfo>, kind: RegistryErrorKind| -> (String, String) {
        match r {
            Err(Error::Registry { kind: k, registry, credentials, reference: named, .. }) => {
                assert_eq!(k, kind, "{credentials}");
                assert_eq!(registry, ADDR);
                (credentials, named)
            }
            Err(other) => panic!("expected a {kind:?} registry error, got {other}"),
            Ok(_) => panic!("expected a {kind:?} registry error, got an image"),
        }
    };

    // Wrong password: unauthorized, naming the user and where the credentials came from, never the password.
    let wrong = DockerBackend::builder()
        .registry_auth(ADDR, RegistryAuth::basic(USER, Secret::new("not-the-password-42")))
        .docker_config_credentials(false)
        .connect()
        .await
        .unwrap();
    let t = Instant::now();
    let err = wrong.pull(&reference).await;
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    let text = format!("{:?} {}", err.as_ref().err(), err.as_ref().err().map(|e| e.to_string()).unwrap_or_default());
    assert!(!text.contains("not-the-password-42") && !text.contains(PASSWORD), "{text}");
    let (credentials, named) = expect(err, RegistryErrorKind::Unauthorized);
    assert!(credentials.contains(USER) && credentials.contains("given to the backend"), "{credentials}");
    assert_eq!(named, reference);

    // No credentials at all.
    let anonymous = DockerBackend::builder().docker_config_credentials(false).connect().await.unwrap();
    let t = Instant::now();
    let (credentials, _) = expect(anonymous.pull(&reference).await, RegistryErrorKind::Unauthorized);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(credentials, "none");

    // A tag that was never pushed, and a repository that does not exist.
    let t = Instant::now();
    expect(good.pull(&format!("{ADDR}/{repo}:missing")).await, RegistryErrorKind::NotFound);
    expect(good.pull(&format!("{ADDR}/{}:1", unique("nothing"))).await, RegistryErrorKind::NotFound);
    assert!(t.elapsed() < Duration::from_secs(10));

    // Nothing listens there.
    let t = Instant::now();
    match good.pull("127.0.0.1:5999/nothing/here:1").await {
        Err(Error::Registry { kind: RegistryErrorKind::Unreachable, registry, .. }) => {
            assert_eq!(registry, "127.0.0.1:5999")
        }
        other => panic!("expected unreachable, got {:?}", other.map(|i| i.id)),
    }
    assert!(t.elapsed() < Duration::from_secs(5));

    // Through an apply, the service is named too, and a plan fails the same way before anything changes.
    let h = Harness { docker: wrong.clone(), name: unique("fail") };
    let env = h.env().service(h.svc("api").image(&reference).build().unwrap()).build().unwrap();
    match env.plan(&wrong).await {
        Err(Error::Registry { kind: RegistryErrorKind::Unauthorized, .. }) => {}
        other => panic!("expected unauthorized from the plan, got {other:?}"),
    }
    assert!(env.status(&wrong).await.unwrap().services.iter().all(|s| s.instances.is_empty()));
}

#[tokio::test]
async fn pull_policy_never_does_not_pull_and_always_picks_up_a_moved_tag() {
    let h = harness("policy").await;
    let repo = unique("policy");
    let reference = format!("{ADDR}/{repo}:stable");
    let (id1, d1): (String, String) = registry::push_variant(&h.docker, &repo, "stable", "v1").await;
    let env = |policy| h.env().service(h.svc("api").image(&reference).pull(policy).build().unwrap()).build().unwrap();

    match env(PullPolicy::Never).apply(&h.docker).await {
        Err(Error::ImageNotFound { reference: r, .. }) => assert_eq!(r, reference),
        other => panic!("Never must not pull: {:?}", other.map(|_| ())),
    }
    env(PullPolicy::Always).apply(&h.docker).await.unwrap();
    assert_eq!(marker(&env(PullPolicy::Always), &h.docker, "api").await, "v1");

    // The tag is pushed again with other contents.
    let (id2, d2) = registry::push_variant(&h.docker, &repo, "stable", "v2").await;
    assert_ne!(d1, d2);
    // The engine's copy is gone (push_variant removes the tag): put v1 back as the tag, as a
    // machine that pulled it yesterday has it.
    h.docker.pull(&format!("{ADDR}/{repo}@{d1}")).await.unwrap();
    h.docker
        .client()
        .tag_image(
            &id1,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::new()
                    .repo(&format!("{ADDR}/{repo}"))
                    .tag("stable")
                    .build(),
            ),
        )
        .await
        .unwrap();

    // IfMissing keeps what the engine has; Always sees that the tag moved, and says so.
    assert!(env(PullPolicy::IfMissing).plan(&h.docker).await.unwrap().is_noop());
    let plan = env(PullPolicy::Always).plan(&h.docker).await.unwrap();
    assert_eq!(plan.images[0].action, ImageAction::TagMoved { from: Some(d1.clone()) }, "{plan}");
    assert_eq!(plan.images[0].digest.as_deref(), Some(d2.as_str()));
    assert!(!plan.is_noop(), "{plan}");
    let (r, events) = apply_collect(&env(PullPolicy::Always), &h.docker).await;
    r.unwrap();
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ImagePulled { replaced: Some(from), image_id, .. } if *from == d1 && *image_id == id2)));
    assert_eq!(marker(&env(PullPolicy::Always), &h.docker, "api").await, "v2");

    // The tag moves once more; a rollback still brings back exactly v1 (its digest), not the tag,
    // even with v1 gone from the engine and its kept copy gone from the state store: it is pulled
    // by digest.
    let (_, d3) = registry::push_variant(&h.docker, &repo, "stable", "v3").await;
    assert_ne!(d3, d1);
    registry::remove_local(&h.docker, &id1).await;
    assert!(h.docker.image_id(&id1).await.unwrap().is_none());
    let kept = format!("{PROJECT}-{}.image.", h.name);
    let volumes = h.docker.client().list_volumes(None::<bollard::query_parameters::ListVolumesOptions>).await.unwrap();
    let mut removed = 0;
    for v in volumes.volumes.unwrap_or_default().into_iter().filter(|v| v.name.starts_with(&kept)) {
        h.docker.client().remove_volume(&v.name, None::<bollard::query_parameters::RemoveVolumeOptions>).await.unwrap();
        removed += 1;
    }
    assert!(removed >= 1, "v1's kept copy was not found (looked for {kept}*)");
    let back = env(PullPolicy::Always).rollback(&h.docker, "api").await.unwrap();
    let _ = back;
    assert_eq!(marker(&env(PullPolicy::Always), &h.docker, "api").await, "v1");
    let history = env(PullPolicy::Always).history(&h.docker, "api").await.unwrap();
    let current = history.iter().find(|r| r.current).unwrap();
    assert_eq!(current.image_id, id1);
    assert_eq!(current.image_pin.as_deref(), Some(format!("{ADDR}/{repo}@{d1}").as_str()));
    env(PullPolicy::Always).down(&h.docker, Down::default().with_volumes()).await.unwrap();
}

/// The child half of `credentials_come_from_the_docker_cli_configuration`: runs with
/// `DOCKER_CONFIG` and `PATH` set by the parent, and pulls with a default backend.
#[tokio::test]
#[ignore = "a child process of credentials_come_from_the_docker_cli_configuration"]
async fn child_pulls_with_cli_credentials() {
    let reference = std::env::var("HM_CHILD_REFERENCE").unwrap();
    let expect = std::env::var("HM_CHILD_EXPECT").unwrap();
    let docker = DockerBackend::connect().await.unwrap();
    let r = docker.pull(&reference).await;
    match (expect.as_str(), r) {
        ("ok", Ok(_)) => println!("CHILD-OK"),
        ("unauthorized", Err(Error::Registry { kind: RegistryErrorKind::Unauthorized, credentials, .. })) => {
            println!("CHILD-OK credentials={credentials}")
        }
        (_, other) => panic!("unexpected: {:?}", other.map(|i| i.id)),
    }
    registry::remove_local(&docker, &reference).await;
}

#[test]
fn credentials_come_from_the_docker_cli_configuration() {
    registry::ensure();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let repo = unique("cli");
    let reference = format!("{ADDR}/{repo}:1");
    rt.block_on(async {
        let docker = registry::docker().await;
        registry::push_variant(&docker, &repo, "1", "cli").await;
    });
    let dir = std::env::temp_dir().join(unique("hm-docker-config"));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A credential helper speaking the docker-credential-helpers protocol.
    let helper = bin.join("docker-credential-hmtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = {ADDR} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&helper).unwrap().permissions(), 0o755);
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |config: String, expect: &str| -> String {
        std::fs::write(dir.join("config.json"), config).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(support::child_args(module_path!(), "child_pulls_with_cli_credentials"))
            .env("DOCKER_CONFIG", &dir)
            .env("PATH", path)
            .env("HM_CHILD_REFERENCE", &reference)
            .env("HM_CHILD_EXPECT", expect)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("CHILD-OK"), "{text}");
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
        text
    };
    use base64::Engine as _;
    let encoded = |user: &str, pw: &str| base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    // `auths`, as `docker login` writes it.
    run(format!(r#"{{"auths":{{"{ADDR}":{{"auth":"{}"}}}}}}"#, encoded(USER, PASSWORD)), "ok");
    // A URL-form key, as older clients wrote it.
    run(format!(r#"{{"auths":{{"http://{ADDR}/v2/":{{"auth":"{}"}}}}}}"#, encoded(USER, PASSWORD)), "ok");
    // `credHelpers` for this registry, and `credsStore` for all.
    run(format!(r#"{{"credHelpers":{{"{ADDR}":"hmtest"}}}}"#), "ok");
    run(r#"{"credsStore":"hmtest"}"#.to_string(), "ok");
    // Wrong credentials in the file: unauthorized, saying which file, never the password.
    let text =
        run(format!(r#"{{"auths":{{"{ADDR}":{{"auth":"{}"}}}}}}"#, encoded(USER, "wrong-pass-77")), "unauthorized");
    assert!(text.contains("config.json") && text.contains(USER), "{text}");
    assert!(!text.contains("wrong-pass-77"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP proxy in front of the registry that forwards everything until a blob download has sent
/// `allowed` bytes, then goes silent (the connection stays open): a registry that stalls.
async fn stalling_proxy(allowed: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(ADDR).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let blob = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let seen = blob.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if String::from_utf8_lossy(&buf[..n]).contains("/blobs/sha256:") {
                            seen.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
                let mut sent_after_blob = 0usize;
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut n = n;
                    if blob.load(std::sync::atomic::Ordering::SeqCst) {
                        n = n.min(allowed.saturating_sub(sent_after_blob));
                        sent_after_blob += n;
                    }
                    if n > 0 && cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if blob.load(std::sync::atomic::Ordering::SeqCst) && sent_after_blob >= allowed {
                        // Silent from here on, the connection held open.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_stalled_pull_fails_instead_of_hanging() {
    let docker = registry::docker().await;
    let repo = unique("stall");
    registry::push_variant(&docker, &repo, "1", "stall").await;
    let port = stalling_proxy(2048).await;
    let proxied = format!("127.0.0.1:{port}");
    let stalling = DockerBackend::builder()
        .registry_auth(&proxied, registry::auth())
        .docker_config_credentials(false)
        .pull_stall_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let reference = format!("{proxied}/{repo}:1");
    let t = Instant::now();
    match stalling.pull(&reference).await {
        Err(Error::Registry { kind: RegistryErrorKind::Stalled, reference: r, .. }) => assert_eq!(r, reference),
        other => panic!("expected a stalled pull, got {:?}", other.map(|i| i.id)),
    }
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    // The engine gave up the transfer with it: the image is not there, half-pulled or otherwise.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stalling.image_id(&reference).await.unwrap().is_none());
}

/// Uploads a blob to the registry with its HTTP API; its digest.
async fn upload_blob(client: &reqwest::Client, repo: &str, bytes: Vec<u8>) -> String {
    use sha2::Digest;
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    let start = client
        .post(format!("http://{ADDR}/v2/{repo}/blobs/uploads/"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") { location } else { format!("http://{ADDR}{location}") };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{sep}digest={digest}"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{}", put.text().await.unwrap_or_default());
    digest
}

#[tokio::test]
async fn an_image_for_another_platform_is_refused_by_name() {
    use sha2::Digest;
    let docker = registry::docker().await;
    let client = reqwest::Client::new();
    let repo = unique("arm");
    let config =
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#.to_vec();
    let config_len = config.len();
    let config_digest = upload_blob(&client, &repo, config).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{config_len},"digest":"{config_digest}"}},"layers":[]}}"#
    );
    let manifest_digest = format!("sha256:{:x}", sha2::Sha256::digest(manifest.as_bytes()));
    let put = |reference: String, body: String, media: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .put(format!(
                    "http://{ADDR}/v2/{repo}/manifests/{reference}",
                    repo = reference.split('|').next().unwrap(),
                    reference = reference.split('|').nth(1).unwrap()
                ))
                .basic_auth(USER, Some(PASSWORD))
                .header("content-type", media)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap_or_default());
        }
    };
    let manifest_len = manifest.len();
    put(format!("{repo}|{manifest_digest}"), manifest, "application/vnd.docker.distribution.manifest.v2+json").await;
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":{manifest_len},"digest":"{manifest_digest}","platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
    );
    put(format!("{repo}|1"), list, "application/vnd.docker.distribution.manifest.list.v2+json").await;

    let reference = format!("{ADDR}/{repo}:1");
    let t = Instant::now();
    match docker.pull(&reference).await {
        Err(e @ Error::Registry { kind: RegistryErrorKind::WrongPlatform, .. }) => {
            assert!(e.to_string().contains(&reference), "{e}");
        }
        other => panic!("expected wrong platform, got {:?}", other.map(|i| i.id)),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_pushed_build_is_pulled_by_ssh_hosts_themselves() {
    support::hosts::ensure();
    registry::ensure();
    let local = registry::docker().await;
    let repo = unique("fleet");
    // Built here and pushed by the library; the hosts reach the same registry at its bridge address.
    let dir = std::env::temp_dir().join(unique("hm-fleet-build"));
    std::fs::create_dir_all(&dir).unwrap();
    // Unique contents: an image no host has from an earlier run.
    std::fs::write(dir.join("marker"), &repo).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {}\nCOPY marker /marker\n", support::workload::ensure_images()),
    )
    .unwrap();
    let pushed = format!("{ADDR}/{repo}:1");
    let builder_env = Environment::builder(PROJECT, unique("pushbuild"))
        .service(
            harbormaster::Service::job("build")
                .build_from(harbormaster::Build::context(&dir).tag(&pushed).push())
                .env("JOB_EXIT_CODE", "0")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (r, events) = apply_collect(&builder_env, &local).await;
    r.unwrap();
    let digest = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ImagePushed { reference, digest } if *reference == pushed => Some(digest.clone()),
            _ => None,
        })
        .expect("the build was pushed");
    let history = builder_env.down(&local, Down::default().with_volumes()).await;
    history.unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // Two hosts, neither of which has it; no image source to ship from: they must pull it.
    let connect = |alias: &'static str| async move {
        harbormaster::SshHost::builder(alias)
            .registry_auth(registry::HOSTS_ADDR, registry::auth())
            .docker_config_credentials(false)
            .connect()
            .await
            .unwrap()
    };
    let (a, b) = (connect(support::hosts::A).await, connect(support::hosts::B).await);
    let fleet = harbormaster::Fleet::builder().host(a).host(b).build().unwrap();
    let reference = format!("{}/{repo}:1", registry::HOSTS_ADDR);
    let name = unique("hostpull");
    let env = Environment::builder(PROJECT, &name)
        .hosts("app", [support::hosts::A, support::hosts::B])
        .service(
            harbormaster::Service::builder("api")
                .image(&reference)
                .role("app")
                .replicas(2)
                .health(support::http_check())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let _guard = support::hosts::FleetGuard { aliases: vec![support::hosts::A, support::hosts::B], name: name.clone() };
    let deployed = env.apply(&fleet).await.unwrap();
    let hosts: std::collections::BTreeSet<_> =
        deployed.instances("api").iter().filter_map(|i| i.host.clone()).collect();
    assert_eq!(hosts.len(), 2, "one replica per host: {hosts:?}");
    assert_eq!(fleet.images_shipped(), 0, "nothing was shipped over SSH");
    assert!(fleet.images_pulled_by_hosts() >= 1, "a host pulled by digest");
    let history = env.history(&fleet, "api").await.unwrap();
    assert_eq!(
        history.last().unwrap().image_pin.as_deref(),
        Some(format!("{}/{repo}@{digest}", registry::HOSTS_ADDR).as_str())
    );
    env.down(&fleet, Down::default().with_volumes()).await.unwrap();
}
