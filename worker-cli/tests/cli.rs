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
    bounty_of(app, 4)
}

/// A funded bounty of `n` items with overlap 1.
fn bounty_of(app: &TestApp, n: usize) -> api::Project {
    let (buyer_id, token) = app.create_user(
        &format!("buyer-{}@cli.test", sahel_server::accounts::random_hex(3)),
        &[Role::Buyer],
    );
    app.deposit(buyer_id, Micros::from_tokens(1_000).unwrap());
    let b = Client::new(&app.address, Auth::Bearer(token));
    let p = b
        .create_project(&api::CreateProject {
            title: "CLI sentiment".into(),
            instructions: "Choose the sentiment.".into(),
            task_type: TaskType::Classification,
            schema: serde_json::json!({ "classes": ["positive", "negative", "neutral"] }),
            overlap: 1,
            reward: Micros(50_000),
            budget: Micros(50_000 * n as i64),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .unwrap();
    let items: String = (1..=n)
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
        let mode = std::fs::metadata(home.join("profiles/default/key"))
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

/// A signed-in CLI home for a new contributor.
fn labeler(app: &TestApp, name: &str) -> std::path::PathBuf {
    let home = app.config.data_dir.join(format!("home-{name}"));
    ok(&sahel(app, &home, &["keygen"], ""));
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
        "",
    ));
    home
}

fn answers_of(app: &TestApp, email: &str) -> Vec<answer::Model> {
    let user = app
        .block_on(sahel_server::accounts::find_by_email(app.db(), email))
        .unwrap()
        .unwrap();
    app.block_on(
        answer::Entity::find()
            .filter(answer::Column::UserId.eq(user.id))
            .all(app.db()),
    )
    .unwrap()
}

/// Answers every pulled task with its first allowed answer, as a
/// labeler's script would.
fn answer_file(pulled: &Path, out: &Path) -> usize {
    let text = std::fs::read_to_string(pulled).unwrap();
    let mut n = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let first = v["allowed_answers"][0].as_str().unwrap().to_owned();
            v["answer"] = serde_json::json!({ "label": first });
            n += 1;
            v.to_string()
        })
        .collect();
    std::fs::write(out, lines.join("\n") + "\n").unwrap();
    n
}

#[test]
fn pulled_tasks_answered_by_a_script_and_pushed_are_recorded_exactly_once() {
    let app = spawn_app();
    let p = bounty_of(&app, 200);
    let home = labeler(&app, "batch");
    let pulled = home.join("tasks.jsonl");
    let out = ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "200",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    ));
    assert!(out.contains("leased 200 task(s)"), "{out}");
    let refused = sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "1",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "an existing file is not overwritten"
    );

    let answers = home.join("answers.jsonl");
    assert_eq!(answer_file(&pulled, &answers), 200);
    let out = ok(&sahel(
        &app,
        &home,
        &["push", answers.to_str().unwrap()],
        "",
    ));
    assert!(
        out.contains("200 answer(s): 200 recorded now, 0 already recorded"),
        "{out}"
    );
    assert_eq!(answers_of(&app, "batch@cli.test").len(), 200);

    // Running it again sends nothing: the journal knows every answer.
    let out = ok(&sahel(
        &app,
        &home,
        &["push", answers.to_str().unwrap(), "--json"],
        "",
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["recorded"], 0);
    assert_eq!(report["already_recorded"], 200);
    assert_eq!(answers_of(&app, "batch@cli.test").len(), 200);
}

