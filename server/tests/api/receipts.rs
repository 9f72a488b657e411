//! Receipts: every ledger transaction chained and signed, verifiable by the
//! account holder, and tampering found by them and by the audit.

use sahel_protocol::Micros;
use sahel_protocol::receipt::{ReceiptError, verify_bundle};
use sahel_protocol::signing::parse_public_key;
use sahel_server::ledger::entity::receipt;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

use crate::helpers::*;

#[test]
fn every_money_transaction_gets_a_chained_signed_receipt_its_owner_verifies() {
    let app = spawn_app();
    let (b, p) = funded_project(&app, 2, 1);
    let (uid, c) = contributor(&app, "earner");
    for t in c.lease(p.id, 2).unwrap() {
        c.submit(&answer(&t, &truth(&t))).unwrap();
    }
    let published = anon(&app).server_key().unwrap();
    assert_eq!(published.algorithm, "ed25519");
    assert_eq!(published.public_key, app.state.server_key.public_hex());
    let key = parse_public_key(&published.public_key).unwrap();

    // A read of receipts first chains whatever committed since the
    // chainer's last pass: deposit, fund, two payments, four receipts.
    let mine = c.all_receipts().unwrap();
    let receipts = app
        .block_on(receipt::Entity::find().count(app.db()))
        .unwrap();
    assert_eq!(receipts, 4);
    assert_eq!(mine.server_key, published.public_key);
    assert_eq!(mine.receipts.len(), 2);
    assert!(mine.receipts.iter().all(|r| r.kind == "pay_answers"));
    assert!(mine.receipts.iter().all(|r| r.signature.is_some()));
    assert_eq!(mine.receipts[0].amount_for("user", uid), 10_000);
    let report = verify_bundle(&mine, &key, 2);
    assert_eq!(report.errors, vec![]);
    assert_eq!(
        report.links_checked, 2,
        "each receipt's predecessor is served"
    );
    let user_balance = mine.balances.iter().find(|b| b.account == "user").unwrap();
    assert_eq!(user_balance.amount, Micros(20_000));

    // The buyer's receipts: the deposit (the chain's first) and the funding.
    let theirs = b.all_receipts().unwrap();
    let kinds: Vec<&str> = theirs.receipts.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["deposit", "fund"]);
    assert_eq!(theirs.receipts[0].seq, 1);
    assert_eq!(theirs.receipts[1].prev_hash, theirs.receipts[0].hash);
    assert_eq!(verify_bundle(&theirs, &key, 1).errors, vec![]);

    // Paging returns the same receipts.
    let first = c.receipts_page(0, 1).unwrap();
    assert_eq!(first.bundle.receipts.len(), 1);
    let after = first.next_after_seq.expect("a second page");
    let second = c.receipts_page(after, 1).unwrap();
    assert_eq!(second.bundle.receipts[0], mine.receipts[1]);
    assert_ledger_clean(&app);
}

#[test]
fn the_server_key_file_is_private_and_survives_a_restart() {
    let mut app = spawn_app();
    let path = app.config.signing_key_path();
    assert!(path.starts_with(&app.config.data_dir));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = anon(&app).server_key().unwrap().public_key;
    app.deposit(app.create_user("x@test.sahel", &[]).0, Micros(5));
    app.restart();
    let after = anon(&app).server_key().unwrap().public_key;
    assert_eq!(before, after);
    let body = anon(&app)
        .raw("GET", "/api/v1/ledger/server-key", None, "")
        .unwrap();
    assert!(body.text().contains(&before));
    assert_ledger_clean(&app);
}

