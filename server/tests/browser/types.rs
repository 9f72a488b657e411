//! The labeling page of every task type, driven as a person would: keys,
//! a text selection, a box drawn with the mouse, a file chosen; then the
//! answer stored in the database is the one the page was given. And the
//! review queue: a reviewer accepts one answer with A and rejects another
//! with a reason.

use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role, TaskType};
use sahel_server::queue::entity::answer;
use sahel_worker::client::{Auth, Client as ApiClient};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use super::{REWARD, sign_up};
use crate::driver::*;
use crate::wait_until;

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/web")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A funded bounty of `items` with overlap 1, posted over the API.
fn bounty(b: &ApiClient, task_type: TaskType, schema: Value, items: &[Value]) -> i64 {
    let p = b
        .create_project(&api::CreateProject {
            title: format!("A {} bounty", task_type.as_str()),
            instructions: "Label as the examples show.".into(),
            task_type,
            schema,
            overlap: 1,
            reward: REWARD,
            budget: Micros(REWARD.0 * items.len() as i64),
            priority: 0,
            reviews_per_answer: None,
            review_reward: None,
            gold_review_every: None,
        })
        .unwrap();
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    b.import_items(p.id, "jsonl", body.as_bytes()).unwrap();
    b.fund(p.id, &format!("fund-{}", p.id)).unwrap();
    p.id
}

/// The answers stored for a bounty, as JSON.
async fn stored(app: &sahel_server::testing::TestApp, project: i64) -> Vec<Value> {
    answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project))
        .all(app.db())
        .await
        .unwrap()
        .into_iter()
        .map(|a| serde_json::from_str(&a.payload).unwrap())
        .collect()
}

async fn statuses(app: &sahel_server::testing::TestApp, project: i64) -> Vec<String> {
    answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project))
        .all(app.db())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.status)
        .collect()
}

async fn open_work(c: &Client, base: &str, project: i64) {
    c.goto(&format!("{base}/bounties/{project}/work"))
        .await
        .unwrap();
    wait_until!("the labeling page", { exists(c, "#task").await });
}

/// Selects `needle` in the span view as a mouse would, through the DOM's
/// selection (the part of a drag WebDriver cannot aim at characters).
async fn select_text(c: &Client, needle: &str) {
    c.execute(
        "const view = document.getElementById('task-text');
         const walker = document.createTreeWalker(view, NodeFilter.SHOW_TEXT);
         for (let n = walker.nextNode(); n; n = walker.nextNode()) {
           const at = n.data.indexOf(arguments[0]);
           if (at >= 0 && n.parentElement.tagName !== 'SMALL') {
             const r = document.createRange();
             r.setStart(n, at);
             r.setEnd(n, at + arguments[0].length);
             const s = window.getSelection();
             s.removeAllRanges();
             s.addRange(r);
             return true;
           }
         }
         throw new Error('text not found: ' + arguments[0]);",
        vec![json!(needle)],
    )
    .await
    .unwrap();
}