#[test]
fn a_push_killed_halfway_resumes_and_submits_exactly_what_is_missing() {
    let app = spawn_app();
    let p = bounty_of(&app, 200);
    let home = labeler(&app, "crash");
    let pulled = home.join("tasks.jsonl");
    ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "200",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    ));
    let answers = home.join("answers.jsonl");
    answer_file(&pulled, &answers);

    let mut child = Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args([
            "--server",
            &app.address,
            "--home",
            home.to_str().unwrap(),
            "push",
            answers.to_str().unwrap(),
            "--batch-size",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the journal shows progress (or it ends first).
    let journal_dir = home.join("journal/default");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let progressed = std::fs::read_dir(&journal_dir)
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::metadata(e.path())
                        .map(|m| m.len() > 0)
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if progressed || child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let before = answers_of(&app, "crash@cli.test").len();
    assert!(before < 200, "killed before the end ({before} recorded)");

    let out = ok(&sahel(
        &app,
        &home,
        &["push", answers.to_str().unwrap(), "--json"],
        "",
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let now = report["recorded"].as_u64().unwrap();
    let already = report["already_recorded"].as_u64().unwrap();
    assert_eq!(now + already, 200, "{report}");
    assert!(
        already as usize <= before,
        "only acknowledged answers are skipped"
    );
    let rows = answers_of(&app, "crash@cli.test");
    assert_eq!(rows.len(), 200, "none doubled, none missing");
    let mut leases: Vec<i64> = rows.iter().map(|a| a.lease_id).collect();
    leases.sort_unstable();
    leases.dedup();
    assert_eq!(leases.len(), 200);
}

#[test]
fn expired_leases_in_a_push_file_are_reported_as_expired_not_as_failures_of_the_tool() {
    let app = TestApp::spawn(|c| c.lease_secs = 1);
    let p = bounty_of(&app, 3);
    let home = labeler(&app, "slow");
    let pulled = home.join("tasks.jsonl");
    ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "3",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    ));
    let answers = home.join("answers.jsonl");
    answer_file(&pulled, &answers);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = sahel(&app, &home, &["push", answers.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(3), "some lines did not go through");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 expired, 0 refused"), "{stdout}");
    assert_eq!(
        stdout.matches(": expired: lease-expired").count(),
        3,
        "{stdout}"
    );
    assert!(answers_of(&app, "slow@cli.test").is_empty());
}

#[test]
fn a_tampered_answers_file_is_reported_line_by_line() {
    let app = spawn_app();
    let p = bounty_of(&app, 3);
    let home = labeler(&app, "tamper");
    let pulled = home.join("tasks.jsonl");
    ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "3",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    ));
    let tasks: Vec<serde_json::Value> = std::fs::read_to_string(&pulled)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |t: &serde_json::Value, answer: serde_json::Value| {
        serde_json::json!({ "lease_id": t["lease_id"], "answer": answer }).to_string()
    };
    let body = [
        line(&tasks[0], serde_json::json!({"label": "positive"})),
        "{this is not json".to_owned(),
        line(&tasks[1], serde_json::json!({"label": "ecstatic"})),
        line(&tasks[2], serde_json::Value::Null),
    ]
    .join("\n");
    let answers = home.join("answers.jsonl");
    std::fs::write(&answers, body).unwrap();
    let out = sahel(&app, &home, &["push", answers.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("line 2: invalid: not a task line"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 3: refused: invalid-answer"),
        "{stdout}"
    );
    assert!(stdout.contains("line 4: invalid: no answer"), "{stdout}");
    assert_eq!(answers_of(&app, "tamper@cli.test").len(), 1);
}

#[test]
fn leases_can_be_listed_renewed_and_released() {
    let app = spawn_app();
    let p = bounty_of(&app, 5);
    let home = labeler(&app, "leaser");
    let pulled = home.join("tasks.jsonl");
    ok(&sahel(
        &app,
        &home,
        &[
            "pull",
            "--project",
            &p.id.to_string(),
            "--n",
            "2",
            "-o",
            pulled.to_str().unwrap(),
        ],
        "",
    ));
    let listed: Vec<api::LeaseInfo> =
        serde_json::from_str(&ok(&sahel(&app, &home, &["leases", "--json"], ""))).unwrap();
    assert_eq!(listed.len(), 2);
    let out = ok(&sahel(
        &app,
        &home,
        &["renew", &listed[0].lease_id.to_string()],
        "",
    ));
    assert!(
        out.contains(&format!("lease {} now expires in", listed[0].lease_id)),
        "{out}"
    );
    let renewed: Vec<api::LeaseInfo> =
        serde_json::from_str(&ok(&sahel(&app, &home, &["leases", "--json"], ""))).unwrap();
    let l0 = renewed
        .iter()
        .find(|l| l.lease_id == listed[0].lease_id)
        .unwrap();
    assert!(l0.expires_at >= listed[0].expires_at);
    let out = ok(&sahel(&app, &home, &["release"], ""));
    assert!(out.contains("released 2 lease(s)"), "{out}");
    let after: Vec<api::LeaseInfo> =
        serde_json::from_str(&ok(&sahel(&app, &home, &["leases", "--json"], ""))).unwrap();
    assert!(after.is_empty());
}

#[test]
fn a_rotated_key_takes_over_and_the_old_one_is_revoked() {
    let app = spawn_app();
    let home = labeler(&app, "rotor");
    let old = std::fs::read_to_string(home.join("profiles/default/key")).unwrap();
    let out = ok(&sahel(&app, &home, &["keys", "rotate"], ""));
    assert!(out.contains("rotated"), "{out}");
    assert_ne!(
        std::fs::read_to_string(home.join("profiles/default/key")).unwrap(),
        old
    );
    let keys: Vec<api::PublicKeyInfo> =
        serde_json::from_str(&ok(&sahel(&app, &home, &["keys", "list", "--json"], ""))).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k.revoked_at.is_some()).count(), 1);
    ok(&sahel(&app, &home, &["balance"], ""));
}

