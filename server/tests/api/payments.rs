//! The money paths: the platform fee, reviews, closing and refunding a
//! bounty, and withdrawals locked until settled.

use sahel_protocol::Micros;
use sahel_protocol::api::{ProjectStatus, WithdrawalStatus};
use sahel_protocol::receipt::verify_bundle;
use sahel_protocol::signing::parse_public_key;
use sahel_server::ledger::{self, AccountRef, Posted};

use crate::helpers::*;

fn balance(app: &TestApp, r: AccountRef) -> Micros {
    app.block_on(ledger::balance(app.db(), r)).unwrap()
}

#[test]
fn the_fee_is_cut_from_each_payment_and_escrow_pays_exactly_the_reward() {
    let app = TestApp::spawn(|c| c.fee_bps = 500);
    let (_, p) = funded_project(&app, 2, 1);
    let (uid, c) = contributor(&app, "earner");
    for t in c.lease(p.id, 2).unwrap() {
        c.submit(&answer(&t, &truth(&t))).unwrap();
    }
    // reward 10_000, fee 5 %: 9_500 to the contributor, 500 to the platform.
    assert_eq!(balance_of(&app, uid), Micros(19_000));
    assert_eq!(balance(&app, AccountRef::Fee), Micros(1_000));
    assert_eq!(escrow_of(&app, p.id), Micros::ZERO);
    let mine = c.all_receipts().unwrap();
    let memo: serde_json::Value = serde_json::from_str(&mine.receipts[0].memo).unwrap();
    assert_eq!(memo["fee"], 500);
    assert_eq!(memo["reward"], 10_000);
    let fee_line = mine.receipts[0]
        .postings
        .iter()
        .find(|l| l.account == "fee")
        .unwrap();
    assert_eq!(fee_line.amount, Micros(500));
    assert_ledger_clean(&app);
}

#[test]
fn a_review_is_paid_from_escrow_less_the_fee_once_per_review() {
    let app = TestApp::spawn(|c| c.fee_bps = 1000);
    let (_, p) = funded_project(&app, 1, 3);
    let (rid, _) = contributor(&app, "reviewer");
    let pay = || {
        app.block_on(async {
            let tx = app.state.db.write().await.unwrap();
            let posted =
                ledger::payments::pay_review(&*tx, p.id, None, rid, Micros(3_000), "review-1")
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            posted
        })
    };
    let first = pay();
    assert!(matches!(first, Posted::New(_)));
    assert_eq!(pay(), Posted::Replayed(first.id()));
    assert_eq!(balance_of(&app, rid), Micros(2_700));
    assert_eq!(balance(&app, AccountRef::Fee), Micros(300));
    assert_eq!(escrow_of(&app, p.id), Micros(30_000 - 3_000));
    assert_ledger_clean(&app);
}

#[test]
fn closing_a_bounty_ends_leases_cancels_open_items_and_refunds_unspent_escrow() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 3, 1);
    let buyer_before = b.balance().unwrap().balance;
    let (_, c) = contributor(&app, "worker");
    let mut tasks = c.lease(p.id, 2).unwrap();
    let done = tasks.remove(0);
    c.submit(&answer(&done, &truth(&done))).unwrap();
    let held = tasks.remove(0);

    let (_, other) = buyer(&app, "stranger", 0);
    assert_problem(other.close_project(p.id, "k"), 403, "not-project-owner");

    let closed = b.close_project(p.id, "close-1").unwrap();
    assert_eq!(closed.project.status, ProjectStatus::Closed);
    assert_eq!(closed.refunded, Micros(20_000));
    assert_eq!(closed.leases_ended, 1);
    assert_eq!(closed.items_cancelled, 2);
    assert_eq!(escrow_of(&app, p.id), Micros::ZERO);
    assert_eq!(
        b.balance().unwrap().balance,
        buyer_before.checked_add(Micros(20_000)).unwrap()
    );
    assert_eq!(items_with_status(&app, p.id, "cancelled"), 2);
    assert_eq!(items_with_status(&app, p.id, "resolved"), 1);

    // The held lease is over, and nothing more can be leased or funded.
    assert_problem(
        c.submit(&answer(&held, &truth(&held))),
        410,
        "lease-released",
    );
    assert_problem(c.lease(p.id, 1), 409, "project-closed");
    assert_problem(b.fund(p.id, "again"), 409, "project-closed");
    // Closing again changes nothing.
    let again = b.close_project(p.id, "close-2").unwrap();
    assert_eq!(again.refunded, Micros::ZERO);
    assert_eq!(
        b.balance().unwrap().balance,
        buyer_before.checked_add(Micros(20_000)).unwrap()
    );

    let theirs = b.all_receipts().unwrap();
    let refund = theirs.receipts.iter().find(|r| r.kind == "refund").unwrap();
    assert!(refund.memo.contains("close-1"), "{}", refund.memo);
    assert_ledger_clean(&app);
}

