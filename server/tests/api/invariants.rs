//! The ledger's invariants under random sequences of operations (proptest)
//! and under many clients at once (on SQLite and on PostgreSQL).

use std::sync::{Arc, Barrier};

use proptest::prelude::*;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, ProjectStatus};
use sahel_protocol::receipt::verify_bundle;
use sahel_protocol::signing::parse_public_key;
use sahel_server::ledger;
use sahel_worker::client::{ApiError, Client};

use crate::helpers::*;

/// Outcomes a well-behaved client may meet when others act at the same
/// time: anything else (a 500 above all) is a bug.
fn expected_refusal(e: &ApiError) -> bool {
    matches!(
        e.code(),
        Some(
            "insufficient-funds"
                | "project-closed"
                | "project-not-finished"
                | "nothing-to-publish"
                | "lease-released"
                | "lease-expired"
                | "item-complete"
                | "retry"
                | "nothing-to-settle"
                | "use-not-licensed"
        )
    )
}

fn tolerate<T>(r: Result<T, ApiError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if expected_refusal(&e) => None,
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

/// Every receipt of every listed client verifies, with each balance equal
/// to the sum of its receipts.
fn assert_receipts_verify(clients: &[&Client]) {
    for c in clients {
        let bundle = c.all_receipts().unwrap();
        let key = parse_public_key(&bundle.server_key).unwrap();
        let report = verify_bundle(&bundle, &key, 2);
        assert_eq!(report.errors, vec![], "receipts of a client do not verify");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Fund {
        items: usize,
        overlap: u32,
    },
    Answer {
        project: usize,
        worker: usize,
        honest: bool,
    },
    Review {
        project: usize,
        worker: usize,
        amount: i64,
    },
    Use {
        project: usize,
        page: i64,
    },
    Close {
        project: usize,
    },
    Settle {
        worker: usize,
        amount: i64,
    },
    Distribute,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1usize..4, 1u32..3).prop_map(|(items, overlap)| Op::Fund { items, overlap }),
        4 => (0usize..4, 0usize..3, any::<bool>())
            .prop_map(|(project, worker, honest)| Op::Answer { project, worker, honest }),
        1 => (0usize..4, 0usize..3, 1i64..8_000)
            .prop_map(|(project, worker, amount)| Op::Review { project, worker, amount }),
        2 => (0usize..4, 1i64..3).prop_map(|(project, page)| Op::Use { project, page }),
        1 => (0usize..4).prop_map(|project| Op::Close { project }),
        1 => (0usize..3, 1i64..30_000).prop_map(|(worker, amount)| Op::Settle { worker, amount }),
        1 => Just(Op::Distribute),
    ]
}

struct World {
    app: TestApp,
    buyer: Client,
    licensee: Client,
    admin: Client,
    workers: Vec<(i64, Client)>,
    projects: Vec<api::Project>,
    datasets: Vec<Option<i64>>,
    steps: u32,
}

