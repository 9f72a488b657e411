//! Datasets and royalties: every licensed use charges the licensee and
//! pays the pool; rounds split the pool exactly among the contributors.

use std::collections::BTreeMap;

use sahel_protocol::Micros;
use sahel_protocol::api::{self, Role};
use sahel_server::accounts::{AuthUser, Roles};
use sahel_server::datasets::{self, entity as ds};
use sahel_server::ledger::royalty::{self, Step};
use sahel_server::ledger::{self, AccountRef};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};

use crate::helpers::*;

/// A 6-item bounty (overlap 1, reward 0.01, budget 0.1) where `a` answers
/// four items, `b` two, and `r` is paid for one review of 0.01.
fn finished_bounty(app: &TestApp) -> (sahel_worker::client::Client, api::Project, [i64; 3]) {
    let (_, b) = buyer(app, "owner", 10);
    let p = b.create_project(&project_spec(1, 10_000, 100_000)).unwrap();
    b.import_items(p.id, "jsonl", items_jsonl(6).as_bytes())
        .unwrap();
    let p = b.fund(p.id, "f").unwrap();
    let (a_id, a) = contributor(app, "alice");
    let (b_id, bob) = contributor(app, "bob");
    let (r_id, _) = contributor(app, "rita");
    for t in a.lease(p.id, 4).unwrap() {
        a.submit(&answer(&t, &truth(&t))).unwrap();
    }
    // Publishing needs a finished bounty.
    assert_problem(
        b.publish_dataset(p.id, &license(Some(1_000), None)),
        409,
        "project-not-finished",
    );
    for t in bob.lease(p.id, 2).unwrap() {
        bob.submit(&answer(&t, &truth(&t))).unwrap();
    }
    app.block_on(async {
        let tx = app.state.db.write().await.unwrap();
        ledger::payments::pay_review(&*tx, p.id, None, r_id, Micros(10_000), "rev-1")
            .await
            .unwrap();
        tx.commit().await.unwrap();
    });
    (b, p, [a_id, b_id, r_id])
}

fn license(per_record: Option<i64>, per_export: Option<i64>) -> api::PublishDataset {
    api::PublishDataset {
        title: None,
        price_per_record: per_record.map(Micros),
        price_per_export: per_export.map(Micros),
    }
}