#[test]
fn a_configured_key_file_is_used_and_created_on_first_start() {
    let dir = std::env::temp_dir().join(format!(
        "sahel-key-{}",
        sahel_server::accounts::random_hex(4)
    ));
    let file = dir.join("nested").join("ledger.key");
    let app = TestApp::spawn(|c| c.signing_key_file = Some(file.clone()));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim().len(), 64);
    assert!(!app.config.data_dir.join("server-key").exists());
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tampered_posting_is_found_by_the_audit_and_by_the_owners_verification() {
    let app = spawn_app();
    let (_, p) = funded_project(&app, 1, 1);
    let (uid, c) = contributor(&app, "victim");
    let t = c.lease(p.id, 1).unwrap().remove(0);
    c.submit(&answer(&t, &truth(&t))).unwrap();
    assert_ledger_clean(&app);
    let (_, admin_token) = app.create_admin();
    let admin = bearer(&app, &admin_token);
    assert_eq!(admin.audit().unwrap()["clean"], true);
    let key = parse_public_key(&app.state.server_key.public_hex()).unwrap();

    // Someone with database access shaves one micro off the payment.
    app.block_on(app.db().execute_unprepared(&format!(
        "UPDATE ledger_postings SET amount = amount - 1 WHERE account_id = \
         (SELECT id FROM ledger_accounts WHERE kind = 'user' AND owner_id = {uid})"
    )))
    .unwrap();

    let audit = admin.audit().unwrap();
    assert_eq!(audit["clean"], false, "{audit}");
    let problems = audit["receipt_problems"].to_string();
    assert!(problems.contains("no longer matches its hash"), "{audit}");
    assert_eq!(
        audit["unbalanced_transactions"].as_array().unwrap().len(),
        1
    );

    let mine = c.all_receipts().unwrap();
    let errors = verify_bundle(&mine, &key, 1).errors;
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ReceiptError::ContentMismatch { .. })),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ReceiptError::BalanceMismatch { .. })),
        "{errors:?}"
    );
}

/// The chainer pages through committed transactions (200 a write) and
/// the signer through unsigned receipts (1,000 a read, written 100 at a
/// time): a backlog that spans pages and ends in partial ones is chained
/// and signed to the last transaction, each receipt with the server key's
/// signature of its own hash. Chained without the key first, as a tool
/// does, by two chainers at once; the server's own chainer may take some
/// first, signed.
#[test]
fn a_backlog_is_chained_and_signed_to_the_last_transaction() {
    use sahel_server::ledger::entity::transaction;
    use sea_orm::{ColumnTrait, QueryFilter};

    let app = spawn_app();
    let (u, _) = app.create_user("backlog@test.sahel", &[]);
    for _ in 0..1_050 {
        app.deposit(u, Micros(1));
    }
    let unsigned = || {
        app.block_on(
            receipt::Entity::find()
                .filter(receipt::Column::Signature.is_null())
                .count(app.db()),
        )
        .unwrap()
    };
    let unchained = || {
        app.block_on(
            transaction::Entity::find()
                .filter(transaction::Column::Chained.eq(false))
                .count(app.db()),
        )
        .unwrap()
    };
    // Two chainers at once (and the server's own): each page goes to one
    // of them, the others read again.
    let (a, b) = app.block_on(async {
        tokio::join!(
            sahel_server::ledger::receipts::chain_pending(&app.state.db, None),
            sahel_server::ledger::receipts::chain_pending(&app.state.db, None),
        )
    });
    assert!(a.unwrap() + b.unwrap() <= 1_050);
    assert_eq!(unchained(), 0);
    app.block_on(sahel_server::ledger::receipts::sign_pending(
        &app.state.db,
        &app.state.server_key,
    ))
    .unwrap();
    assert_eq!(unsigned(), 0);
    let audit = app.audit();
    assert_eq!(audit.chain.receipts, 1_050);
    assert_eq!(audit.chain.unsigned, 0);
    assert_eq!(audit.chain.problems, Vec::<String>::new());
    assert!(audit.is_clean(), "{audit:?}");
}