#[test]
fn a_draft_closes_without_moving_money() {
    let app = spawn_app();
    let (_, b) = buyer(&app, "drafty", 10);
    let p = b.create_project(&project_spec(1, 10_000, 10_000)).unwrap();
    let closed = b.close_project(p.id, "k").unwrap();
    assert_eq!(closed.refunded, Micros::ZERO);
    assert_eq!(closed.project.status, ProjectStatus::Closed);
    assert_eq!(
        b.balance().unwrap().balance,
        Micros::from_tokens(10).unwrap()
    );
    assert_ledger_clean(&app);
}

#[test]
fn withdrawals_need_a_valid_payout_address_and_lock_the_amount_until_settled() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 3, 1);
    let (uid, c) = contributor(&app, "saver");
    for t in c.lease(p.id, 3).unwrap() {
        c.submit(&answer(&t, &truth(&t))).unwrap();
    }
    assert_problem(c.withdraw(Micros(5_000), "w1"), 409, "no-payout-address");
    assert_problem(c.payout_address(), 404, "no-payout-address");
    // A mistyped checksum, the zero address and garbage are refused.
    assert_problem(
        c.set_payout_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
        422,
        "invalid-address",
    );
    assert_problem(
        c.set_payout_address("0x0000000000000000000000000000000000000000"),
        422,
        "invalid-address",
    );
    assert_problem(c.set_payout_address("0x1234"), 422, "invalid-address");
    let set = c
        .set_payout_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
        .unwrap();
    assert_eq!(set.address, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    assert_eq!(c.payout_address().unwrap().address, set.address);

    assert_problem(
        c.withdraw(Micros(40_000), "too-much"),
        409,
        "insufficient-funds",
    );
    assert_problem(c.withdraw(Micros(0), "zero"), 422, "invalid-amount");
    let w = c.withdraw(Micros(25_000), "w1").unwrap();
    assert_eq!(w.status, WithdrawalStatus::Pending);
    assert_eq!(c.withdraw(Micros(25_000), "w1").unwrap().id, w.id);
    assert_problem(c.withdraw(Micros(1), "w1"), 409, "idempotency-key-reused");
    assert_eq!(balance_of(&app, uid), Micros(5_000));
    assert_eq!(balance(&app, AccountRef::Withdrawal(uid)), Micros(25_000));
    assert_eq!(c.withdrawals().unwrap().len(), 1);

    // The receipts cover both accounts: spendable and locked.
    let mine = c.all_receipts().unwrap();
    let key = parse_public_key(&mine.server_key).unwrap();
    assert_eq!(verify_bundle(&mine, &key, 1).errors, vec![]);
    let locked = mine
        .balances
        .iter()
        .find(|b| b.account == "withdrawal")
        .unwrap();
    assert_eq!(locked.amount, Micros(25_000));
    assert_ledger_clean(&app);
}