#[test]
fn each_use_charges_the_licensee_and_a_round_splits_the_pool_by_accepted_work() {
    let app = TestApp::spawn(|c| c.fee_bps = 500);
    let (owner, p, [a, b, r]) = finished_bounty(&app);
    let owner_id = p.buyer_id;
    assert_problem(
        owner.publish_dataset(p.id, &license(Some(0), None)),
        422,
        "invalid-price",
    );
    assert_problem(
        owner.publish_dataset(p.id, &license(None, None)),
        422,
        "invalid-price",
    );
    let d = owner
        .publish_dataset(p.id, &license(Some(1_000), Some(50_000)))
        .unwrap();
    assert_eq!(d.version, 1);
    assert_eq!(d.record_count, 6);
    assert_eq!(d.contributors, 3);
    let d_only_records = owner
        .publish_dataset(p.id, &license(Some(7), None))
        .unwrap();
    assert_eq!(d_only_records.version, 2);

    let (lic_id, lic) = buyer(&app, "licensee", 1);
    let (_, contrib) = contributor(&app, "nosy");
    assert_problem(
        contrib.dataset_records(d.id, 1, 10, None),
        403,
        "role-required",
    );
    assert_problem(
        lic.dataset_export(d_only_records.id, None),
        409,
        "use-not-licensed",
    );
    let owner_before = balance_of(&app, owner_id);

    // Page 1 of 4 records: 4_000; fee 5 % = 200; owner 20 % of 3_800 = 760; pool 3_040.
    let p1 = lic.dataset_records(d.id, 1, 4, Some("read-1")).unwrap();
    assert_eq!(p1.records.len(), 4);
    assert_eq!(p1.records[0].seq, 1);
    assert_eq!(p1.total_records, 6);
    let c1 = p1.charge.clone().unwrap();
    assert_eq!(
        (c1.amount, c1.fee, c1.buyer_share, c1.royalty_pool),
        (Micros(4_000), Micros(200), Micros(760), Micros(3_040))
    );
    let again = lic.dataset_records(d.id, 1, 4, Some("read-1")).unwrap();
    assert_eq!(
        again.charge.unwrap().use_id,
        c1.use_id,
        "a retry is not charged twice"
    );
    assert_problem(
        lic.dataset_records(d.id, 2, 4, Some("read-1")),
        409,
        "idempotency-key-reused",
    );
    let p2 = lic.dataset_records(d.id, 2, 4, None).unwrap();
    assert_eq!(p2.records.len(), 2);
    assert_eq!(p2.charge.as_ref().unwrap().amount, Micros(2_000));
    let p3 = lic.dataset_records(d.id, 3, 4, None).unwrap();
    assert!(
        p3.records.is_empty() && p3.charge.is_none(),
        "past the end is free"
    );
    let export = lic.dataset_export(d.id, Some("exp-1")).unwrap();
    assert_eq!(export.text().lines().count(), 6);
    let first: sahel_protocol::provenance::ExportRecord =
        serde_json::from_str(export.text().lines().next().unwrap()).unwrap();
    assert_eq!(sahel_protocol::provenance::verify_record(&first), Ok(1));
    assert_eq!(first.result["answer"]["label"], first.data["truth"]);

    let charges = [4_000i64, 2_000, 50_000];
    let spent: i64 = charges.iter().sum();
    assert_eq!(
        balance_of(&app, lic_id),
        Micros(1_000_000 - spent),
        "the licensee paid each use once"
    );
    let pools: Vec<i64> = charges
        .iter()
        .map(|c| royalty::divide_charge(*c, 500, 2_000).pool)
        .collect();
    let owner_share: i64 = charges
        .iter()
        .map(|c| royalty::divide_charge(*c, 500, 2_000).buyer_share)
        .sum();
    assert_eq!(
        balance_of(&app, owner_id),
        owner_before.checked_add(Micros(owner_share)).unwrap()
    );
    assert_eq!(
        app.block_on(ledger::balance(app.db(), AccountRef::RoyaltyPool(d.id)))
            .unwrap(),
        Micros(pools.iter().sum())
    );

    // Nothing is split until a round runs; then each contributor gets
    // exactly the sum of splitting every use on its own.
    let before: BTreeMap<i64, Micros> = [a, b, r]
        .iter()
        .map(|u| (*u, balance_of(&app, *u)))
        .collect();
    let (_, admin_token) = app.create_admin();
    let run = bearer(&app, &admin_token).run_royalties().unwrap();
    assert_eq!(
        (run.rounds_opened, run.batches_paid, run.payments),
        (1, 1, 3)
    );
    // Weights: a 4 x 10_000, b 2 x 10_000, r one review of 10_000.
    let weights = [(a, 40_000), (b, 20_000), (r, 10_000)];
    let mut expected = [0i64; 3];
    for pool in &pools {
        for (e, part) in expected.iter_mut().zip(royalty::split(*pool, &weights)) {
            *e += part;
        }
    }
    assert_eq!(expected.iter().sum::<i64>(), pools.iter().sum::<i64>());
    for ((u, _), e) in weights.iter().zip(expected) {
        assert_eq!(
            balance_of(&app, *u),
            before[u].checked_add(Micros(e)).unwrap(),
            "user {u}"
        );
    }
    assert_eq!(
        app.block_on(ledger::balance(app.db(), AccountRef::RoyaltyPool(d.id)))
            .unwrap(),
        Micros::ZERO
    );

    // The contributor's receipt names the dataset and the uses it paid for.
    let ca = contributor_client(&app, "alice");
    let mine = ca.all_receipts().unwrap();
    let royalty_receipt = mine.receipts.iter().find(|r| r.kind == "royalty").unwrap();
    let memo: serde_json::Value = serde_json::from_str(&royalty_receipt.memo).unwrap();
    assert_eq!(memo["dataset_id"], d.id);
    assert_eq!(memo["uses"], 3);
    let key = sahel_protocol::signing::parse_public_key(&mine.server_key).unwrap();
    assert_eq!(
        sahel_protocol::receipt::verify_bundle(&mine, &key, 1).errors,
        vec![]
    );
    assert_ledger_clean(&app);
}