/// A payment takes no lock that every payment shares: with the chain head
/// held by another transaction (PostgreSQL; SQLite runs one write at a
/// time), answers are still accepted and paid, their transactions wait
/// unchained, and once the head is free a read of receipts finds them
/// chained and signed. Before, every payment locked the head until it
/// committed, so replicas' answer batches queued on it.
#[test]
fn payments_commit_without_waiting_for_the_chain() {
    use sahel_server::ledger::entity::transaction;
    use sahel_server::ledger::{self, AccountRef};
    use sea_orm::{ColumnTrait, QueryFilter};

    let app = spawn_app();
    if !app.is_postgres() {
        return;
    }
    let (_, p) = funded_project(&app, 2, 1);
    let (uid, c) = contributor(&app, "unchained");
    let tasks = c.lease(p.id, 2).unwrap();
    // The deposit and funding chained, as the chainer would have by now.
    app.block_on(sahel_server::ledger::receipts::chain_pending(
        &app.state.db,
        Some(&app.state.server_key),
    ))
    .unwrap();
    let head = app.block_on(async {
        let tx = app.state.db.write().await.unwrap();
        tx.execute_unprepared("SELECT seq FROM ledger_chain_head WHERE id = 1 FOR UPDATE")
            .await
            .unwrap();
        tx
    });
    for t in &tasks {
        c.submit(&answer(t, &truth(t))).unwrap();
    }
    let balance = app
        .block_on(ledger::balance(app.db(), AccountRef::User(uid)))
        .unwrap();
    assert_eq!(balance, Micros(20_000), "paid while the chain head is held");
    let waiting: Vec<String> = app
        .block_on(
            transaction::Entity::find()
                .filter(transaction::Column::Chained.eq(false))
                .all(app.db()),
        )
        .unwrap()
        .into_iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(waiting, vec!["pay_answers", "pay_answers"]);
    app.block_on(head.commit()).unwrap();

    let mine = c.all_receipts().unwrap();
    assert_eq!(mine.receipts.len(), 2);
    assert!(mine.receipts.iter().all(|r| r.signature.is_some()));
    let key = parse_public_key(&app.state.server_key.public_hex()).unwrap();
    assert_eq!(verify_bundle(&mine, &key, 2).errors, vec![]);
    assert_ledger_clean(&app);
}

/// An upgraded database: transactions the version before chained inside
/// the payment keep their receipts and are marked chained by the
/// migration, and one left without a receipt (written before receipts
/// existed, or by a server that stopped before chaining it) is chained at
/// the next start, after the others.
#[test]
fn an_upgraded_ledger_keeps_its_chain_and_chains_what_had_no_receipt() {
    use sahel_migration::{Migrator, MigratorTrait};
    use sahel_server::ledger::entity::transaction;
    use sea_orm::{ColumnTrait, QueryFilter};

    let mut app = spawn_app();
    let (u, _) = app.create_user("upgrade@test.sahel", &[]);
    for _ in 0..3 {
        app.deposit(u, Micros(7));
    }
    assert!(app.audit().is_clean());
    let last = app
        .block_on(transaction::Entity::find().all(app.db()))
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .max()
        .unwrap();
    // Back to the schema before `chained` (and whatever came after it),
    // with the last transaction's receipt gone and the head moved back, as
    // an older server leaves it.
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20261206_000100_add_transaction_chained")
        .unwrap()
        + 1;
    app.block_on(async {
        Migrator::down(app.db(), Some(steps as u32)).await.unwrap();
        for sql in [
            format!("DELETE FROM ledger_receipts WHERE transaction_id = {last}"),
            "UPDATE ledger_chain_head SET seq = (SELECT MAX(seq) FROM ledger_receipts), \
             hash = (SELECT hash FROM ledger_receipts \
             WHERE seq = (SELECT MAX(seq) FROM ledger_receipts)) WHERE id = 1"
                .to_owned(),
        ] {
            app.db().execute_unprepared(&sql).await.unwrap();
        }
        Migrator::up(app.db(), None).await.unwrap();
    });
    // The server's own chainer may append the missing one at any moment,
    // and marks it in the same transaction: the marks always match the
    // receipts.
    let (marked, receipts) = app.block_on(async {
        let marked = transaction::Entity::find()
            .filter(transaction::Column::Chained.eq(true))
            .count(app.db())
            .await
            .unwrap();
        (
            marked,
            receipt::Entity::find().count(app.db()).await.unwrap(),
        )
    });
    assert_eq!(marked, receipts);
    assert!(receipts >= 2, "{receipts}");

    app.restart();
    let chained = app
        .block_on(
            receipt::Entity::find()
                .filter(receipt::Column::TransactionId.eq(last))
                .one(app.db()),
        )
        .unwrap()
        .expect("chained at start");
    assert_eq!(chained.seq, 3, "appended after the two kept");
    assert!(chained.signature.is_some());
    let audit = app.audit();
    assert_eq!(audit.chain.receipts, 3);
    assert!(audit.is_clean(), "{audit:?}");
}
