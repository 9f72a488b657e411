//! `sahel pull --download-artifacts` and `sahel upload`, with the real
//! binary against a spawned server.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::testing::{TestApp, spawn_app};
use sahel_worker::client::{Auth, Client};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sahel(app: &TestApp, home: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args(["--server", &app.address, "--home", home.to_str().unwrap()])
        .args(args)
        .env("SAHEL_PASSWORD", "a long enough password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sahel binary runs");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sahel failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn labeler(app: &TestApp, name: &str) -> std::path::PathBuf {
    let home = app.config.data_dir.join(format!("home-{name}"));
    ok(&sahel(app, &home, &["keygen"]));
    ok(&sahel(
        app,
        &home,
        &[
            "register",
            "--email",
            &format!("{name}@cli.test"),
            "--name",
            name,
        ],
    ));
    home
}

fn png(width: u32, height: u32, salt: &str) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend(width.to_be_bytes());
    b.extend(height.to_be_bytes());
    b.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend(salt.as_bytes());
    b
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A funded bounty of two image items (the images uploaded by its buyer).
fn image_bounty(app: &TestApp, images: &[Vec<u8>]) -> (Client, api::Project) {
    let (buyer_id, token) = app.create_user("buyer@cli.test", &[Role::Buyer]);
    app.deposit(buyer_id, Micros::from_tokens(1_000).unwrap());
    let b = Client::new(&app.address, Auth::Bearer(token));
    let p = b
        .create_project(&api::CreateProject {
            title: "Photos".into(),
            instructions: "Is it a cat?".into(),
            task_type: TaskType::Classification,
            schema: serde_json::json!({ "classes": ["cat", "other"] }),
            overlap: 1,
            reward: Micros(50_000),
            budget: Micros(50_000 * images.len() as i64),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .unwrap();
    let mut items = String::new();
    for (i, img) in images.iter().enumerate() {
        let a = b.upload_artifact(img, None).unwrap();
        items.push_str(&format!(
            "{{\"text\": \"photo {i}\", \"image\": \"{}\"}}\n",
            a.sha256
        ));
    }
    b.import_items(p.id, "jsonl", items.as_bytes()).unwrap();
    let p = b.fund(p.id, "fund").unwrap();
    (b, p)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pull_downloads_each_referenced_artifact_once_verified_and_names_it_in_the_task() {
    let app = spawn_app();
    let images = vec![png(10, 20, "one"), png(30, 40, "two")];
    let (_, p) = image_bounty(&app, &images);
    let home = labeler(&app, "pat");
    let dir = app.config.data_dir.join("media");
    let tasks = app.config.data_dir.join("tasks.jsonl");
    let pid = p.id.to_string();
    let out = ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &pid,
            "--n",
            "10",
            "-o",
            tasks.to_str().unwrap(),
            "--download-artifacts",
            dir.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("2 downloaded, 0 already there"), "{out}");
    let got = lines(&tasks);
    assert_eq!(got.len(), 2);
    for t in &got {
        let sha = t["data"]["image"].as_str().unwrap();
        let local = t["local_files"]["image"].as_str().unwrap();
        assert!(local.ends_with(&format!("{sha}.png")), "{local}");
        let bytes = std::fs::read(local).unwrap();
        assert_eq!(sha_hex(&bytes), sha);
        assert!(images.contains(&bytes));
    }

    // Again, with one copy damaged: the good one is kept, the bad one
    // fetched anew.
    ok(&sahel(&app, &home, &["release"]));
    let damaged = dir.join(format!("{}.png", sha_hex(&images[0])));
    std::fs::write(&damaged, b"not the right bytes").unwrap();
    let again = app.config.data_dir.join("again.jsonl");
    let out = ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &pid,
            "--n",
            "10",
            "-o",
            again.to_str().unwrap(),
            "--download-artifacts",
            dir.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("1 downloaded, 1 already there"), "{out}");
    assert_eq!(std::fs::read(&damaged).unwrap(), images[0]);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no .part file left: {names:?}");
}

#[test]
fn upload_prints_the_hash_and_refuses_what_the_bounty_does_not_accept() {
    let app = spawn_app();
    let (_, p) = image_bounty(&app, &[png(1, 1, "seed")]);
    let home = labeler(&app, "sam");
    let file = app.config.data_dir.join("clip.bin");
    let bytes = b"some recorded bytes".to_vec();
    std::fs::write(&file, &bytes).unwrap();
    let out = ok(&sahel(&app, &home, &["upload", file.to_str().unwrap()]));
    assert_eq!(out.trim(), sha_hex(&bytes));
    let out = ok(&sahel(
        &app,
        &home,
        &["upload", file.to_str().unwrap(), "--json"],
    ));
    let a: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["media_type"], "text/plain");
    assert_eq!(a["size"], bytes.len());

    // A bounty that takes images only refuses the contributor's text file.
    let (buyer2, token) = app.create_user("buyer2@cli.test", &[Role::Buyer]);
    app.deposit(buyer2, Micros::from_tokens(10).unwrap());
    let b2 = Client::new(&app.address, Auth::Bearer(token));
    let p2 = b2
        .create_project(&api::CreateProject {
            title: "Only images".into(),
            instructions: "".into(),
            task_type: TaskType::Classification,
            schema: serde_json::json!({ "classes": ["a", "b"] }),
            overlap: 1,
            reward: Micros(1),
            budget: Micros(1),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .unwrap();
    b2.set_artifact_limits(
        p2.id,
        &api::ArtifactLimits {
            max_bytes: None,
            accept: Some(vec!["image/*".into()]),
        },
    )
    .unwrap();
    b2.import_items(p2.id, "jsonl", b"{\"text\": \"x\"}\n")
        .unwrap();
    b2.fund(p2.id, "fund").unwrap();
    let pid = p.id.to_string();
    ok(&sahel(
        &app,
        &home,
        &["upload", file.to_str().unwrap(), "--project", &pid],
    ));
    let pid2 = p2.id.to_string();
    let out = sahel(
        &app,
        &home,
        &["upload", file.to_str().unwrap(), "--project", &pid2],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("media-type-not-accepted"), "{err}");
    assert!(err.contains("text/plain"), "{err}");
}
