//! Sign-up, log-in, tokens, keys, and signed requests with their refusals.

use ed25519_dalek::Signer;
use sahel_protocol::api::{self, Role};
use sahel_protocol::signing::{self, RequestParts};
use sahel_worker::client::{Auth, Client};

use crate::helpers::*;

#[test]
fn sign_up_then_log_in_returns_a_working_token() {
    let app = spawn_app();
    let (user, _) = sign_up(
        &app,
        "Ada@Example.org",
        &[Role::Contributor, Role::Reviewer],
    );
    assert_eq!(user.email, "ada@example.org", "emails are normalized");
    assert_eq!(user.roles, vec![Role::Contributor, Role::Reviewer]);
    let login = anon(&app)
        .login(&api::LoginRequest {
            email: "ADA@example.org".into(),
            password: "correct horse battery".into(),
            token_label: None,
        })
        .unwrap();
    let me = bearer(&app, &login.token).me().unwrap();
    assert_eq!(me.user.id, user.id);
    assert!(me.keys.is_empty());
}

#[test]
fn sign_up_refusals_create_nothing() {
    let app = spawn_app();
    sign_up(&app, "taken@test.sahel", &[]);
    let req = |email: &str, password: &str, roles: Vec<Role>| api::RegisterRequest {
        email: email.into(),
        password: password.into(),
        display_name: "X".into(),
        roles,
    };
    assert_problem(
        anon(&app).register(&req("taken@test.sahel", "long enough", vec![])),
        409,
        "email-taken",
    );
    assert_problem(
        anon(&app).register(&req("new@test.sahel", "short", vec![])),
        422,
        "weak-password",
    );
    assert_problem(
        anon(&app).register(&req("new@test.sahel", "long enough", vec![Role::Admin])),
        403,
        "role-not-self-assignable",
    );
    assert_problem(
        anon(&app).register(&req("not-an-email", "long enough", vec![])),
        422,
        "invalid-email",
    );
    let login = anon(&app).login(&api::LoginRequest {
        email: "new@test.sahel".into(),
        password: "long enough".into(),
        token_label: None,
    });
    assert_problem(login, 401, "bad-credentials");
}

#[test]
fn wrong_passwords_and_unknown_tokens_are_refused() {
    let app = spawn_app();
    sign_up(&app, "bob@test.sahel", &[]);
    let bad = anon(&app).login(&api::LoginRequest {
        email: "bob@test.sahel".into(),
        password: "wrong password".into(),
        token_label: None,
    });
    assert_problem(bad, 401, "bad-credentials");
    assert_problem(bearer(&app, "sahel_not-a-token").me(), 401, "bad-token");
    assert_problem(anon(&app).me(), 401, "unauthenticated");
}

#[test]
fn a_linked_key_signs_requests() {
    let app = spawn_app();
    let (user, b) = sign_up(&app, "signer@test.sahel", &[]);
    let key = new_key();
    let me = b.link_key(user.id, &key, Some("laptop".into())).unwrap();
    assert_eq!(me.keys.len(), 1);
    assert_eq!(
        me.keys[0].public_key,
        signing::public_key_hex(&key.verifying_key())
    );
    let signed = Client::new(&app.address, Auth::Key(key.clone()));
    assert_eq!(signed.me().unwrap().user.id, user.id);
    // The same key cannot be linked twice, not even by its owner.
    assert_problem(b.link_key(user.id, &key, None), 409, "key-taken");
}

#[test]
fn a_key_cannot_be_linked_without_proof_of_holding_it() {
    let app = spawn_app();
    let (user, b) = sign_up(&app, "proof@test.sahel", &[]);
    let key = new_key();
    let stranger = new_key();
    // Proof made by another key, and proof made for another account.
    let pk = signing::public_key_hex(&key.verifying_key());
    for proof in [
        stranger.sign(&signing::key_link_message(user.id, &pk)),
        key.sign(&signing::key_link_message(user.id + 1, &pk)),
    ] {
        let req = api::LinkKeyRequest {
            public_key: pk.clone(),
            proof: hex::encode(proof.to_bytes()),
            label: None,
        };
        let res: Result<api::Me, _> = b.call("POST", "/api/v1/me/keys", Some(&req));
        assert_problem(res, 422, "invalid-key-proof");
    }
    assert!(b.me().unwrap().keys.is_empty());
}

