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
