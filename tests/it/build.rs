//! Builds as users write them: `.dockerignore` honoured, `Build::tag` honoured, and an unchanged
//! context not sent to the engine again.

use crate::support;

use std::time::Duration;

use harbormaster::{Build, Down, ImageStore};
use support::{unique, Harness};

fn context(files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("hm-ctx"));
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[tokio::test]
async fn dockerignore_and_the_tag_are_honoured() {
    let h = Harness::new("ignore").await;
    let base = support::workload::ensure_images();
    let dir = context(&[
        ("Dockerfile", &format!("FROM {base}\nCOPY . /ctx/\n")),
        (".dockerignore", "# not sent\n.env\ntarget\n**/*.log\ndocs\n!docs/keep.md\nDockerfile\n"),
        ("app.txt", "app"),
        (".env", "DB_PASSWORD=hunter2"),
        ("target/big.bin", "0101"),
        ("src/debug.log", "log"),
        ("src/main.rs", "fn main() {}"),
        ("docs/keep.md", "kept"),
        ("docs/drop.md", "dropped"),
    ]);
    let tag = format!("hmtest-built/{}:7", unique("ignore"));
    let env = h
        .env()
        .service(h.svc("app").build_from(Build::context(&dir).tag(&tag)).health(support::http_check()).build().unwrap())
        .build()
        .unwrap();
    env.apply(&h.docker).await.unwrap();
    let cat = |path: &'static str| {
        let (env, docker) = (&env, &h.docker);
        async move { env.exec(docker, "app", ["/workload", "cat", path]).await.unwrap() }
    };
    assert_eq!(cat("/ctx/app.txt").await.stdout, "app");
    assert_eq!(cat("/ctx/src/main.rs").await.stdout, "fn main() {}");
    assert_eq!(cat("/ctx/docs/keep.md").await.stdout, "kept");
    for excluded in ["/ctx/.env", "/ctx/target/big.bin", "/ctx/src/debug.log", "/ctx/docs/drop.md"] {
        assert_ne!(cat(excluded).await.exit_code, 0, "{excluded} was sent");
    }
    // The Dockerfile is sent even when ignored (the engine needs it), as the CLI does.
    assert_eq!(cat("/ctx/.dockerignore").await.exit_code, 0);
    // The image carries the tag asked for, and the service runs it.
    let id = h.docker.image_id(&tag).await.unwrap().expect("the build tag exists");
    let history = env.history(&h.docker, "app").await.unwrap();
    assert_eq!(history.last().unwrap().image_id, id);
    env.down(&h.docker, Down::default()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unchanged_context_is_not_sent_again() {
    let docker = support::docker().await;
    let base = support::workload::ensure_images();
    let dir = context(&[("Dockerfile", &format!("FROM {base}\nCOPY data /data\n")), ("data", "AAAA")]);
    let tag = format!("hmtest-built/{}:1", unique("cache"));
    let build = Build::context(&dir);
    let first = docker.build(&build, &tag).await.unwrap();
    let when = std::fs::metadata(dir.join("data")).unwrap().modified().unwrap();

    // Rewritten in place with the same size and modification time: the fingerprint (paths, sizes,
    // times, modes) is the same, so the context is not sent and the image is reused as it is.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(dir.join("data")).unwrap();
        f.write_all(b"BBBB").unwrap();
        f.set_modified(when).unwrap();
    }
    assert_eq!(docker.build(&build, &tag).await.unwrap(), first, "an unchanged fingerprint rebuilt");

    // Touched: sent and built again, now with the new contents.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::File::options()
        .write(true)
        .open(dir.join("data"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let second = docker.build(&build, &tag).await.unwrap();
    assert_ne!(second, first);

    // A removed tag is rebuilt, whatever the fingerprint says.
    support::registry::remove_local(&docker, &tag).await;
    let third = docker.build(&build, &tag).await.unwrap();
    assert_eq!(docker.image_id(&tag).await.unwrap().as_deref(), Some(third.as_str()));
    support::registry::remove_local(&docker, &tag).await;
    let _ = std::fs::remove_dir_all(&dir);
}