/// Drags the mouse across `css` from one offset to another, in pixels
/// from the element's centre.
async fn drag(c: &Client, css: &str, from: (f64, f64), to: (f64, f64)) {
    let target = c.find(Locator::Css(css)).await.unwrap();
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: target.clone(),
            duration: None,
            x: from.0,
            y: from.1,
        })
        .then(PointerAction::Down {
            button: fantoccini::actions::MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveToElement {
            element: target.clone(),
            duration: Some(std::time::Duration::from_millis(150)),
            x: (from.0 + to.0) / 2.0,
            y: (from.1 + to.1) / 2.0,
        })
        .then(PointerAction::MoveToElement {
            element: target,
            duration: Some(std::time::Duration::from_millis(150)),
            x: to.0,
            y: to.1,
        })
        .then(PointerAction::Up {
            button: fantoccini::actions::MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(mouse).await.unwrap();
}

#[test]
fn every_task_type_is_labeled_on_its_page_and_reviewed_in_the_queue() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = sahel_server::testing::spawn_app();
    let base = app.address.clone();
    let (buyer_id, token) = app.create_user("types-buyer@browser.sahel", &[Role::Buyer]);
    app.deposit(buyer_id, Micros::from_tokens(10).unwrap());
    let b = ApiClient::new(&app.address, Auth::Bearer(token));

    let multi = bounty(
        &b,
        TaskType::MultiLabel,
        json!({"classes": ["cat", "dog", "bird"]}),
        &[json!({"text": "A cat watches a bird."})],
    );
    let pair = bounty(
        &b,
        TaskType::Pairwise,
        json!({"allow_tie": true}),
        &[
            json!({"prompt": "Name a river.", "response_a": "A mountain.", "response_b": "The Niger."}),
        ],
    );
    let write = bounty(
        &b,
        TaskType::FreeText,
        json!({"min_chars": 10, "max_chars": 200}),
        &[json!({"text": "Write a question a child might ask about rivers."})],
    );
    let spans = bounty(
        &b,
        TaskType::TextSpans,
        json!({"labels": ["PER", "LOC"]}),
        &[json!({"text": "Ada flew to Paris."})],
    );
    let image = b
        .upload_artifact(&fixture_bytes("gradient-200x100.png"), None)
        .unwrap();
    assert_eq!(image.media_type, "image/png");
    let boxes = bounty(
        &b,
        TaskType::BoundingBoxes,
        json!({"labels": ["car", "person"]}),
        &[json!({"image": image.sha256, "width": 200, "height": 100})],
    );
    let files = bounty(
        &b,
        TaskType::FileCollection,
        json!({"accept": ["audio/wav", "audio/x-wav", "audio/webm"], "max_bytes": 1_000_000}),
        &[json!({"text": "Record yourself saying: the river is wide."})],
    );

    app.block_on(async {
        let c = driver.session(1280, 1000, false).await;
        sign_up(&c, &base, "tess", false).await;

        // Multi-label: number keys toggle classes, Enter sends.
        open_work(&c, &base, multi).await;
        for k in ['1', '3', '2', '2'] {
            press(&c, k).await;
        }
        screenshot(&c, "label-multi").await;
        press(&c, ENTER).await;
        wait_until!("the multi-label answer", { stored(&app, multi).await.len() == 1 });
        assert_eq!(stored(&app, multi).await[0], json!({"labels": ["bird", "cat"]}));

        // Pairwise: B picks the second response.
        open_work(&c, &base, pair).await;
        assert_eq!(text_of(&c, "#response-b").await, "The Niger.");
        press(&c, 'b').await;
        screenshot(&c, "label-pairwise").await;
        press(&c, ENTER).await;
        wait_until!("the pairwise answer", { stored(&app, pair).await.len() == 1 });
        assert_eq!(stored(&app, pair).await[0], json!({"choice": "b"}));

        // Free text: too short is refused on the page and sends nothing.
        open_work(&c, &base, write).await;
        let area = c.find(Locator::Css("#answer-text")).await.unwrap();
        area.send_keys("Why?").await.unwrap();
        assert!(text_of(&c, "#answer-count").await.starts_with("4 / 200"));
        area.send_keys(&format!("{}{}", '\u{E009}', '\u{E007}')).await.unwrap(); // Ctrl+Enter
        wait_until!("the length refusal", { visible(&c, "#work-error").await });
        assert!(stored(&app, write).await.is_empty());
        area.send_keys(" Where do rivers begin?").await.unwrap();
        // Release Ctrl, then Ctrl+Enter again.
        area.send_keys(&format!("{}{}{}", '\u{E000}', '\u{E009}', '\u{E007}')).await.unwrap();
        screenshot(&c, "label-free-text").await;
        wait_until!("the written answer", { stored(&app, write).await.len() == 1 });
        assert_eq!(
            stored(&app, write).await[0],
            json!({"text": "Why? Where do rivers begin?"})
        );

        // Text spans: select, then the label's number.
        open_work(&c, &base, spans).await;
        select_text(&c, "Ada").await;
        press(&c, '1').await;
        select_text(&c, "Paris").await;
        press(&c, '2').await;
        assert_eq!(
            c.find_all(Locator::Css("#task-text mark")).await.unwrap().len(),
            2
        );
        screenshot(&c, "label-spans").await;
        press(&c, ENTER).await;
        wait_until!("the span answer", { stored(&app, spans).await.len() == 1 });
        assert_eq!(
            stored(&app, spans).await[0],
            json!({"spans": [
                {"start": 0, "end": 3, "label": "PER"},
                {"start": 12, "end": 17, "label": "LOC"}
            ]})
        );

        // Boxes: drawn with the mouse on the 200 x 100 image shown at its
        // own size, then labelled with 2.
        open_work(&c, &base, boxes).await;
        wait_until!("the image", {
            c.execute(
                "const i = document.querySelector('.box-image'); return i.complete && i.naturalWidth;",
                vec![],
            )
            .await
            .unwrap()
                == json!(200)
        });
        drag(&c, "#box-layer", (-50.0, -25.0), (30.0, 15.0)).await;
        press(&c, '2').await;
        // Moved by 10 px right: the whole box follows.
        drag(&c, "#box-layer", (-10.0, -5.0), (0.0, -5.0)).await;
        screenshot(&c, "label-boxes").await;
        press(&c, ENTER).await;
        wait_until!("the box answer", { stored(&app, boxes).await.len() == 1 });
        let got = &stored(&app, boxes).await[0]["boxes"];
        assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
        let b0 = &got[0];
        assert_eq!(b0["label"], "person");
        for (k, want) in [("x", 60), ("y", 25), ("w", 80), ("h", 40)] {
            let v = b0[k].as_f64().unwrap();
            assert!((v - want as f64).abs() <= 2.0, "{k} = {v}, want {want}: {got}");
        }

        // File collection: a file chosen from the disk is uploaded, and
        // the answer names it by its hash.
        open_work(&c, &base, files).await;
        let wav = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/web/tone.wav")
            .canonicalize()
            .unwrap();
        c.find(Locator::Css("#answer-file"))
            .await
            .unwrap()
            .send_keys(&wav.display().to_string())
            .await
            .unwrap();
        wait_until!("the upload", {
            text_of(&c, "#upload-status").await.starts_with("Uploaded")
        });
        press(&c, ENTER).await;
        wait_until!("the file answer", { stored(&app, files).await.len() == 1 });
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(fixture_bytes("tone.wav")));
        assert_eq!(stored(&app, files).await[0], json!({"artifact": sha}));

        // A reviewer skips the written answer with S: nothing else waits
        // for them, and it goes to the next reviewer.
        let sam = driver.session(1280, 1000, false).await;
        sign_up(&sam, &base, "sam", false).await;
        sam.goto(&format!("{base}/bounties/{write}/review")).await.unwrap();
        wait_until!("a review task", { visible(&sam, "#review-task").await });
        press(&sam, 's').await;
        wait_until!("nothing more for sam", { visible(&sam, "#review-done").await });
        let released = sahel_server::consensus::review::entity::review_lease::Entity::find()
            .filter(
                sahel_server::consensus::review::entity::review_lease::Column::Status.eq("released"),
            )
            .count(app.db())
            .await
            .unwrap();
        assert_eq!(released, 1);

        // Review: a second contributor reviews the written answer and the
        // file: accepts the text with A, rejects the file with a reason.
        let r = driver.session(1280, 1000, false).await;
        sign_up(&r, &base, "rhea", false).await;
        r.goto(&format!("{base}/bounties/{write}/review")).await.unwrap();
        wait_until!("a review task", { visible(&r, "#review-task").await });
        assert_eq!(text_of(&r, "#answer-shown").await, "Why? Where do rivers begin?");
        screenshot(&r, "review").await;
        press(&r, 'a').await;
        wait_until!("nothing more to review", { visible(&r, "#review-done").await });
        r.goto(&format!("{base}/bounties/{files}/review")).await.unwrap();
        wait_until!("a review task", { visible(&r, "#review-task").await });
        press(&r, 'r').await;
        r.find(Locator::Css("#reason"))
            .await
            .unwrap()
            .send_keys(&format!("Silence, not the sentence{}", ENTER))
            .await
            .unwrap();
        wait_until!("nothing more to review", { visible(&r, "#review-done").await });
        assert_eq!(statuses(&app, write).await, vec!["accepted"]);
        assert_eq!(statuses(&app, files).await, vec!["rejected"]);
        // The author learns why, on their quality page.
        c.goto(&format!("{base}/quality")).await.unwrap();
        wait_until!("the reviews table", { exists(&c, "#my-reviews").await });
        let reasons = c.find_all(Locator::Css("#my-reviews .review-reason")).await.unwrap();
        let mut texts = Vec::new();
        for r in reasons {
            texts.push(r.text().await.unwrap());
        }
        assert!(texts.contains(&"Silence, not the sentence".to_owned()), "{texts:?}");
    });
}
