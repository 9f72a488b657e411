//! End-to-end tests of the web UI in headless Chromium, driven over
//! WebDriver against a real server on port 0 (SQLite, or PostgreSQL when
//! `DATABASE_URL` is set). The test starts ChromeDriver itself; without
//! Chromium it is skipped with a notice, unless CI or
//! `SAHEL_TEST_REQUIRE_SERVICES=1` requires it.
//!
//! Every run screenshots each main page (into `target/screenshots/`); with
//! `SAHEL_UPDATE_SCREENSHOTS=1` they replace the ones in `docs/screenshots/`
//! that the README shows, so they are regenerated, never drawn by hand.

mod driver;
mod types;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use fantoccini::{Client, Locator};
use sahel_protocol::Micros;
use sahel_server::ledger::{self, AccountRef};
use sahel_server::queue::entity::lease;
use sahel_server::testing::{TestApp, spawn_app};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use driver::*;

const CLASSES: [&str; 3] = ["positive", "negative", "neutral"];
const REWARD: Micros = Micros(50_000);

struct Fixture {
    path: std::path::PathBuf,
    /// Item text -> the class an honest contributor picks.
    expected: HashMap<String, String>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/web/reviews.csv");
    let mut expected = HashMap::new();
    let mut rd = csv::Reader::from_path(&path).unwrap();
    for r in rd.records() {
        let r = r.unwrap();
        expected.insert(r[0].to_owned(), r[1].to_owned());
    }
    Fixture {
        path: path.canonicalize().unwrap(),
        expected,
    }
}

fn user_id(app: &TestApp, email: &str) -> i64 {
    app.block_on(sahel_server::accounts::find_by_email(app.db(), email))
        .unwrap()
        .expect("the user exists")
        .id
}

fn balance(app: &TestApp, user: i64) -> Micros {
    app.block_on(ledger::balance(app.db(), AccountRef::User(user)))
        .unwrap()
}