/// A signed client for a contributor created by `contributor()`, found by
/// logging in again.
fn contributor_client(app: &TestApp, name: &str) -> sahel_worker::client::Client {
    let res = anon(app)
        .login(&api::LoginRequest {
            email: format!("{name}@test.sahel"),
            password: "correct horse battery".into(),
            token_label: None,
        })
        .unwrap();
    bearer(app, &res.token)
}

#[test]
fn rounds_pay_thousands_of_contributors_in_batches_with_the_exact_split() {
    let app = spawn_app();
    let n_contributors = 2_500i64;
    let (lic_id, _) = buyer(&app, "big-licensee", 100);
    let owner = app.create_user("owner@test.sahel", &[Role::Buyer]).0;
    // A dataset made directly: 3 records, 2,500 contributors of uneven weight.
    let d = app.block_on(async {
        let db = app.db();
        let d = ds::dataset::ActiveModel {
            project_id: Set(0),
            buyer_id: Set(owner),
            version: Set(1),
            title: Set("bulk".into()),
            price_per_record: Set(Some(997)),
            price_per_export: Set(Some(123_457)),
            record_count: Set(3),
            contributors: Set(n_contributors),
            total_weight: Set(0),
            created_at: Set(0),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
        for i in 1..=3 {
            ds::record::ActiveModel {
                dataset_id: Set(d.id),
                seq: Set(i),
                item_id: Set(i),
                data: Set("{}".into()),
                result: Set("{}".into()),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
        }
        let rows: Vec<ds::contributor::ActiveModel> = (1..=n_contributors)
            .map(|i| ds::contributor::ActiveModel {
                dataset_id: Set(d.id),
                user_id: Set(1_000_000 + i),
                weight: Set(10_000 * (1 + i % 7)),
            })
            .collect();
        for chunk in rows.chunks(500) {
            ds::contributor::Entity::insert_many(chunk.to_vec())
                .exec(db)
                .await
                .unwrap();
        }
        d
    });
    let licensee = AuthUser {
        id: lic_id,
        roles: Roles::of(&[Role::Buyer]),
    };
    let mut pools = Vec::new();
    app.block_on(async {
        for page in [1, 2, 3, 1] {
            let pg = datasets::read_page(&app.state.db, &licensee, d.id, page, 2, None)
                .await
                .unwrap();
            if let Some(c) = pg.charge {
                pools.push(c.royalty_pool.0);
            }
        }
        let (_, c) = datasets::charge_export(&app.state.db, &licensee, d.id, None)
            .await
            .unwrap();
        pools.push(c.royalty_pool.0);
    });
    assert_eq!(pools.len(), 4);

    let steps = app
        .block_on(royalty::run_until_idle(&app.state.db, 100))
        .unwrap();
    assert!(
        matches!(
            steps[0],
            Step::Opened {
                uses: 4,
                payees: 2_500,
                ..
            }
        ),
        "{steps:?}"
    );
    let paid: Vec<usize> = steps[1..]
        .iter()
        .map(|s| match s {
            Step::Paid { payees, .. } => *payees,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paid,
        vec![1000, 1000, 500],
        "three batches, one transaction each"
    );

    let weights: Vec<(i64, i64)> = (1..=n_contributors)
        .map(|i| (1_000_000 + i, 10_000 * (1 + i % 7)))
        .collect();
    let mut expected = vec![0i64; weights.len()];
    for pool in &pools {
        for (e, part) in expected.iter_mut().zip(royalty::split(*pool, &weights)) {
            *e += part;
        }
    }
    for ((u, _), e) in weights.iter().zip(&expected).step_by(97) {
        assert_eq!(balance_of(&app, *u), Micros(*e), "contributor {u}");
    }
    let total_paid: i64 = weights.iter().map(|(u, _)| balance_of(&app, *u).0).sum();
    assert_eq!(
        total_paid,
        pools.iter().sum::<i64>(),
        "the split sums exactly"
    );
    assert_eq!(
        app.block_on(royalty::run_once(&app.state.db)).unwrap(),
        Step::Idle
    );
    assert_ledger_clean(&app);
}
