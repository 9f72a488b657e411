//! The ledger verbs of the real `sahel` binary: receipts, settlement and
//! provenance, against a server spawned on port 0.

use std::path::Path;
use std::process::{Command, Output};

use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::testing::{TestApp, spawn_app};
use sahel_worker::client::{Auth, Client};
use sea_orm::ConnectionTrait;

fn sahel(app: &TestApp, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args(["--server", &app.address, "--home", home.to_str().unwrap()])
        .args(args)
        .env("SAHEL_PASSWORD", "a long enough password")
        .output()
        .expect("the sahel binary runs")
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A labeler registered through the CLI in their own home directory.
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

/// A funded bounty of `n` items, overlap 1, reward 0.05.
fn bounty(app: &TestApp, n: usize) -> (Client, api::Project) {
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
    let p = b.fund(p.id, "fund").unwrap();
    (b, p)
}

fn work_all(app: &TestApp, home: &Path, project: i64, n: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args(["--server", &app.address, "--home", home.to_str().unwrap()])
        .args(["work", "--project", &project.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all("1\n".repeat(n).as_bytes())
        .unwrap();
    ok(&child.wait_with_output().unwrap());
}

fn user_id(app: &TestApp, name: &str) -> i64 {
    app.block_on(sahel_server::accounts::find_by_email(
        app.db(),
        &format!("{name}@cli.test"),
    ))
    .unwrap()
    .unwrap()
    .id
}

#[test]
fn receipts_verify_online_and_offline_and_catch_a_tampered_posting() {
    let app = spawn_app();
    let (_, p) = bounty(&app, 3);
    let home = labeler(&app, "lab");
    work_all(&app, &home, p.id, 3);

    let out = ok(&sahel(&app, &home, &["receipts", "verify"]));
    assert!(out.contains("3 receipts"), "{out}");
    assert!(out.contains("all receipts verify"), "{out}");
    let uid = user_id(&app, "lab");
    assert!(
        out.contains(&format!("balance user:{uid} = 0.150000")),
        "{out}"
    );

    let saved = app.config.data_dir.join("receipts.json");
    ok(&sahel(
        &app,
        &home,
        &["receipts", "fetch", "--out", saved.to_str().unwrap()],
    ));
    let out = ok(&sahel(
        &app,
        &home,
        &[
            "receipts",
            "verify",
            "--json",
            "--file",
            saved.to_str().unwrap(),
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["receipts"], 3);

    // A wrong pinned key is refused outright.
    let other = "11".repeat(32);
    let out = sahel(
        &app,
        &home,
        &[
            "receipts",
            "verify",
            "--file",
            saved.to_str().unwrap(),
            "--server-key",
            &other,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("trusted key"), "{}", stderr(&out));

    // Tamper with one posting of this user in the database.
    app.block_on(app.db().execute_unprepared(&format!(
        "UPDATE ledger_postings SET amount = amount + 7 WHERE id = (SELECT MIN(id) FROM ledger_postings \
         WHERE account_id = (SELECT id FROM ledger_accounts WHERE kind = 'user' AND owner_id = {uid}))"
    )))
    .unwrap();
    let out = sahel(&app, &home, &["receipts", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("does not match its hash"), "{stdout}");
    assert!(stdout.contains("receipts sum to"), "{stdout}");
    assert!(
        stderr(&out).contains("problem(s) found"),
        "{}",
        stderr(&out)
    );
    // The saved copy from before the tampering still verifies offline.
    ok(&sahel(
        &app,
        &home,
        &["receipts", "verify", "--file", saved.to_str().unwrap()],
    ));
}

#[test]
fn settlement_proof_fetch_and_offline_verify_and_a_doctored_file_fails() {
    let app = spawn_app();
    let (_, p) = bounty(&app, 2);
    let home = labeler(&app, "payee");
    work_all(&app, &home, p.id, 2);

    let out = sahel(
        &app,
        &home,
        &[
            "payout-address",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid-address"), "{}", stderr(&out));
    let out = ok(&sahel(
        &app,
        &home,
        &[
            "payout-address",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        ],
    ));
    assert!(
        out.contains("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        "{out}"
    );
    let out = ok(&sahel(
        &app,
        &home,
        &["withdraw", "0.07", "--idempotency-key", "w1"],
    ));
    assert!(out.contains("0.070000 locked"), "{out}");
    // A second payee, so the tree has a real proof.
    let (other, token) = app.create_user("other@cli.test", &[Role::Contributor]);
    app.deposit(other, Micros(9));
    let oc = Client::new(&app.address, Auth::Bearer(token));
    oc.set_payout_address("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359")
        .unwrap();
    oc.withdraw(Micros(9), "o").unwrap();
    let (_, admin) = app.create_admin();
    let e = Client::new(&app.address, Auth::Bearer(admin))
        .close_epoch("e1")
        .unwrap();

    let out = ok(&sahel(&app, &home, &["settlement", "proof", "--json"]));
    let proof: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(proof["root"], e.root);
    assert_eq!(proof["amount"], "70000000000000000");
    assert_eq!(proof["proof"].as_array().unwrap().len(), 1);

    let file = app.config.data_dir.join("epoch.json");
    ok(&sahel(
        &app,
        &home,
        &["settlement", "fetch", "--out", file.to_str().unwrap()],
    ));
    let out = ok(&sahel(
        &app,
        &home,
        &["settlement", "verify", file.to_str().unwrap()],
    ));
    assert!(out.contains("recomputed from 2 leaves"), "{out}");

    // Raise one claim in the file: the root no longer matches.
    let text = std::fs::read_to_string(&file).unwrap();
    let doctored = text.replace("70000000000000000", "70000000000000001");
    assert_ne!(text, doctored);
    std::fs::write(&file, doctored).unwrap();
    let out = sahel(
        &app,
        &home,
        &["settlement", "verify", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("root"), "{}", stderr(&out));
}

#[test]
fn answers_from_the_cli_are_signed_and_provenance_verify_checks_an_export() {
    let app = spawn_app();
    let (b, p) = bounty(&app, 3);
    let home = labeler(&app, "prov");
    work_all(&app, &home, p.id, 3);
    let export = b.project_export(p.id).unwrap();
    assert_eq!(export.text().lines().count(), 3);
    assert!(
        export.text().contains("\"signed_by\":\"client\""),
        "{}",
        export.text()
    );
    let file = app.config.data_dir.join("export.jsonl");
    std::fs::write(&file, export.text()).unwrap();
    let out = ok(&sahel(
        &app,
        &home,
        &["provenance", "verify", file.to_str().unwrap()],
    ));
    assert!(
        out.contains("3 records, 3 answer signatures verified"),
        "{out}"
    );

    // Change one answer in the file: its signature no longer matches.
    let text = export.text();
    let at = text.find("\"answers\"").unwrap();
    let doctored = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen("\"label\":\"positive\"}", "\"label\":\"negative\"}", 1)
    );
    assert_ne!(doctored, export.text());
    std::fs::write(&file, doctored).unwrap();
    let out = sahel(
        &app,
        &home,
        &["provenance", "verify", "--json", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        stderr(&out).contains("failed provenance"),
        "{}",
        stderr(&out)
    );
}
