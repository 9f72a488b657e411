//! Provenance: every accepted answer carries its contributor's signature,
//! and exports ship them for anyone to check.

use ed25519_dalek::SigningKey;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role};
use sahel_protocol::provenance::{self, ExportRecord, verify_record};
use sahel_protocol::signing::public_key_hex;
use sahel_server::accounts::entity::custodial_key;
use sahel_server::queue::entity::answer;
use sahel_worker::client::{Auth, Client};
use sea_orm::EntityTrait;

use crate::helpers::*;

/// A contributor whose key the test holds.
fn signer(app: &TestApp, name: &str) -> (i64, SigningKey, Client) {
    let (user, b) = sign_up(app, &format!("{name}@test.sahel"), &[Role::Contributor]);
    let key = new_key();
    b.link_key(user.id, &key, None).unwrap();
    (
        user.id,
        key.clone(),
        Client::new(&app.address, Auth::Key(key)),
    )
}

fn signed(key: &SigningKey, p: &api::Project, t: &api::Task, label: &str) -> api::SubmitAnswer {
    let mut req = answer(t, label);
    req.signature = Some(provenance::sign_answer(
        key,
        &provenance::item_content_hash(&t.data),
        &provenance::guideline_version(&p.instructions, &p.schema),
        &req.answer,
    ));
    req
}

/// The stored answer, checked to carry the contributor's signature by `key`.
fn client_signed(app: &TestApp, answer_id: i64, key: &SigningKey) -> answer::Model {
    let row = app
        .block_on(answer::Entity::find_by_id(answer_id).one(app.db()))
        .unwrap()
        .unwrap();
    assert_eq!(row.signed_by.as_deref(), Some("client"));
    assert_eq!(
        row.signer_key.as_deref(),
        Some(public_key_hex(&key.verifying_key()).as_str())
    );
    row
}

fn export_lines(res: &sahel_worker::client::RawResponse) -> Vec<ExportRecord> {
    res.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_signed_answer_is_stored_with_its_key_and_a_wrong_signature_is_refused() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 1);
    let (_, key, c) = signer(&app, "signer");
    let t = c.lease(p.id, 1).unwrap().remove(0);

    // Signed over another answer than the one sent: refused, nothing kept.
    let mut forged = signed(&key, &p, &t, "negative");
    forged.answer = serde_json::json!({ "label": "positive" });
    assert_problem(c.submit(&forged), 422, "invalid-answer-signature");
    // Signed by a key that is not linked: refused too.
    let stranger = new_key();
    assert_problem(
        c.submit(&signed(&stranger, &p, &t, "positive")),
        422,
        "invalid-answer-signature",
    );
    assert_eq!(answers_in_db(&app, p.id), 0);

    let s = c.submit(&signed(&key, &p, &t, &truth(&t))).unwrap();
    let row = client_signed(&app, s.id, &key);
    assert_eq!(row.signature, signed(&key, &p, &t, &truth(&t)).signature);
    assert_ledger_clean(&app);
}

/// The request's own key is tried first; an answer signed by another of
/// the contributor's linked keys, or sent with a bearer token, is checked
/// against every linked key.
#[test]
fn an_answer_signed_by_another_linked_key_than_the_requests_is_kept_with_that_key() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 2, 1);
    let (user, bearer) = sign_up(&app, "two-keys@test.sahel", &[Role::Contributor]);
    let (requests, answers) = (new_key(), new_key());
    bearer.link_key(user.id, &requests, None).unwrap();
    bearer.link_key(user.id, &answers, None).unwrap();
    let c = Client::new(&app.address, Auth::Key(requests.clone()));
    let mut tasks = c.lease(p.id, 2).unwrap();

    let by_other = c
        .submit(&signed(&answers, &p, &tasks.remove(0), "positive"))
        .unwrap();
    let by_bearer = bearer
        .submit(&signed(&requests, &p, &tasks.remove(0), "positive"))
        .unwrap();
    client_signed(&app, by_other.id, &answers);
    client_signed(&app, by_bearer.id, &requests);
    assert_ledger_clean(&app);
}

