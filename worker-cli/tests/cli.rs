//! Drives the real `sahel` binary against a server spawned on port 0.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::queue::entity::{answer, lease};
use sahel_server::testing::{TestApp, spawn_app};
use sahel_worker::client::{Auth, Client};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

fn sahel(app: &TestApp, home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args(["--server", &app.address, "--home", home.to_str().unwrap()])
        .args(args)
        .env("SAHEL_PASSWORD", "a long enough password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sahel binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
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

/// A funded 4-item bounty with overlap 1, so every answer resolves at once.
fn bounty(app: &TestApp) -> api::Project {
    let (buyer_id, token) = app.create_user("buyer@cli.test", &[Role::Buyer]);
    app.deposit(buyer_id, Micros::from_tokens(10).unwrap());
    let b = Client::new(&app.address, Auth::Bearer(token));
    let p = b
        .create_project(&api::CreateProject {
            title: "CLI sentiment".into(),
            instructions: "Choose the sentiment.".into(),
            task_type: TaskType::Classification,
            schema: serde_json::json!({ "classes": ["positive", "negative", "neutral"] }),
            overlap: 1,
            reward: Micros(50_000),
            budget: Micros(200_000),
            priority: 0,
        })
        .unwrap();
    let items: String = (1..=4)
        .map(|i| format!("{{\"text\": \"review {i}\"}}\n"))
        .collect();
    b.import_items(p.id, "jsonl", items.as_bytes()).unwrap();
    b.fund(p.id, "fund").unwrap()
}

#[test]
fn a_new_labeler_signs_up_works_a_bounty_from_the_terminal_and_sees_the_balance() {
    let app = spawn_app();
    let p = bounty(&app);
    let home = app.config.data_dir.join("cli-home");

    let out = ok(&sahel(&app, &home, &["keygen"], ""));
    assert!(out.contains("public key"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    let again = sahel(&app, &home, &["keygen"], "");
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing key is not overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let out = ok(&sahel(
        &app,
        &home,
        &["register", "--email", "lab@cli.test", "--name", "Lab"],
        "",
    ));
    assert!(out.contains("signed in as lab@cli.test"), "{out}");

    let out = ok(&sahel(&app, &home, &["projects"], ""));
    assert!(out.contains("CLI sentiment"), "{out}");

    // Three answers (one bad keystroke in between), then quit on the fourth.
    let out = ok(&sahel(
        &app,
        &home,
        &["work", "--project", &p.id.to_string()],
        "1\n2\nseven\n3\nq\n",
    ));
    assert!(
        out.contains("Choose the sentiment."),
        "instructions are shown: {out}"
    );
    assert!(out.contains("type a number from 1 to 3"), "{out}");
    assert_eq!(out.matches("submitted").count(), 3, "{out}");

    let user = app
        .block_on(sahel_server::accounts::find_by_email(
            app.db(),
            "lab@cli.test",
        ))
        .unwrap()
        .unwrap();
    let answers = app
        .block_on(
            answer::Entity::find()
                .filter(answer::Column::UserId.eq(user.id))
                .all(app.db()),
        )
        .unwrap();
    let labels: Vec<String> = answers.iter().map(|a| a.payload.clone()).collect();
    assert_eq!(
        labels,
        vec![
            r#"{"label":"positive"}"#,
            r#"{"label":"negative"}"#,
            r#"{"label":"neutral"}"#
        ],
        "the numbers typed became these answers"
    );
    let open_leases = app
        .block_on(
            lease::Entity::find()
                .filter(lease::Column::UserId.eq(user.id))
                .filter(lease::Column::Status.eq("open"))
                .count(app.db()),
        )
        .unwrap();
    assert_eq!(open_leases, 0, "quitting gave the last lease back");

    let out = ok(&sahel(&app, &home, &["balance", "--json"], ""));
    let balance: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(balance["balance"], 150_000, "{out}");

    // The remaining item is still there; working again answers it and ends.
    let out = ok(&sahel(
        &app,
        &home,
        &["work", "--project", &p.id.to_string()],
        "1\n",
    ));
    assert!(out.contains("no more tasks"), "{out}");
}

#[test]
fn errors_are_one_line_with_the_servers_reason() {
    let app = spawn_app();
    let home = app.config.data_dir.join("cli-home");
    ok(&sahel(&app, &home, &["keygen"], ""));
    ok(&sahel(
        &app,
        &home,
        &["register", "--email", "e@cli.test", "--name", "E"],
        "",
    ));
    let out = sahel(&app, &home, &["work", "--project", "4242"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("project-not-found"), "{err}");

    let out = sahel(&app, &home, &["login", "--email", "nobody@cli.test"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad-credentials"));
}