impl World {
    fn new() -> World {
        let app = TestApp::spawn(|c| c.fee_bps = 250);
        let (_, licensee) = buyer(&app, "prop-licensee", 1_000);
        let (_, buyer) = buyer(&app, "prop-buyer", 1_000);
        let (_, admin_token) = app.create_admin();
        let admin = bearer(&app, &admin_token);
        let workers: Vec<(i64, Client)> = (0..3)
            .map(|i| contributor(&app, &format!("prop-w{i}")))
            .collect();
        for (i, (_, w)) in workers.iter().enumerate() {
            w.set_payout_address(&format!("0x{:040x}", 0xabc0 + i))
                .unwrap();
        }
        World {
            app,
            buyer,
            licensee,
            admin,
            workers,
            projects: Vec::new(),
            datasets: Vec::new(),
            steps: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        self.steps += 1;
        let n = self.projects.len();
        match *op {
            Op::Fund { items, overlap } => {
                // Budget: the cost plus room for a few reviews.
                let budget = 10_000 * overlap as i64 * items as i64 + 20_000;
                let p = self
                    .buyer
                    .create_project(&project_spec(overlap, 10_000, budget))
                    .unwrap();
                self.buyer
                    .import_items(p.id, "jsonl", items_jsonl(items).as_bytes())
                    .unwrap();
                let p = self.buyer.fund(p.id, "f").unwrap();
                self.projects.push(p);
                self.datasets.push(None);
            }
            Op::Answer {
                project,
                worker,
                honest,
            } if n > 0 => {
                let p = &self.projects[project % n];
                let (_, w) = &self.workers[worker];
                if let Some(t) = tolerate(w.lease(p.id, 1)).and_then(|mut t| t.pop()) {
                    let label = if honest {
                        truth(&t)
                    } else {
                        "neutral".to_owned()
                    };
                    tolerate(w.submit(&answer(&t, &label)));
                }
            }
            Op::Review {
                project,
                worker,
                amount,
            } if n > 0 => {
                let p = self.projects[project % n].id;
                let reviewer = self.workers[worker].0;
                let key = format!("review-{}", self.steps);
                let r = self.app.block_on(async {
                    let tx = self.app.state.db.write().await.unwrap();
                    let r =
                        ledger::payments::pay_review(&*tx, p, None, reviewer, Micros(amount), &key)
                            .await;
                    if r.is_ok() {
                        tx.commit().await.unwrap();
                    }
                    r
                });
                if let Err(e) = r {
                    assert!(e.to_string().contains("insufficient-funds"), "{e}");
                }
            }
            Op::Use { project, page } if n > 0 => {
                let i = project % n;
                let p = self.buyer.project(self.projects[i].id).unwrap();
                if self.datasets[i].is_none()
                    && matches!(p.status, ProjectStatus::Completed | ProjectStatus::Closed)
                {
                    let license = api::PublishDataset {
                        title: None,
                        price_per_record: Some(Micros(777)),
                        price_per_export: Some(Micros(5_003)),
                    };
                    self.datasets[i] =
                        tolerate(self.buyer.publish_dataset(p.id, &license)).map(|d| d.id);
                }
                if let Some(d) = self.datasets[i] {
                    if page == 1 {
                        tolerate(self.licensee.dataset_export(d, None));
                    } else {
                        tolerate(self.licensee.dataset_records(d, 1, 2, None));
                    }
                }
            }
            Op::Close { project } if n > 0 => {
                let p = self.projects[project % n].id;
                let closed = self.buyer.close_project(p, "close").unwrap();
                assert_eq!(closed.project.status, ProjectStatus::Closed);
                assert_eq!(escrow_of(&self.app, p), Micros::ZERO);
            }
            Op::Settle { worker, amount } => {
                let (_, w) = &self.workers[worker];
                tolerate(w.withdraw(Micros(amount), &format!("w-{}", self.steps)));
                tolerate(self.admin.close_epoch(&format!("e-{}", self.steps)));
            }
            Op::Distribute => {
                self.admin.run_royalties().unwrap();
            }
            _ => {}
        }
    }

    fn check(&self) {
        assert_ledger_clean(&self.app);
        let mut clients: Vec<&Client> = self.workers.iter().map(|(_, c)| c).collect();
        clients.push(&self.buyer);
        clients.push(&self.licensee);
        assert_receipts_verify(&clients);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_of_money_operations_keep_every_ledger_invariant(
        ops in prop::collection::vec(op(), 1..28)
    ) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
        }
        // Distribute whatever is waiting: the pools must empty exactly.
        world.admin.run_royalties().unwrap();
        world.check();
    }
}