#[test]
fn unsigned_answers_get_a_custodial_signature_until_the_user_takes_over() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 2, 1);
    let (uid, web_user) = sign_up(&app, "browser@test.sahel", &[Role::Contributor]);
    let uid = uid.id;
    let mut tasks = web_user.lease(p.id, 2).unwrap();
    let t = tasks.remove(0);
    let s = web_user.submit(&answer(&t, &truth(&t))).unwrap();
    let custodial = web_user.custodial_key().unwrap();
    assert!(custodial.active);
    let row = app
        .block_on(answer::Entity::find_by_id(s.id).one(app.db()))
        .unwrap()
        .unwrap();
    assert_eq!(row.signed_by.as_deref(), Some("custodial"));
    assert_eq!(
        row.signer_key.as_deref(),
        Some(custodial.public_key.as_str())
    );
    let vk = sahel_protocol::signing::parse_public_key(&custodial.public_key).unwrap();
    provenance::verify_answer(
        &vk,
        &provenance::item_content_hash(&t.data),
        &provenance::guideline_version(&p.instructions, &p.schema),
        &serde_json::json!({ "label": truth(&t) }),
        row.signature.as_deref().unwrap(),
    )
    .unwrap();
    // The stored secret is wrapped: read as a key, it is not this key.
    let stored = app
        .block_on(custodial_key::Entity::find_by_id(uid).one(app.db()))
        .unwrap()
        .unwrap();
    let raw: [u8; 32] = hex::decode(&stored.wrapped_secret)
        .unwrap()
        .try_into()
        .unwrap();
    assert_ne!(
        public_key_hex(&SigningKey::from_bytes(&raw).verifying_key()),
        custodial.public_key
    );

    let revoked = web_user.revoke_custodial_key().unwrap();
    assert!(!revoked.active);
    let t2 = tasks.remove(0);
    assert_problem(
        web_user.submit(&answer(&t2, &truth(&t2))),
        422,
        "signature-required",
    );
    let stored = app
        .block_on(custodial_key::Entity::find_by_id(uid).one(app.db()))
        .unwrap()
        .unwrap();
    assert_eq!(stored.wrapped_secret, "", "the server forgot the secret");
    // With their own key linked, the user signs and is accepted.
    let key = new_key();
    web_user.link_key(uid, &key, None).unwrap();
    web_user
        .submit(&signed(&key, &p, &t2, &truth(&t2)))
        .unwrap();
    assert_ledger_clean(&app);
}

#[test]
fn exports_ship_signatures_that_verify_and_expose_an_altered_answer() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 3, 2);
    let (_, key, cli_user) = signer(&app, "cli");
    let (_, web_user) = sign_up(&app, "web@test.sahel", &[Role::Contributor]);
    for t in cli_user.lease(p.id, 3).unwrap() {
        cli_user.submit(&signed(&key, &p, &t, &truth(&t))).unwrap();
    }
    for t in web_user.lease(p.id, 3).unwrap() {
        web_user.submit(&answer(&t, &truth(&t))).unwrap();
    }
    let (_, other) = buyer(&app, "outsider", 0);
    assert_problem(other.project_export(p.id), 403, "not-project-owner");

    let lines = export_lines(&b.project_export(p.id).unwrap());
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l.answers.len(), 2);
        let by: Vec<&str> = l.answers.iter().map(|a| a.signed_by.as_str()).collect();
        assert!(
            by.contains(&"client") && by.contains(&"custodial"),
            "{by:?}"
        );
        assert_eq!(verify_record(l), Ok(2));
        assert_eq!(l.result["answer"]["label"], l.data["truth"]);
    }
    let mut altered = lines[0].clone();
    altered.answers[0].answer = serde_json::json!({ "label": "something else" });
    assert!(verify_record(&altered).is_err());

    // A dataset export ships the same provenance.
    let d = b
        .publish_dataset(
            p.id,
            &api::PublishDataset {
                title: None,
                price_per_record: None,
                price_per_export: Some(Micros(1_000)),
            },
        )
        .unwrap();
    let (_, licensee) = buyer(&app, "licensee", 1);
    let shipped = export_lines(&licensee.dataset_export(d.id, None).unwrap());
    assert_eq!(shipped, lines);
    assert_ledger_clean(&app);
}
