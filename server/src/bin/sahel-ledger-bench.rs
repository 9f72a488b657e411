//! Ledger benchmarks: settlement trees, royalty rounds, receipt checks.
//!
//! ```sh
//! cargo run --release -p sahel-server --bin sahel-ledger-bench -- all
//! ```
//!
//! Each prints what it measured and the time; data is synthetic and
//! deterministic (a fixed xorshift seed).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use sahel_protocol::Micros;
use sahel_protocol::receipt::{
    GENESIS_HASH, Receipt, ReceiptBundle, ReceiptPosting, receipt_hash, sign_hash, verify_bundle,
};
use sahel_protocol::settlement::{Address, EpochFile, StandardTree, U256, hex0x};
use sahel_server::accounts::{AuthUser, Roles};
use sahel_server::datasets::{self, entity as ds};
use sahel_server::db::Db;
use sahel_server::ledger::royalty::{self, Step};
use sahel_server::ledger::{self, AccountRef};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};

#[derive(Parser)]
#[command(about = "Sahel ledger benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Build an epoch's OpenZeppelin Merkle tree over N accounts.
    Settle {
        #[arg(long, default_value_t = 1_000_000)]
        accounts: usize,
    },
    /// Split N recorded uses of one dataset among M contributors: open the
    /// round and pay every batch, with receipts, in the database.
    Royalties {
        #[arg(long, default_value_t = 1_000_000)]
        uses: usize,
        #[arg(long, default_value_t = 100_000)]
        contributors: usize,
        /// Uses charged one by one through the real path, to time a use.
        #[arg(long, default_value_t = 2_000)]
        charged: usize,
        /// Database URL (default: a fresh SQLite file in a temp directory).
        #[arg(long, env = "BENCH_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Verify N receipts as `sahel receipts verify` does (parse + check).
    Receipts {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    /// All three at their default sizes.
    All,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn settle(accounts: usize) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let values: Vec<(Address, U256)> = (0..accounts)
        .map(|_| {
            let mut a = [0u8; 20];
            for chunk in a.chunks_mut(8) {
                let r = rng.next().to_be_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            a[0] |= 1;
            let micros = 1 + rng.next() % 1_000_000_000_000;
            (Address(a), U256::from_micros(micros, 18).expect("fits"))
        })
        .collect();
    let t = Instant::now();
    let tree = StandardTree::build(values).expect("non-empty");
    let built = t.elapsed();
    println!(
        "settle: tree over {accounts} accounts built in {} (root {})",
        secs(built),
        hex0x(&tree.root())
    );
    let t = Instant::now();
    let file = EpochFile::build(1, 18, &tree);
    println!(
        "settle: every proof + epoch file for {} claims in {}",
        file.claims.len(),
        secs(t.elapsed())
    );
}

fn receipts(count: usize) {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let user = 7i64;
    let mut prev = GENESIS_HASH;
    let mut balance = 0i64;
    let receipts: Vec<Receipt> = (1..=count as u64)
        .map(|seq| {
            let amount = 1_000 + (seq as i64 % 97);
            balance += amount;
            let postings = vec![
                ReceiptPosting {
                    account: "escrow".into(),
                    owner: 3,
                    amount: Micros(-amount),
                },
                ReceiptPosting {
                    account: "user".into(),
                    owner: user,
                    amount: Micros(amount),
                },
            ];
            let memo = format!("{{\"item_id\":{seq},\"project_id\":3}}");
            let h = receipt_hash(
                &prev,
                seq,
                seq as i64,
                1_764_000_000_000,
                "pay_answers",
                &memo,
                &postings,
            );
            let r = Receipt {
                seq,
                transaction_id: seq as i64,
                created_at_ms: 1_764_000_000_000,
                kind: "pay_answers".into(),
                memo,
                postings,
                prev_hash: hex::encode(prev),
                hash: hex::encode(h),
                signature: Some(sign_hash(&key, &h)),
            };
            prev = h;
            r
        })
        .collect();
    let bundle = ReceiptBundle {
        server_key: hex::encode(key.verifying_key().as_bytes()),
        balances: vec![ReceiptPosting {
            account: "user".into(),
            owner: user,
            amount: Micros(balance),
        }],
        receipts,
        predecessors: vec![],
    };
    let json = serde_json::to_vec(&bundle).expect("serializes");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    let parsed: ReceiptBundle = serde_json::from_slice(&json).expect("parses");
    let parse = t.elapsed();
    let vk = key.verifying_key();
    let report = verify_bundle(&parsed, &vk, threads);
    let total = t.elapsed();
    assert!(report.errors.is_empty(), "{:?}", &report.errors[..1]);
    println!(
        "receipts: {} receipts ({} MB of JSON) parsed in {}, verified (hash, signature, links, balance) on {threads} threads; total {}",
        report.receipts,
        json.len() / 1_000_000,
        secs(parse),
        secs(total)
    );
}

async fn royalties(
    uses: usize,
    contributors: usize,
    charged: usize,
    url: Option<String>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("sahel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url =
        url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()));
    let db = Db::connect(&url, 8).await?;
    db.migrate().await?;
    let err = |e: sahel_server::error::Error| anyhow::anyhow!("{e}");

    // Setup (timed apart): a licensee, a dataset of 10 records with M
    // contributors of uneven weight.
    let t = Instant::now();
    let licensee = 1i64;
    {
        let tx = db.write().await?;
        ledger::post(
            &*tx,
            "deposit",
            serde_json::json!({ "user_id": licensee }),
            Some("bench-deposit".into()),
            &[
                (AccountRef::Deposits, Micros(-(i64::MAX / 4))),
                (AccountRef::User(licensee), Micros(i64::MAX / 4)),
            ],
        )
        .await
        .map_err(err)?;
        tx.commit().await?;
    }
    let d = ds::dataset::ActiveModel {
        project_id: Set(0),
        buyer_id: Set(2),
        version: Set(1),
        title: Set("bench".into()),
        price_per_record: Set(Some(1_000)),
        price_per_export: Set(Some(250_000)),
        record_count: Set(10),
        contributors: Set(contributors as i64),
        total_weight: Set(0),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&db.conn)
    .await?;
    for i in 1..=10 {
        ds::record::ActiveModel {
            dataset_id: Set(d.id),
            seq: Set(i),
            item_id: Set(i),
            data: Set("{\"text\":\"x\"}".into()),
            result: Set("{}".into()),
            ..Default::default()
        }
        .insert(&db.conn)
        .await?;
    }
    let mut rng = Rng(0xfeed_0042);
    let rows: Vec<ds::contributor::ActiveModel> = (0..contributors as i64)
        .map(|i| ds::contributor::ActiveModel {
            dataset_id: Set(d.id),
            user_id: Set(1_000 + i),
            weight: Set(10_000 * (1 + (rng.next() % 20) as i64)),
        })
        .collect();
    for chunk in rows.chunks(5_000) {
        ds::contributor::Entity::insert_many(chunk.to_vec())
            .exec(&db.conn)
            .await?;
    }

    // The real use path, one use per database transaction.
    let who = AuthUser {
        id: licensee,
        roles: Roles::of(&[sahel_protocol::api::Role::Buyer]),
    };
    let t_use = Instant::now();
    for i in 0..charged {
        datasets::read_page(&db, &who, d.id, 1 + (i as i64 % 2), 5, None)
            .await
            .map_err(err)?;
    }
    let per_use = t_use.elapsed() / charged.max(1) as u32;

    // The remaining uses recorded in bulk (the same rows a use writes), with
    // one ledger transaction crediting their pool amounts.
    let bulk = uses.saturating_sub(charged);
    let pool_of = |amount: i64| royalty::divide_charge(amount, 0, 2_000).pool;
    let mut bulk_pool = 0i64;
    let mut batch = Vec::with_capacity(2_000);
    for i in 0..bulk {
        let (kind, records, amount) = match i % 10 {
            0 => ("export", 10, 250_000),
            1 | 2 => ("records", 3, 3_000),
            _ => ("records", 5, 5_000),
        };
        let pool = pool_of(amount);
        bulk_pool += pool;
        batch.push(ds::usage::ActiveModel {
            dataset_id: Set(d.id),
            licensee_id: Set(licensee),
            kind: Set(kind.into()),
            page: Set(None),
            records: Set(records),
            amount: Set(amount),
            fee: Set(0),
            buyer_share: Set(amount - pool),
            pool_amount: Set(pool),
            transaction_id: Set(0),
            round_id: Set(None),
            idempotency_key: Set(format!("bulk-{i}")),
            created_at: Set(0),
            ..Default::default()
        });
        if batch.len() == 2_000 {
            ds::usage::Entity::insert_many(std::mem::take(&mut batch))
                .exec(&db.conn)
                .await?;
        }
    }
    if !batch.is_empty() {
        ds::usage::Entity::insert_many(batch).exec(&db.conn).await?;
    }
    {
        let tx = db.write().await?;
        ledger::post(
            &*tx,
            "royalty_charge",
            serde_json::json!({ "dataset_id": d.id, "bulk_uses": bulk }),
            Some("bench-bulk-uses".into()),
            &[
                (AccountRef::User(licensee), Micros(-bulk_pool)),
                (AccountRef::RoyaltyPool(d.id), Micros(bulk_pool)),
            ],
        )
        .await
        .map_err(err)?;
        tx.commit().await?;
    }
    let setup = t.elapsed();
    let pool = ledger::balance(&db.conn, AccountRef::RoyaltyPool(d.id))
        .await
        .map_err(err)?;

    // Measured: from the recorded uses to every contributor credited.
    let t = Instant::now();
    let steps = royalty::run_until_idle(&db, 1_000_000).await.map_err(err)?;
    let split = t.elapsed();
    // Receipts follow the commits (a server's chainer appends them within
    // a second); timed apart from the payments.
    let t = Instant::now();
    let chained = ledger::receipts::chain_pending(&db, None)
        .await
        .map_err(err)?;
    let chain = t.elapsed();
    let opened = steps
        .iter()
        .filter(|s| matches!(s, Step::Opened { .. }))
        .count();
    let paid: usize = steps
        .iter()
        .map(|s| match s {
            Step::Paid { payees, .. } => *payees,
            _ => 0,
        })
        .sum();
    let left = ledger::balance(&db.conn, AccountRef::RoyaltyPool(d.id))
        .await
        .map_err(err)?;
    let t_audit = Instant::now();
    let problems = royalty::audit(&db.conn).await.map_err(err)?;
    let audit = t_audit.elapsed();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(left, Micros::ZERO, "the pool is paid out exactly");
    println!(
        "royalties: one use through the API path (page read, charge) takes {:.2} ms ({charged} timed)",
        per_use.as_secs_f64() * 1000.0
    );
    println!(
        "royalties: setup (dataset, {contributors} contributors, {bulk} more uses recorded in bulk) {}",
        secs(setup)
    );
    println!(
        "royalties: {uses} uses ({pool} in the pool) split among {contributors} contributors: {opened} round, {paid} payments in {} ledger transactions, in {}; royalty audit {}",
        steps.len() - opened,
        secs(split),
        secs(audit)
    );
    println!(
        "royalties: receipts of all {chained} ledger transactions chained after their commits in {}",
        secs(chain)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Bench::Settle { accounts } => settle(accounts),
        Bench::Receipts { count } => receipts(count),
        Bench::Royalties {
            uses,
            contributors,
            charged,
            database_url,
        } => royalties(uses, contributors, charged, database_url).await?,
        Bench::All => {
            settle(1_000_000);
            royalties(1_000_000, 100_000, 2_000, None).await?;
            receipts(100_000);
        }
    }
    Ok(())
}