#[test]
fn a_passphrase_protected_key_needs_its_passphrase() {
    let app = spawn_app();
    let home = app.config.data_dir.join("home-sealed");
    let with = |pass: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sahel"))
            .args(["--server", &app.address, "--home", home.to_str().unwrap()])
            .args(args)
            .env("SAHEL_PASSWORD", "a long enough password")
            .env("SAHEL_KEY_PASSPHRASE", pass)
            .output()
            .unwrap()
    };
    ok(&with("correct passphrase", &["keygen", "--passphrase"]));
    ok(&with(
        "correct passphrase",
        &["register", "--email", "sealed@cli.test", "--name", "S"],
    ));
    ok(&with("correct passphrase", &["balance"]));
    let wrong = with("wrong", &["balance"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));
}

#[test]
fn profiles_keep_accounts_apart_and_completions_are_generated() {
    let app = spawn_app();
    let home = labeler(&app, "first");
    let second = |args: &[&str]| {
        let mut all = vec!["--profile", "second"];
        all.extend_from_slice(args);
        sahel(&app, &home, &all, "")
    };
    ok(&second(&["keygen"]));
    ok(&second(&[
        "register",
        "--email",
        "second@cli.test",
        "--name",
        "Second",
    ]));
    let profiles: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&sahel(&app, &home, &["profiles", "--json"], ""))).unwrap();
    let emails: Vec<&str> = profiles
        .iter()
        .map(|p| p["profile"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec!["first@cli.test", "second@cli.test"]);
    let script = ok(&sahel(&app, &home, &["completions", "bash"], ""));
    assert!(
        script.contains("sahel") && script.contains("push"),
        "a bash completion script"
    );
}

/// Runs `sahel work` in a real terminal (a tmux pane): keys in, screen out.
struct Pane {
    name: String,
}

impl Pane {
    fn start(app: &TestApp, home: &Path, project: i64) -> Option<Pane> {
        if Command::new("tmux").arg("-V").output().is_err() {
            let required = matches!(
                std::env::var("SAHEL_TEST_REQUIRE_SERVICES").as_deref(),
                Ok("1" | "true")
            ) || std::env::var("CI").as_deref() == Ok("true");
            assert!(!required, "tmux is needed for the terminal test");
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let name = format!("sahel-{}", sahel_server::accounts::random_hex(4));
        let cmd = format!(
            "{} --server {} --home {} work --project {project}; sleep 30",
            env!("CARGO_BIN_EXE_sahel"),
            app.address,
            home.display()
        );
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "50",
                &cmd,
            ])
            .status()
            .unwrap();
        assert!(status.success());
        Some(Pane { name })
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys, "Enter"])
            .status()
            .unwrap();
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name, "-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the screen shows `text` `times` times.
    fn wait_for(&self, text: &str, times: usize) -> String {
        for _ in 0..200 {
            let s = self.screen();
            if s.matches(text).count() >= times {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the terminal never showed {text:?} {times} time(s):\n{}",
            self.screen()
        );
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn the_interactive_loop_works_in_a_real_terminal() {
    let app = spawn_app();
    let p = bounty_of(&app, 3);
    let home = labeler(&app, "tty");
    let Some(pane) = Pane::start(&app, &home, p.id) else {
        return;
    };
    let first = pane.wait_for("choice [1-3", 1);
    assert!(
        first.contains("Choose the sentiment."),
        "instructions first:\n{first}"
    );
    assert!(
        first.contains("lease expires in 9m") || first.contains("lease expires in 10m"),
        "the lease timer shows:\n{first}"
    );
    assert!(first.contains("review 1"), "{first}");
    pane.keys("2");
    pane.wait_for("submitted {\"label\":\"negative\"}", 1);
    pane.keys("i");
    pane.wait_for("Choose the sentiment.", 2);
    pane.keys("nine");
    pane.wait_for("type a number from 1 to 3", 1);
    pane.keys("s");
    pane.wait_for("skipped", 1);
    pane.keys("3");
    pane.wait_for("submitted {\"label\":\"neutral\"}", 1);
    pane.keys("q");
    let end = pane.wait_for("bye (2 answered)", 1);
    assert!(
        end.contains("review 2") && end.contains("review 3"),
        "the next tasks were shown:\n{end}"
    );
    let labels: Vec<String> = answers_of(&app, "tty@cli.test")
        .into_iter()
        .map(|a| a.payload)
        .collect();
    assert_eq!(
        labels,
        vec![r#"{"label":"negative"}"#, r#"{"label":"neutral"}"#]
    );
}
