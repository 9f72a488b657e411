//! Settlement epochs: withdrawals become OpenZeppelin Merkle leaves that a
//! cumulative distributor contract can pay.

use sahel_protocol::Micros;
use sahel_protocol::api::WithdrawalStatus;
use sahel_protocol::receipt::verify_bundle;
use sahel_protocol::settlement::{Address, EpochFile, U256, parse_hash0x, verify_proof};
use sahel_protocol::signing::parse_public_key;
use sahel_worker::client::Client;

use crate::helpers::*;

const ADDR_A: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const ADDR_B: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

/// Three contributors who each earned 0.03 on a 9-item bounty.
fn earners(app: &TestApp) -> Vec<(i64, Client)> {
    let (_, p) = funded_project(app, 9, 1);
    (0..3)
        .map(|i| {
            let (id, c) = contributor(app, &format!("earner{i}"));
            for t in c.lease(p.id, 3).unwrap() {
                c.submit(&answer(&t, &truth(&t))).unwrap();
            }
            (id, c)
        })
        .collect()
}

fn check_proof(p: &sahel_protocol::api::SettlementProof) {
    let root = parse_hash0x(&p.root).unwrap();
    let proof: Vec<_> = p.proof.iter().map(|h| parse_hash0x(h).unwrap()).collect();
    let amount: U256 = p.amount.parse().unwrap();
    assert!(verify_proof(
        &root,
        &Address::parse(&p.address).unwrap(),
        &amount,
        &proof
    ));
}

#[test]
fn an_epoch_settles_locked_withdrawals_into_a_merkle_tree_with_a_proof_per_address() {
    let app = spawn_app();
    let people = earners(&app);
    let (_, admin_token) = app.create_admin();
    let admin = bearer(&app, &admin_token);
    assert_problem(admin.close_epoch("e0"), 409, "nothing-to-settle");

    let (a_id, a) = &people[0];
    let (_, b) = &people[1];
    let (_, c) = &people[2];
    a.set_payout_address(ADDR_A).unwrap();
    b.set_payout_address(ADDR_B).unwrap();
    a.withdraw(Micros(20_000), "a1").unwrap();
    b.withdraw(Micros(30_000), "b1").unwrap();
    assert_problem(c.withdraw(Micros(1), "c1"), 409, "no-payout-address");
    assert_problem(a.close_epoch("nope"), 403, "role-required");

    let e1 = admin.close_epoch("epoch-1").unwrap();
    assert_eq!(e1.leaves, 2);
    assert_eq!(e1.settled, Micros(50_000));
    assert_eq!(e1.cumulative, Micros(50_000));
    assert_eq!(e1.decimals, 18);
    // One micro is 10^12 of an 18-decimal token.
    assert_eq!(e1.total, "50000000000000000");
    assert_eq!(
        admin.close_epoch("epoch-1").unwrap().id,
        e1.id,
        "a retry is the same epoch"
    );
    assert_eq!(
        a.withdrawals().unwrap()[0].status,
        WithdrawalStatus::Settled
    );
    assert_eq!(a.withdrawals().unwrap()[0].epoch, Some(e1.id));

    let pa = a.settlement_proof(None).unwrap();
    assert_eq!(pa.address, ADDR_A);
    assert_eq!(pa.amount, "20000000000000000");
    assert_eq!(pa.root, e1.root);
    assert_eq!(pa.proof.len(), 1);
    check_proof(&pa);
    check_proof(&b.settlement_proof(Some(e1.id)).unwrap());
    assert_problem(c.settlement_proof(None), 404, "no-payout-address");

    // The published file: on disk, and served; both verify offline.
    let on_disk: EpochFile = serde_json::from_slice(
        &std::fs::read(
            app.config
                .data_dir
                .join("settlement")
                .join(format!("epoch-{}.json", e1.id)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk.verify(), Ok(2));
    let served = anon(&app).epoch_file(None).unwrap();
    assert_eq!(served, on_disk);
    assert_eq!(served.merkle_root, e1.root);
    assert_eq!(
        served.claims[ADDR_A].amount.to_string(),
        "20000000000000000"
    );

    // A second epoch: A withdraws more, C joins. Leaves are cumulative.
    a.withdraw(Micros(5_000), "a2").unwrap();
    c.set_payout_address(&ADDR_A.to_lowercase().replace("5aaeb", "5aaec"))
        .unwrap();
    c.withdraw(Micros(1_000), "c1").unwrap();
    let e2 = admin.close_epoch("epoch-2").unwrap();
    assert_eq!(e2.leaves, 3);
    assert_eq!(e2.settled, Micros(6_000));
    assert_eq!(e2.cumulative, Micros(56_000));
    let pa2 = a.settlement_proof(None).unwrap();
    assert_eq!(pa2.amount_micros, Micros(25_000));
    check_proof(&pa2);
    let pb2 = b.settlement_proof(None).unwrap();
    assert_eq!(pb2.amount_micros, Micros(30_000), "B's leaf carries over");
    check_proof(&pb2);
    assert_eq!(anon(&app).epoch(Some(e1.id)).unwrap().root, e1.root);
    assert_ne!(e2.root, e1.root);

    // A's receipts show the lock and the settlement, and still verify.
    let mine = a.all_receipts().unwrap();
    let kinds: Vec<&str> = mine.receipts.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "pay_answers",
            "pay_answers",
            "pay_answers",
            "withdrawal_lock",
            "settle",
            "withdrawal_lock",
            "settle"
        ]
    );
    let key = parse_public_key(&mine.server_key).unwrap();
    assert_eq!(verify_bundle(&mine, &key, 1).errors, vec![]);
    assert_eq!(balance_of(&app, *a_id), Micros(5_000));
    assert_ledger_clean(&app);
}

#[test]
fn leaf_amounts_follow_the_configured_token_decimals() {
    let app = TestApp::spawn(|c| c.payout_decimals = 6);
    let people = earners(&app);
    let (_, a) = &people[0];
    a.set_payout_address(ADDR_A).unwrap();
    a.withdraw(Micros(12_345), "w").unwrap();
    let (_, admin_token) = app.create_admin();
    let e = bearer(&app, &admin_token).close_epoch("e").unwrap();
    assert_eq!(e.decimals, 6);
    assert_eq!(e.total, "12345");
    let p = a.settlement_proof(None).unwrap();
    assert_eq!(p.amount, "12345");
    assert!(p.proof.is_empty(), "a single leaf is the root");
    check_proof(&p);
    assert_ledger_clean(&app);
}