/// Sends a request with hand-built signature headers.
fn send_signed(
    app: &TestApp,
    key: &ed25519_dalek::SigningKey,
    ts: i64,
    nonce: &str,
    body_signed: &[u8],
    body_sent: &[u8],
) -> u16 {
    let parts = RequestParts {
        method: "GET",
        path: "/api/v1/me",
        query: "",
        timestamp: ts,
        nonce,
        body: body_signed,
    };
    let h = signing::sign_request(key, &parts);
    let res = anon(app)
        .raw_with(
            "GET",
            "/api/v1/me",
            Some(body_sent),
            "application/json",
            &h.pairs(),
        )
        .unwrap();
    if res.status != 200 {
        assert_eq!(res.content_type, "application/problem+json");
    }
    res.status
}

#[test]
fn bad_signatures_stale_timestamps_and_replayed_nonces_are_refused() {
    let app = spawn_app();
    let (user, b) = sign_up(&app, "replay@test.sahel", &[]);
    let key = new_key();
    b.link_key(user.id, &key, None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    assert_eq!(
        send_signed(&app, &key, now, "0123456789abcdef01", b"", b""),
        200
    );
    assert_eq!(
        send_signed(&app, &key, now, "0123456789abcdef01", b"", b""),
        401,
        "a replayed nonce"
    );
    assert_eq!(
        send_signed(&app, &key, now - 400, "fresh0000000000001", b"", b""),
        401,
        "older than 5 minutes"
    );
    assert_eq!(
        send_signed(&app, &key, now + 400, "fresh0000000000002", b"", b""),
        401,
        "from the future"
    );
    assert_eq!(
        send_signed(&app, &key, now, "fresh0000000000003", b"{}", b"{\"x\":1}"),
        401,
        "body changed after signing"
    );
    assert_eq!(
        send_signed(&app, &new_key(), now, "fresh0000000000004", b"", b""),
        401,
        "a key nobody linked"
    );
    assert_eq!(
        send_signed(&app, &key, now, "fresh0000000000005", b"", b""),
        200,
        "fresh requests still pass"
    );
}

#[test]
fn a_revoked_key_stops_working() {
    let app = spawn_app();
    let (user, b) = sign_up(&app, "revoker@test.sahel", &[]);
    let key = new_key();
    let me = b.link_key(user.id, &key, None).unwrap();
    let signed = Client::new(&app.address, Auth::Key(key));
    signed.me().unwrap();
    let res = b
        .raw(
            "DELETE",
            &format!("/api/v1/me/keys/{}", me.keys[0].id),
            None,
            "",
        )
        .unwrap();
    assert_eq!(res.status, 200);
    assert_problem(signed.me(), 401, "unknown-key");
}

#[test]
fn malformed_and_oversized_bodies_get_a_problem_document() {
    let app = spawn_app();
    let res = anon(&app)
        .raw(
            "POST",
            "/api/v1/accounts/register",
            Some(b"{not json"),
            "application/json",
        )
        .unwrap();
    assert_eq!(res.status, 400);
    assert_eq!(res.content_type, "application/problem+json");
    let problem: api::Problem = res.json().unwrap();
    assert_eq!(problem.kind, "urn:sahel:problem:invalid-json");

    let huge = vec![b' '; 2 << 20];
    let res = anon(&app)
        .raw(
            "POST",
            "/api/v1/accounts/register",
            Some(&huge),
            "application/json",
        )
        .unwrap();
    assert_eq!(res.status, 413);

    let res = anon(&app)
        .raw("GET", "/api/v1/nothing-here", None, "")
        .unwrap();
    assert_eq!(res.status, 404);
    assert_eq!(
        res.json::<api::Problem>().unwrap().kind,
        "urn:sahel:problem:no-route"
    );

    let res = anon(&app)
        .raw("GET", "/api/v1/projects/not-a-number", None, "")
        .unwrap();
    assert_eq!(res.status, 401, "authentication comes before path parsing");
}

#[test]
fn health_reports_the_database_and_the_queue() {
    let app = spawn_app();
    let h = anon(&app).health().unwrap();
    assert_eq!(h.status, "ok");
    assert_eq!(h.database, "ok");
    assert!(h.queue.starts_with("ok"), "{}", h.queue);
}
