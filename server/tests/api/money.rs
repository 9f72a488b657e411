//! Deposits, balances and history.

use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role};

use crate::helpers::*;

#[test]
fn only_admins_deposit_and_a_retried_deposit_is_credited_once() {
    let app = spawn_app();
    let (admin_id, admin_token) = app.create_admin();
    let admin = bearer(&app, &admin_token);
    let (user, b) = sign_up(&app, "payee@test.sahel", &[Role::Buyer]);
    let req = api::DepositRequest {
        user_id: user.id,
        amount: Micros(2_500_000),
        idempotency_key: "dep-1".into(),
    };
    assert_problem(b.deposit(&req), 403, "role-required");
    let first = admin.deposit(&req).unwrap();
    let again = admin.deposit(&req).unwrap();
    assert_eq!(first.transaction_id, again.transaction_id);
    assert_eq!(b.balance().unwrap().balance, Micros(2_500_000));

    let mut other = req.clone();
    other.amount = Micros(1);
    assert_problem(admin.deposit(&other), 409, "idempotency-key-reused");
    other.idempotency_key = "dep-2".into();
    other.amount = Micros(0);
    assert_problem(admin.deposit(&other), 422, "invalid-amount");
    other.amount = Micros(5);
    other.user_id = 999_999;
    assert_problem(admin.deposit(&other), 404, "user-not-found");
    assert_eq!(b.balance().unwrap().balance, Micros(2_500_000));
    assert_ne!(admin_id, user.id);

    let audit = admin.audit().unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_problem(b.audit(), 403, "role-required");
    assert_ledger_clean(&app);
}

#[test]
fn history_lists_each_posting_with_its_sign() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 1, 1);
    let (uid, c) = contributor(&app, "earner");
    let t = c.lease(p.id, 1).unwrap().remove(0);
    c.submit(&answer(&t, &truth(&t))).unwrap();
    let h = c.ledger().unwrap();
    assert_eq!(h.balance, Micros(10_000));
    assert_eq!(h.entries.len(), 1);
    assert_eq!(h.entries[0].kind, "pay_answers");
    assert_eq!(h.entries[0].amount, Micros(10_000));
    assert_eq!(h.entries[0].memo["item_id"], t.item_id);
    let bh = b.ledger().unwrap();
    let kinds: Vec<(&str, i64)> = bh
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.amount.0))
        .collect();
    assert_eq!(kinds, vec![("fund", -10_000), ("deposit", 1_000_000_000)]);
    assert_eq!(balance_of(&app, uid), Micros(10_000));
    assert_ledger_clean(&app);
}

/// Many transactions posted at once give what posting them one by one
/// gives: a replayed key (within the batch or from before) is reported as
/// such and writes nothing, balances move by the net of the rest, and every
/// receipt is chained. A batch whose net would overdraw an account is
/// refused whole, and a rollback leaves nothing of it.
#[test]
fn posting_a_batch_of_transactions_equals_posting_each() {
    use sahel_server::ledger::{self, AccountRef, NewTx, Posted};
    use serde_json::json;

    let app = spawn_app();
    let (u, _) = buyer(&app, "batch-payer", 0);
    let (v, _) = buyer(&app, "batch-payee", 0);
    app.deposit(u, Micros(1_000));
    let pay = |key: &str, amount: i64, to: AccountRef| NewTx {
        kind: "test_transfer",
        memo: json!({ "key": key }),
        idempotency_key: Some(key.to_owned()),
        postings: vec![(AccountRef::User(u), Micros(-amount)), (to, Micros(amount))],
    };
    let db = &app.state.db;
    let before = app.block_on(async {
        let tx = db.write().await.unwrap();
        let p = ledger::post_many(&*tx, &[pay("k0", 10, AccountRef::User(v))]).await;
        tx.commit().await.unwrap();
        p.unwrap()[0]
    });
    let posted = app.block_on(async {
        let tx = db.write().await.unwrap();
        let batch = [
            pay("k1", 100, AccountRef::User(v)),
            pay("k2", 50, AccountRef::Fee),
            pay("k1", 100, AccountRef::User(v)),
            pay("k0", 10, AccountRef::User(v)),
        ];
        let p = ledger::post_many(&*tx, &batch).await.unwrap();
        tx.commit().await.unwrap();
        p
    });
    let Posted::New(k1) = posted[0] else {
        panic!("{posted:?}")
    };
    assert!(
        matches!(posted[1], Posted::New(k2) if k2 != k1),
        "{posted:?}"
    );
    assert_eq!(posted[2], Posted::Replayed(k1));
    assert_eq!(posted[3], Posted::Replayed(before.id()));
    assert_eq!(balance_of(&app, u), Micros(1_000 - 10 - 150));
    assert_eq!(balance_of(&app, v), Micros(110));
    assert_ledger_clean(&app);

    // 800 each is affordable (840 left); 1,600 together is not.
    let refused = app.block_on(async {
        let tx = db.write().await.unwrap();
        let batch = [
            pay("k3", 800, AccountRef::User(v)),
            pay("k4", 800, AccountRef::User(v)),
        ];
        ledger::post_many(&*tx, &batch).await
    });
    let e = refused.expect_err("the net overdraws the payer");
    assert_eq!(e.to_problem().kind, "urn:sahel:problem:insufficient-funds");
    assert_eq!(balance_of(&app, u), Micros(840));
    assert_eq!(balance_of(&app, v), Micros(110));
    assert_ledger_clean(&app);
}