#[test]
fn many_clients_paying_using_and_closing_at_once_leave_the_ledger_consistent() {
    let app = TestApp::spawn(|c| c.fee_bps = 300);
    let (_, admin_token) = app.create_admin();
    let admin = bearer(&app, &admin_token);
    // A finished bounty published as a dataset, for licensees to use.
    let (owner, done) = funded_project(&app, 4, 1);
    let (_, first) = contributor(&app, "first");
    for t in first.lease(done.id, 4).unwrap() {
        first.submit(&answer(&t, &truth(&t))).unwrap();
    }
    let dataset = owner
        .publish_dataset(
            done.id,
            &api::PublishDataset {
                title: None,
                price_per_record: Some(Micros(101)),
                price_per_export: Some(Micros(2_999)),
            },
        )
        .unwrap();
    let live: Vec<(Client, api::Project)> = (0..3).map(|_| funded_project(&app, 12, 2)).collect();
    let workers: Vec<(i64, Client)> = (0..6)
        .map(|i| contributor(&app, &format!("crowd{i}")))
        .collect();
    for (i, (_, w)) in workers.iter().enumerate() {
        w.set_payout_address(&format!("0x{:040x}", 0x5000 + i))
            .unwrap();
    }
    let licensees: Vec<Client> = (0..3)
        .map(|i| buyer(&app, &format!("lic{i}"), 50).1)
        .collect();

    let threads = workers.len() + licensees.len() + 3;
    let start = Arc::new(Barrier::new(threads));
    let mut handles = Vec::new();
    for (i, (_, w)) in workers.iter().enumerate() {
        let (w, start) = (w.clone(), start.clone());
        let projects: Vec<i64> = live.iter().map(|(_, p)| p.id).collect();
        handles.push(std::thread::spawn(move || {
            start.wait();
            for round in 0..40 {
                let p = projects[(i + round) % projects.len()];
                let Some(tasks) = tolerate(w.lease(p, 2)) else {
                    continue;
                };
                for t in tasks {
                    let label = if (i + round) % 5 == 0 {
                        "neutral".to_owned()
                    } else {
                        truth(&t)
                    };
                    tolerate(w.submit(&answer(&t, &label)));
                }
                if round % 10 == 9 {
                    tolerate(w.withdraw(Micros(1_000), &format!("w{round}")));
                }
            }
        }));
    }
    for (i, l) in licensees.iter().enumerate() {
        let (l, start, d) = (l.clone(), start.clone(), dataset.id);
        handles.push(std::thread::spawn(move || {
            start.wait();
            for k in 0..15 {
                if k % 5 == i {
                    tolerate(l.dataset_export(d, None));
                } else {
                    tolerate(l.dataset_records(d, 1 + (k as i64 % 3), 2, None));
                }
            }
        }));
    }
    {
        // The buyers close two of the live bounties while work goes on.
        let start = start.clone();
        let closers: Vec<(Client, i64)> =
            live[..2].iter().map(|(b, p)| (b.clone(), p.id)).collect();
        handles.push(std::thread::spawn(move || {
            start.wait();
            std::thread::sleep(std::time::Duration::from_millis(150));
            for (b, p) in closers {
                let c = b.close_project(p, "close-now").unwrap();
                assert_eq!(c.project.status, ProjectStatus::Closed);
            }
        }));
    }
    for job in 0..2 {
        let (admin, start) = (admin.clone(), start.clone());
        handles.push(std::thread::spawn(move || {
            start.wait();
            for k in 0..6 {
                std::thread::sleep(std::time::Duration::from_millis(60));
                if job == 0 {
                    admin.run_royalties().unwrap();
                } else {
                    tolerate(admin.close_epoch(&format!("epoch-{k}")));
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("a client thread failed");
    }
    admin.run_royalties().unwrap();

    for (_, p) in &live[..2] {
        assert_eq!(
            escrow_of(&app, p.id),
            Micros::ZERO,
            "closed bounties are refunded"
        );
        assert_eq!(items_with_status(&app, p.id, "open"), 0);
    }
    let mut clients: Vec<&Client> = workers.iter().map(|(_, c)| c).collect();
    clients.extend(licensees.iter());
    clients.push(&owner);
    clients.push(&first);
    assert_receipts_verify(&clients);
    let audit = app.audit();
    assert!(audit.is_clean(), "{audit:?}");
    assert!(
        audit.chain.receipts > 50,
        "the scenario moved money: {}",
        audit.chain.receipts
    );
    assert_eq!(audit.chain.unsigned, 0);
}