/// Signs up through the form. Contributors use the keyboard alone (typing,
/// then Enter); the buyer clicks.
async fn sign_up(c: &Client, base: &str, name: &str, buyer: bool) {
    c.goto(&format!("{base}/signup")).await.unwrap();
    assert_controls_labelled(c).await;
    fill(c, "#email", &format!("{name}@browser.sahel")).await;
    fill(c, "#display_name", name).await;
    fill(c, "#password", "correct horse battery").await;
    if buyer {
        for role in ["#role-contributor", "#role-buyer"] {
            c.find(Locator::Css(role))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
        screenshot(c, "signup").await;
        c.find(Locator::Css("#signup-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    } else {
        press(c, ENTER).await;
    }
    let expected = if buyer { "/projects/new" } else { "/bounties" };
    wait_until!("the page after sign-up", { path(c).await == expected });
}

/// Logs out with the keyboard: the button takes the focus, Enter presses it.
async fn log_out(c: &Client) {
    c.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .send_keys(&ENTER.to_string())
        .await
        .unwrap();
    wait_until!("the home page after log-out", {
        exists(c, "a[href='/signup']").await
    });
}

/// Labels every task of the bounty with the keyboard alone: the number of
/// the class, then Enter; `wrong_on` gets the wrong class, `skip_first`
/// skips the first task with S. Returns how many answers were sent.
async fn label_everything(
    c: &Client,
    fx: &Fixture,
    wrong_on: Option<&str>,
    skip_first: bool,
    shots: Option<&str>,
) -> usize {
    label_some(c, fx, wrong_on, skip_first, shots, usize::MAX).await
}

/// [`label_everything`], stopping after `max` answers.
async fn label_some(
    c: &Client,
    fx: &Fixture,
    wrong_on: Option<&str>,
    skip_first: bool,
    shots: Option<&str>,
    max: usize,
) -> usize {
    let mut sent = 0;
    let mut last_lease = String::new();
    let mut skipped = !skip_first;
    loop {
        if sent >= max {
            return sent;
        }
        // Generous: CI shares two cores between the server, Chromium and
        // the test; a page that is truly stuck still fails here.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !(visible(c, "#done").await
            || (exists(c, "#task").await && current_lease(c).await != last_lease))
        {
            if std::time::Instant::now() > deadline {
                // Say what the page shows, so a failure explains itself.
                let error = match visible(c, "#work-error").await {
                    true => text_of(c, "#work-error").await,
                    false => "no error shown".into(),
                };
                panic!("timed out waiting for a task or the end (lease {last_lease}): {error}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        if visible(c, "#done").await {
            return sent;
        }
        let lease = current_lease(c).await;
        let text = text_of(c, "#task-text").await;
        let expected = fx
            .expected
            .get(&text)
            .unwrap_or_else(|| panic!("the page shows an unknown item: {text:?}"));
        if text.contains("<script>") {
            // Shown as text, never run.
            let pwned = c
                .execute("return typeof window.pwned", vec![])
                .await
                .unwrap();
            assert_eq!(pwned, "undefined", "the item's script ran");
            assert!(
                !exists(c, "#task-text b").await,
                "the item's HTML was parsed"
            );
        }
        if !skipped {
            skipped = true;
            press(c, 's').await;
            last_lease = lease;
            continue;
        }
        let label = if wrong_on == Some(text.as_str()) {
            if expected == "negative" {
                "positive"
            } else {
                "negative"
            }
        } else {
            expected.as_str()
        };
        let key = CLASSES.iter().position(|k| *k == label).unwrap() + 1;
        press(c, char::from_digit(key as u32, 10).unwrap()).await;
        if let Some(name) = shots.filter(|_| sent == 1) {
            screenshot(c, name).await;
        }
        press(c, ENTER).await;
        sent += 1;
        last_lease = lease;
    }
}

async fn current_lease(c: &Client) -> String {
    match c.find(Locator::Css("#task")).await {
        Ok(e) => e.attr("data-lease").await.unwrap().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[test]
fn a_bounty_is_posted_labeled_by_three_contributors_with_the_keyboard_and_completed() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let started = Instant::now();
    let app = spawn_app();
    let base = app.address.clone();
    let fx = fixture();
    let items = fx.expected.len() as i64;

    let project_id = app.block_on(async {
        let c = driver.session(1280, 900, false).await;

        // The buyer signs up, gets a balance, and posts the bounty.
        sign_up(&c, &base, "beatrice", true).await;
        // (Inside the runtime: the async forms of `app.deposit`.)
        let buyer = sahel_server::accounts::find_by_email(app.db(), "beatrice@browser.sahel")
            .await
            .unwrap()
            .unwrap()
            .id;
        ledger::deposit(
            &app.state.db,
            sahel_protocol::api::DepositRequest {
                user_id: buyer,
                amount: Micros::from_tokens(50).unwrap(),
                idempotency_key: "browser-test".into(),
            },
        )
        .await
        .unwrap();
        assert_controls_labelled(&c).await;
        fill(&c, "#title", "Sentiment of product reviews").await;
        fill(&c, "#classes", &CLASSES.join("\n")).await;
        fill(
            &c,
            "#instructions",
            "Read the review and pick the sentiment it expresses.\n\n\
             - positive: satisfied, recommends it\n- negative: dissatisfied\n- neutral: no opinion",
        )
        .await;
        fill(&c, "#overlap", "3").await;
        fill(&c, "#reward", "0.05").await;
        fill(&c, "#items", &items.to_string()).await;
        // The cost is computed as the buyer types, and the budget follows.
        let cost = REWARD.checked_mul(3 * items).unwrap().to_string();
        wait_until!("the live cost", { text_of(&c, "#cost").await == cost });
        let budget = c.find(Locator::Css("#budget")).await.unwrap();
        assert_eq!(
            budget.prop("value").await.unwrap().as_deref(),
            Some(cost.as_str())
        );
        screenshot(&c, "new-bounty").await;
        c.find(Locator::Css("#create"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until!("the draft bounty", { exists(&c, "#import-form").await });
        let project_id: i64 = path(&c)
            .await
            .trim_start_matches("/projects/")
            .parse()
            .unwrap();

        // Import the fixture file, then fund.
        assert_controls_labelled(&c).await;
        c.find(Locator::Css("#file"))
            .await
            .unwrap()
            .send_keys(&fx.path.display().to_string())
            .await
            .unwrap();
        c.find(Locator::Css("#import"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until!("the import report", { exists(&c, "#import-result").await });
        assert_eq!(
            text_of(&c, "#import-result").await,
            format!("Imported {items} items.")
        );
        screenshot(&c, "bounty-draft").await;
        c.find(Locator::Css("#fund"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until!("the progress page", {
            path(&c).await == format!("/projects/{project_id}/progress")
        });
        assert_eq!(text_of(&c, "#status").await, "open");
        log_out(&c).await;

        // Three contributors label every item with the keyboard only; the
        // third gets one item wrong, which a 2-to-1 vote rejects.
        let wrong = fx
            .expected
            .iter()
            .find(|(_, v)| *v == "positive")
            .map(|(k, _)| k.clone())
            .unwrap();
        // The first labels on a phone-sized screen, the others on a laptop.
        let phone = driver.session(390, 844, true).await;
        for (i, name) in ["amina", "bashir", "chiara"].into_iter().enumerate() {
            let c = if i == 0 { &phone } else { &c };
            sign_up(c, &base, name, false).await;
            if i == 1 {
                assert_controls_labelled(c).await;
                screenshot(c, "bounties").await;
            }
            // From the list to the bounty to the labeling page, by keyboard:
            // the link gets the focus, Enter follows it.
            let link = c
                .find(Locator::Css(&format!("a[href='/bounties/{project_id}']")))
                .await
                .unwrap();
            link.send_keys(&ENTER.to_string()).await.unwrap();
            wait_until!("the bounty page", { exists(c, "#start").await });
            if i == 1 {
                screenshot(c, "bounty").await;
            }
            c.find(Locator::Css("#start"))
                .await
                .unwrap()
                .send_keys(&ENTER.to_string())
                .await
                .unwrap();
            wait_until!("the labeling page", { exists(c, "#work").await });
            assert_controls_labelled(c).await;
            // While the first task is shown, the next one is leased ahead.
            let me =
                sahel_server::accounts::find_by_email(app.db(), &format!("{name}@browser.sahel"))
                    .await
                    .unwrap()
                    .unwrap()
                    .id;
            wait_until!("the next task leased ahead", {
                lease::Entity::find()
                    .filter(lease::Column::UserId.eq(me))
                    .filter(lease::Column::Status.eq("open"))
                    .count(app.db())
                    .await
                    .unwrap()
                    == 2
            });
            let timer = text_of(c, "#timer").await;
            assert!(
                timer.starts_with("in 9:") || timer.starts_with("in 10:"),
                "{timer}"
            );
            let shot = match i {
                0 => Some("labeling-phone"),
                1 => Some("labeling"),
                _ => None,
            };
            let sent =
                label_everything(c, &fx, (i == 2).then_some(wrong.as_str()), i == 0, shot).await;
            assert_eq!(sent as i64, items, "{name} answered every item once");
            assert_eq!(text_of(c, "#answered").await, items.to_string());
            c.goto(&format!("{base}/earnings")).await.unwrap();
            if i == 2 {
                assert_controls_labelled(c).await;
                screenshot(c, "earnings").await;
                // A contributor who types the buyer's address gets a page
                // that says no.
                c.goto(&format!("{base}/projects/{project_id}/progress"))
                    .await
                    .unwrap();
                assert_eq!(
                    text_of(c, "#error-heading").await,
                    "This bounty belongs to someone else"
                );
                screenshot(c, "error-forbidden").await;
                c.goto(&format!("{base}/earnings")).await.unwrap();
            }
            log_out(c).await;
        }
        phone.close().await.unwrap();

        // The buyer sees the bounty complete.
        c.goto(&format!("{base}/projects/{project_id}/progress"))
            .await
            .unwrap();
        wait_until!("the log-in page", { exists(&c, "#login-submit").await });
        assert_controls_labelled(&c).await;
        fill(&c, "#email", "beatrice@browser.sahel").await;
        fill(&c, "#password", "correct horse battery").await;
        press(&c, ENTER).await;
        wait_until!("the progress page", { exists(&c, "#items-done").await });
        assert_controls_labelled(&c).await;
        assert!(exists(&c, "#complete").await, "the bounty is complete");
        assert_eq!(text_of(&c, "#status").await, "completed");
        assert_eq!(
            text_of(&c, "#items-done").await,
            format!("{items} of {items}")
        );
        assert_eq!(
            c.find_all(Locator::Css(".chart svg[role=img]"))
                .await
                .unwrap()
                .len(),
            3,
            "items done, answers per hour, accuracy per contributor"
        );
        // A plain-vote bounty: accuracy is agreement with the results, and
        // the one wrong answer shows in the confusion matrix.
        assert_eq!(
            c.find_all(Locator::Css("#contributors tbody tr"))
                .await
                .unwrap()
                .len(),
            3
        );
        screenshot(&c, "progress").await;
        c.goto(&format!("{base}/projects/{project_id}/items"))
            .await
            .unwrap();
        assert_eq!(
            c.find_all(Locator::Css(".resolved-item"))
                .await
                .unwrap()
                .len() as i64,
            items
        );
        assert_controls_labelled(&c).await;
        // The item with a script shows it as text here too.
        let pwned = c
            .execute("return typeof window.pwned", vec![])
            .await
            .unwrap();
        assert_eq!(pwned, "undefined");
        screenshot(&c, "resolved-items").await;
        c.close().await.unwrap();
        project_id
    });

    // The numbers the pages showed are the database's.
    let amina = user_id(&app, "amina@browser.sahel");
    let chiara = user_id(&app, "chiara@browser.sahel");
    assert_eq!(balance(&app, amina), REWARD.checked_mul(items).unwrap());
    assert_eq!(
        balance(&app, chiara),
        REWARD.checked_mul(items - 1).unwrap()
    );
    let progress = app
        .block_on(async {
            let p = sahel_server::projects::get(app.db(), project_id).await?;
            sahel_server::projects::progress(app.db(), &p).await
        })
        .unwrap();
    assert_eq!(progress.items_resolved, items);
    assert_eq!(progress.answers_accepted, 3 * items - 1);
    assert!(app.audit().is_clean());
    // The skip gave its lease back, and no lease was left behind: the one
    // fetched ahead goes back when the page is left or the work runs out.
    let leases = |status: &'static str| {
        app.block_on(
            lease::Entity::find()
                .filter(lease::Column::ProjectId.eq(project_id))
                .filter(lease::Column::Status.eq(status))
                .count(app.db()),
        )
        .unwrap()
    };
    assert!(leases("released") >= 1, "the skip released its lease");
    assert_eq!(leases("open"), 0, "no lease left open");
    assert_eq!(leases("submitted") as i64, 3 * items);

    // Chiara's earnings page showed her balance; check it against the
    // database in a fresh session, and on a phone-sized screen.
    app.block_on(async {
        let c = driver.session(390, 844, true).await;
        c.goto(&format!("{base}/login")).await.unwrap();
        fill(&c, "#email", "chiara@browser.sahel").await;
        fill(&c, "#password", "correct horse battery").await;
        press(&c, ENTER).await;
        wait_until!("the home page", { path(&c).await == "/" });
        c.goto(&format!("{base}/earnings")).await.unwrap();
        let db_balance = ledger::balance(app.db(), AccountRef::User(chiara))
            .await
            .unwrap();
        assert_eq!(text_of(&c, "#balance").await, db_balance.to_string());
        assert_eq!(text_of(&c, "#accepted").await, (items - 1).to_string());
        assert_eq!(text_of(&c, "#rejected").await, "1");
        screenshot(&c, "earnings-phone").await;
        c.close().await.unwrap();
    });
    eprintln!("browser flow took {:.1?}", started.elapsed());
}

/// Logs in through the form and waits for the home page.
async fn log_in(c: &Client, base: &str, email: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(c, "#email", email).await;
    fill(c, "#password", password).await;
    press(c, ENTER).await;
    wait_until!("the home page", { path(c).await == "/" });
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[test]
fn a_buyer_pauses_and_publishes_and_a_contributor_sees_gold_results_and_receipts() {
    use sahel_protocol::api;
    use sahel_server::consensus::quality::entity::contributor as standing;
    use sahel_server::datasets::entity::dataset;
    use sahel_server::ledger::entity::receipt;
    use sahel_worker::client::{Auth, Client as ApiClient};

    let Some(driver) = Driver::start() else {
        return;
    };
    let app = spawn_app();
    let base = app.address.clone();
    let fx = fixture();

    // A quality-engine bounty with gold, set up over the API: five real
    // items and three gold ones (their answers hidden in `_gold`).
    let (buyer_id, token) =
        app.create_user("bianca@browser.sahel", &[sahel_protocol::api::Role::Buyer]);
    app.deposit(buyer_id, Micros::from_tokens(20).unwrap());
    let b = ApiClient::new(&app.address, Auth::Bearer(token));
    let p = b
        .create_project(&api::CreateProject {
            title: "Review sentiment with gold".into(),
            instructions: "Pick the sentiment of the review.".into(),
            task_type: api::TaskType::Classification,
            schema: serde_json::json!({ "classes": CLASSES }),
            overlap: 1,
            reward: REWARD,
            budget: Micros::from_tokens(5).unwrap(),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .unwrap();
    let _: api::QualitySettings = b
        .call(
            "PUT",
            &format!("/api/v1/projects/{}/quality/settings", p.id),
            // A one-question exam makes the first task gold whatever the
            // dice say; after it, one task in two may be.
            Some(&serde_json::json!({ "gold_every": 2, "exam_size": 1 })),
        )
        .unwrap();
    let mut rows: Vec<(&String, &String)> = fx.expected.iter().collect();
    rows.sort();
    let mut body = String::new();
    for (i, (text, label)) in rows.iter().enumerate() {
        let mut line = serde_json::json!({ "text": text });
        if i >= 5 {
            line["_gold"] = serde_json::json!(label);
        }
        body.push_str(&format!("{line}\n"));
    }
    let report = b.import_items(p.id, "jsonl", body.as_bytes()).unwrap();
    assert_eq!(report.imported, 5, "gold items are not counted");
    b.fund(p.id, "fund-gold").unwrap();
    let id = p.id;

    app.block_on(async {
        let c = driver.session(1280, 900, false).await;
        let buyer = driver.session(1280, 1000, false).await;
        sign_up(&c, &base, "dara", false).await;
        c.goto(&format!("{base}/bounties/{id}/work")).await.unwrap();
        wait_until!("the labeling page", { exists(&c, "#task").await });
        let sent = label_some(&c, &fx, None, false, None, 2).await;
        assert_eq!(sent, 2);
        let dara = sahel_server::accounts::find_by_email(app.db(), "dara@browser.sahel")
            .await
            .unwrap()
            .unwrap()
            .id;
        let answered = || async {
            sahel_server::queue::entity::answer::Entity::find()
                .filter(sahel_server::queue::entity::answer::Column::UserId.eq(dara))
                .count(app.db())
                .await
                .unwrap()
        };
        wait_until!("two answers stored", { answered().await == 2 });

        // The buyer pauses the bounty from its progress page.
        log_in(&buyer, &base, "bianca@browser.sahel", "password-123").await;
        buyer
            .goto(&format!("{base}/projects/{id}/progress"))
            .await
            .unwrap();
        assert_controls_labelled(&buyer).await;
        click(&buyer, "#pause").await;
        wait_until!("the paused notice", { exists(&buyer, "#notice").await });
        assert_eq!(text_of(&buyer, "#status").await, "paused");
        assert!(exists(&buyer, "#resume").await && !exists(&buyer, "#pause").await);
        assert_eq!(project_status(&app, id).await, "paused");

        // The contributor's work page now offers no task.
        c.goto(&format!("{base}/bounties/{id}/work")).await.unwrap();
        wait_until!("the paused page", { exists(&c, "#paused").await });
        assert!(
            !exists(&c, "#task").await,
            "a paused bounty hands out no task"
        );
        assert!(text_of(&c, "#paused").await.contains("paused"));
        screenshot(&c, "work-paused").await;

        // Resumed, work continues to the end.
        click(&buyer, "#resume").await;
        wait_until!("the open status", {
            text_if_any(&buyer, "#status").await.as_deref() == Some("open")
        });
        assert_eq!(project_status(&app, id).await, "open");
        // The bounty list shows the contributor's reliability on it: the
        // engine's estimate once it has evidence, a dash before.
        c.goto(&format!("{base}/bounties")).await.unwrap();
        let row = standing::Entity::find()
            .filter(standing::Column::ProjectId.eq(id))
            .filter(standing::Column::UserId.eq(dara))
            .one(app.db())
            .await
            .unwrap();
        let expected = match row {
            Some(r) if r.gold_total > 0 || r.peer_answers > 0 => {
                format!("{}%", (r.accuracy_mean * 100.0).round())
            }
            _ => "–".to_owned(),
        };
        assert_eq!(text_of(&c, "#bounties .reliability").await, expected);
        c.goto(&format!("{base}/bounties/{id}/work")).await.unwrap();
        wait_until!("a task again", { exists(&c, "#task").await });
        let more = label_everything(&c, &fx, None, false, None).await;
        assert!(more >= 3, "the rest of the bounty was answered ({more})");
        wait_until!("the bounty complete", {
            project_status(&app, id).await == "completed"
        });
        sahel_server::consensus::quality::run::run_until_idle(&app.state, 10)
            .await
            .unwrap();

        // The quality page shows the gold results the engine recorded.
        let row = standing::Entity::find()
            .filter(standing::Column::ProjectId.eq(id))
            .filter(standing::Column::UserId.eq(dara))
            .one(app.db())
            .await
            .unwrap()
            .expect("a standing row");
        assert!(row.gold_total > 0, "gold items were served and answered");
        c.goto(&format!("{base}/quality")).await.unwrap();
        assert_controls_labelled(&c).await;
        let gold = text_of(&c, &format!("#quality-{id} .gold")).await;
        assert_eq!(gold, format!("{} of {}", row.gold_correct, row.gold_total));
        assert_eq!(
            row.gold_correct, row.gold_total,
            "every gold answer was right"
        );
        let reliability = text_of(&c, &format!("#quality-{id} .reliability")).await;
        assert!(
            reliability.starts_with(&format!("{}%", (row.accuracy_mean * 100.0).round())),
            "{reliability} vs {}",
            row.accuracy_mean
        );
        assert_eq!(
            text_of(&c, &format!("#quality-{id} .standing")).await,
            "active"
        );
        // Overall, across bounties (one here): the same gold counts.
        let overall = text_of(&c, "#overall").await;
        assert!(
            overall.contains(&format!("{} of {} gold", row.gold_correct, row.gold_total)),
            "{overall}"
        );
        screenshot(&c, "quality").await;

        // The buyer sees the quality report, then publishes a version.
        buyer
            .goto(&format!("{base}/projects/{id}/progress"))
            .await
            .unwrap();
        wait_until!("the quality report", { exists(&buyer, "#alpha").await });
        assert_eq!(text_of(&buyer, "#status").await, "completed");
        assert!(!exists(&buyer, "#pause").await);
        assert_eq!(
            buyer
                .find_all(Locator::Css("#contributors tbody tr"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(exists(&buyer, "#chart-contributor-accuracy svg").await);
        assert_eq!(
            buyer
                .find_all(Locator::Css("#confusion tbody tr"))
                .await
                .unwrap()
                .len(),
            CLASSES.len()
        );
        assert_eq!(
            buyer
                .find(Locator::Css("#export-jsonl"))
                .await
                .unwrap()
                .attr("href")
                .await
                .unwrap()
                .as_deref(),
            Some(format!("/api/v1/projects/{id}/export?format=jsonl").as_str())
        );
        screenshot(&buyer, "progress-quality").await;
        buyer.goto(&format!("{base}/projects/{id}")).await.unwrap();
        wait_until!("the publish form", {
            exists(&buyer, "#publish-form").await
        });
        assert_controls_labelled(&buyer).await;
        fill(&buyer, "#dataset-title", "Review sentiment, first cut").await;
        fill(&buyer, "#price-export", "1.5").await;
        click(&buyer, "#publish").await;
        wait_until!("the published notice", {
            exists(&buyer, "#published").await
        });
        assert_eq!(
            text_of(&buyer, "#published").await,
            "Published dataset version 1."
        );
        let sets = dataset::Entity::find()
            .filter(dataset::Column::ProjectId.eq(id))
            .all(app.db())
            .await
            .unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].title, "Review sentiment, first cut");
        assert_eq!(sets[0].price_per_export, Some(1_500_000));
        assert_eq!(sets[0].price_per_record, None);
        assert_eq!(sets[0].record_count, 5);
        assert!(text_of(&buyer, "#datasets").await.contains("first cut"));
        screenshot(&buyer, "publish").await;
        buyer.close().await.unwrap();

        // The contributor's earnings: the balance, and receipts that are
        // the ledger's own, and the dataset their work is in.
        c.goto(&format!("{base}/earnings")).await.unwrap();
        assert_controls_labelled(&c).await;
        let db_balance = ledger::balance(app.db(), AccountRef::User(dara))
            .await
            .unwrap();
        assert!(db_balance.0 > 0);
        assert_eq!(text_of(&c, "#balance").await, db_balance.to_string());
        let first = c
            .find(Locator::Css(".receipt"))
            .await
            .unwrap()
            .attr("id")
            .await
            .unwrap()
            .unwrap();
        let seq: i64 = first.trim_start_matches("receipt-").parse().unwrap();
        let row = receipt::Entity::find()
            .filter(receipt::Column::Seq.eq(seq))
            .one(app.db())
            .await
            .unwrap()
            .expect("the receipt exists");
        let shown = |what: &'static str| {
            let c = &c;
            let first = first.clone();
            async move { text_of(c, &format!("#{first} .{what}")).await }
        };
        assert_eq!(shown("receipt-hash").await, row.hash);
        assert_eq!(shown("receipt-prev").await, row.prev_hash);
        assert_eq!(
            Some(shown("receipt-signature").await),
            row.signature,
            "the receipt is shown signed"
        );
        assert_eq!(
            text_of(&c, "#server-key").await,
            app.state.server_key.public_hex()
        );
        assert!(text_of(&c, "#uses").await.contains("first cut"));
        screenshot(&c, "earnings-receipts").await;
        c.close().await.unwrap();
    });
    assert!(app.audit().is_clean());
}

async fn project_status(app: &TestApp, id: i64) -> String {
    sahel_server::projects::get(app.db(), id)
        .await
        .unwrap()
        .row
        .status
}
