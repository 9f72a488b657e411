//! The background re-estimation, one bounty at a time: EM over every
//! counted answer, then what the new model implies. Idempotent (a bounty
//! with no new answer and no undecided gold answer is skipped), leased
//! (one runner per bounty at a time, across server processes) and
//! steppable: tests call [`run_once`] until it reports nothing done.

use std::collections::{HashMap, HashSet};

use sahel_protocol::Micros;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, Set,
};
use serde_json::{Value, json};

use super::entity::{contributor, discard, settings, state as qstate};
use super::{
    Shape, class_of, classes, em_config, engine, gold, gold_paid, refresh_accuracy, set_of, shape,
    standing, suspend,
};
use crate::consensus::resolve::{self, Outcome};
use crate::db::now_ms;
use crate::error::{Error, Result};
use crate::ledger::{self, AccountRef};
use crate::projects;
use crate::projects::entity::item;
use crate::queue::entity::answer;
use crate::state::AppState;
use engine::reliability::PeerEvidence;
use engine::signals::{self, SignalConfig};

/// How often the server runs [`run_once`] in the background.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a runner holds a bounty.
const LEASE_MS: i64 = 120_000;

/// What one [`run_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    /// Bounties re-estimated.
    pub estimated: usize,
    /// Gold answers decided (accepted and paid, or rejected).
    pub gold_decided: usize,
    /// Items the new model settled before they had all their answers.
    pub resolved: usize,
    pub suspended: usize,
}

impl RunReport {
    pub fn is_idle(&self) -> bool {
        self.estimated == 0
    }

    fn add(&mut self, o: RunReport) {
        self.estimated += o.estimated;
        self.gold_decided += o.gold_decided;
        self.resolved += o.resolved;
        self.suspended += o.suspended;
    }
}

/// Re-estimates every bounty with quality settings that has something new.
pub async fn run_once(state: &AppState) -> Result<RunReport> {
    let ids: Vec<i64> = settings::Entity::find()
        .select_only()
        .column(settings::Column::ProjectId)
        .into_tuple()
        .all(&state.db.conn)
        .await?;
    let mut report = RunReport::default();
    for id in ids {
        report.add(run_project(state, id).await?);
    }
    Ok(report)
}

async fn ensure_state(conn: &impl ConnectionTrait, project_id: i64) -> Result<qstate::Model> {
    if let Some(s) = qstate::Entity::find_by_id(project_id).one(conn).await? {
        return Ok(s);
    }
    qstate::Entity::insert(qstate::ActiveModel {
        project_id: Set(project_id),
        priors: Set("[]".into()),
        alpha: Set(None),
        estimations: Set(0),
        last_answer_id: Set(0),
        revised_items: Set(0),
        pairs: Set("[]".into()),
        leased_until: Set(0),
        estimated_at: Set(None),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(conn)
    .await?;
    qstate::Entity::find_by_id(project_id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("quality state row vanished")))
}

async fn pending_gold(conn: &impl ConnectionTrait, project_id: i64) -> Result<u64> {
    let ids: Vec<i64> = gold::all(conn, project_id)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::Status.eq("pending"))
        .filter(answer::Column::ItemId.is_in(ids))
        .count(conn)
        .await?)
}

async fn run_project(state: &AppState, project_id: i64) -> Result<RunReport> {
    let conn = &state.db.conn;
    let st = ensure_state(conn, project_id).await?;
    let mut st = st;
    let newest = loop {
        let newest: Option<i64> = answer::Entity::find()
            .select_only()
            .column_as(Expr::col(answer::Column::Id).max(), "m")
            .filter(answer::Column::ProjectId.eq(project_id))
            .into_tuple()
            .one(conn)
            .await?
            .flatten();
        let newest = newest.unwrap_or(0);
        if newest <= st.last_answer_id && pending_gold(conn, project_id).await? == 0 {
            return Ok(RunReport::default());
        }
        // Take the lease in its own transaction, so other runners see it.
        let now = now_ms();
        let tx = state.db.write().await?;
        let taken = qstate::Entity::update_many()
            .col_expr(qstate::Column::LeasedUntil, Expr::value(now + LEASE_MS))
            .filter(qstate::Column::ProjectId.eq(project_id))
            .filter(qstate::Column::LeasedUntil.lt(now))
            .exec(&*tx)
            .await?;
        tx.commit().await?;
        if taken.rows_affected == 1 {
            break newest;
        }
        // Another runner holds the bounty: wait for it, then see whether
        // anything is left (a caller of run_once never returns while a
        // concurrent run is half done).
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        st = ensure_state(conn, project_id).await?;
    };
    let result = estimate(state, project_id, newest).await;
    let tx = state.db.write().await?;
    qstate::Entity::update_many()
        .col_expr(qstate::Column::LeasedUntil, Expr::value(0))
        .filter(qstate::Column::ProjectId.eq(project_id))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    let (report, reload) = result?;
    if reload {
        super::refresh_queue(state, project_id).await;
    }
    Ok(report)
}

/// One estimation of one bounty.
///
/// The fit reads without a transaction; what follows writes in small
/// transactions whose lock order is the submit path's (a contributor's
/// standing, then items, then answers, then ledger accounts), so a
/// re-estimation never deadlocks with contributors answering on
/// PostgreSQL: the standings first, each suspension on its own, the gold
/// decisions, then each item the new model settles on its own. Every step
/// is idempotent; if one fails, the next run redoes what is left.
async fn estimate(state: &AppState, project_id: i64, newest: i64) -> Result<(RunReport, bool)> {
    let conn = &state.db.conn;
    let p = projects::get(conn, project_id).await?;
    let Some(s) = super::settings(conn, project_id).await? else {
        return Ok((RunReport::default(), false));
    };
    let now = now_ms();
    let discarded: HashSet<i64> = discard::Entity::find()
        .select_only()
        .column(discard::Column::AnswerId)
        .filter(discard::Column::ProjectId.eq(project_id))
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    let rows: Vec<answer::Model> = answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::Id.lte(newest))
        .all(conn)
        .await?
        .into_iter()
        .filter(|a| !discarded.contains(&a.id))
        .collect();
    let golds = gold::all(conn, project_id).await?;
    let fit = match shape(&p) {
        Shape::PerClass => fit_sets(&p, &rows, &golds)?,
        _ => fit_categorical(&p, &rows, &golds)?,
    };
    let cfg = SignalConfig::default();

    let mut report = RunReport {
        estimated: 1,
        ..RunReport::default()
    };
    let mut reload = false;

    // Each contributor's model, evidence and signals: standings only.
    let mut strong: Vec<(i64, String)> = Vec::new();
    let tx = state.db.write().await?;
    for (w, &user) in fit.users.iter().enumerate() {
        let r = standing(&*tx, project_id, user).await?;
        let mut notes: Vec<String> = fit.class_notes[w].iter().cloned().collect();
        let speed = signals::speed_counts(
            std::cmp::max(r.answers_fast, 0) as u32,
            std::cmp::max(r.answers_timed, 0) as u32,
            s.speed_floor_ms,
            &cfg,
        );
        if speed.flagged {
            notes.push(format!(
                "too fast: {} of {} answers in under {} ms",
                speed.fast, speed.total, s.speed_floor_ms
            ));
        }
        notes.extend(fit.pair_notes[w].iter().cloned());
        if let Some(why) = notes
            .iter()
            .find(|n| n.starts_with("too fast") || n.starts_with("collusion"))
        {
            strong.push((user, why.clone()));
        }
        contributor::Entity::update_many()
            .col_expr(
                contributor::Column::Confusion,
                Expr::value(fit.confusion[w].to_string()),
            )
            .col_expr(
                contributor::Column::EmAccuracy,
                Expr::value(fit.accuracy[w]),
            )
            .col_expr(
                contributor::Column::PeerAgreement,
                Expr::value(fit.peer[w].agreement),
            )
            .col_expr(
                contributor::Column::PeerAnswers,
                Expr::value(fit.peer[w].answers as i32),
            )
            .col_expr(
                contributor::Column::Signals,
                Expr::value(json!(notes).to_string()),
            )
            .col_expr(contributor::Column::UpdatedAt, Expr::value(now))
            .filter(contributor::Column::Id.eq(r.id))
            .exec(&*tx)
            .await?;
    }
    tx.commit().await?;

    // The rule on gold and checked answers, then the strong signals: one
    // transaction per contributor.
    for &user in &fit.users {
        let tx = state.db.write().await?;
        let r = standing(&*tx, project_id, user).await?;
        if r.suspended_at.is_some() {
            continue;
        }
        reload |= refresh_accuracy(&*tx, &p, &s, &r, now).await?;
        let mut out = standing(&*tx, project_id, user)
            .await?
            .suspended_at
            .is_some();
        if !out && let Some((_, why)) = strong.iter().find(|(u, _)| *u == user) {
            reload |= suspend(&*tx, &p, user, why, now).await?;
            out = true;
        }
        tx.commit().await?;
        if out {
            report.suspended += 1;
        }
    }

    // Gold answers waiting for their decision: paid when right.
    let tx = state.db.write().await?;
    for a in rows.iter().filter(|a| a.status == "pending") {
        let Some(g) = golds.iter().find(|(i, _)| *i == a.item_id).map(|(_, v)| v) else {
            continue;
        };
        let given: Value = serde_json::from_str(&a.payload).unwrap_or(Value::Null);
        let right = gold_paid(&p, &given, g);
        let (status, paid) = if right {
            ("accepted", p.row.reward)
        } else {
            ("rejected", 0)
        };
        let res = answer::Entity::update_many()
            .col_expr(answer::Column::Status, Expr::value(status))
            .col_expr(answer::Column::Paid, Expr::value(paid))
            .col_expr(answer::Column::DecidedAt, Expr::value(now))
            .filter(answer::Column::Id.eq(a.id))
            .filter(answer::Column::Status.eq("pending"))
            .exec(&*tx)
            .await?;
        if res.rows_affected != 1 {
            continue;
        }
        if right {
            ledger::post(
                &*tx,
                "pay_answers",
                json!({ "project_id": project_id, "item_id": a.item_id, "answer_ids": [a.id] }),
                Some(format!("gold:{}", a.id)),
                &[
                    (AccountRef::Escrow(project_id), Micros(-p.row.reward)),
                    (AccountRef::User(a.user_id), Micros(p.row.reward)),
                ],
            )
            .await?;
        }
        report.gold_decided += 1;
    }
    tx.commit().await?;

    // Open items the new model settles already, each on its own.
    let open: Vec<i64> = item::Entity::find()
        .select_only()
        .column(item::Column::Id)
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        .filter(item::Column::AnswersCount.gt(0))
        .into_tuple()
        .all(conn)
        .await?;
    for id in open {
        let tx = state.db.write().await?;
        let outcome = resolve::resolve_early(&*tx, &p, id).await?;
        tx.commit().await?;
        if outcome == Outcome::Closed {
            report.resolved += 1;
            reload = true;
        }
    }

    // Decided items the model would now label otherwise (decisions stand).
    let resolved = item::Entity::find()
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("resolved"))
        .all(conn)
        .await?;
    let gold_items: HashSet<i64> = golds.iter().map(|(i, _)| *i).collect();
    let mut revised = 0;
    for it in resolved {
        let decided = it
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .map(|r| r["answer"].clone());
        if let (Some(d), Some(now_label)) = (decided, fit.labels.get(&it.id))
            && d != *now_label
            && !gold_items.contains(&it.id)
        {
            revised += 1;
        }
    }

    let tx = state.db.write().await?;
    let st = ensure_state(&*tx, project_id).await?;
    let estimations = st.estimations + 1;
    let mut st: qstate::ActiveModel = st.into();
    st.priors = Set(fit.priors.to_string());
    st.alpha = Set(fit.alpha);
    st.estimations = Set(estimations);
    st.last_answer_id = Set(newest);
    st.revised_items = Set(revised);
    st.pairs = Set(json!(fit.flagged).to_string());
    st.estimated_at = Set(Some(now));
    st.update(&*tx).await?;
    let completed = projects::complete_if_done(&*tx, project_id).await?;
    tx.commit().await?;
    if completed {
        crate::queue::forget(&*state.queue, project_id).await;
    }
    Ok((report, reload))
}

/// Calls [`run_once`] until it reports nothing done (at most `max`
/// rounds), for tests and tools.
pub async fn run_until_idle(state: &AppState, max: usize) -> Result<RunReport> {
    let mut total = RunReport::default();
    for _ in 0..max {
        let r = run_once(state).await?;
        if r.is_idle() {
            break;
        }
        total.add(r);
    }
    Ok(total)
}

/// What one estimation says about a bounty, whatever EM modelled.
struct Fit {
    /// The contributors, in the fit's worker order; the vectors below
    /// follow it.
    users: Vec<i64>,
    /// Each contributor's confusion matrices as stored: `[true][given]`
    /// flat, one after the other per class on a multi-label bounty.
    confusion: Vec<Value>,
    accuracy: Vec<f64>,
    peer: Vec<PeerEvidence>,
    /// The one-class signal, when it fired.
    class_notes: Vec<Option<String>>,
    /// The collusion signal, one note per flagged partner.
    pair_notes: Vec<Vec<String>>,
    flagged: Vec<(i64, i64)>,
    /// The class priors as stored (`[class][absent, present]` flat on a
    /// multi-label bounty).
    priors: Value,
    alpha: Option<f64>,
    /// The result's `answer` the fit gives each item it saw.
    labels: HashMap<i64, Value>,
}

fn fit_error(p: &projects::Project, e: String) -> Error {
    Error::Unexpected(anyhow::anyhow!("estimating bounty {}: {e}", p.row.id))
}

/// Classification and pairwise: one Dawid-Skene over the categories.
fn fit_categorical(
    p: &projects::Project,
    rows: &[answer::Model],
    golds: &[(i64, Value)],
) -> Result<Fit> {
    let names = classes(p);
    let gold_class: HashMap<i64, u16> = golds
        .iter()
        .filter_map(|(i, v)| class_of(p, v).map(|c| (*i, c)))
        .collect();
    let answers = rows.iter().filter_map(|a| {
        let v: Value = serde_json::from_str(&a.payload).ok()?;
        class_of(p, &v).map(|c| (a.item_id, a.user_id, c))
    });
    let fitted = engine::aggregate::fit(
        names.len(),
        answers,
        gold_class.iter().map(|(i, c)| (*i, *c)),
        &em_config(),
    )
    .map_err(|e| fit_error(p, e))?;
    let est = &fitted.estimate;
    let model = &est.model;
    let cfg = SignalConfig::default();
    let bias = signals::class_bias(&fitted.data, &cfg);
    let pairs = signals::collusion(&fitted.data, est, &cfg);
    let user_of = |w: u32| *fitted.workers.key(w);
    let workers = fitted.workers.len();
    let class_notes = bias
        .iter()
        .map(|b| {
            b.flagged.then(|| {
                format!(
                    "one class: chose {:?} in {:.0}% of {} answers where the others chose it {:.0}% of the time",
                    names[b.class as usize],
                    b.share * 100.0,
                    b.answers,
                    b.crowd_share * 100.0
                )
            })
        })
        .collect();
    let pair_notes = (0..workers as u32)
        .map(|w| {
            pairs
                .iter()
                .filter(|x| x.flagged && (x.a == w || x.b == w))
                .map(|pair| {
                    let other = if pair.a == w { pair.b } else { pair.a };
                    format!(
                        "collusion: agrees with contributor {} on {} of {} contested items, where independent contributors would agree on {:.1}",
                        user_of(other),
                        pair.agreed,
                        pair.shared,
                        pair.expected
                    )
                })
                .collect()
        })
        .collect();
    Ok(Fit {
        users: fitted.workers.keys().to_vec(),
        confusion: (0..workers).map(|w| json!(model.confusion(w))).collect(),
        accuracy: (0..workers).map(|w| model.accuracy(w)).collect(),
        peer: engine::reliability::peer_evidence(&fitted.data, est, &fitted.gold),
        class_notes,
        pair_notes,
        flagged: pairs
            .iter()
            .filter(|x| x.flagged)
            .map(|x| (user_of(x.a), user_of(x.b)))
            .collect(),
        priors: json!(model.priors()),
        alpha: engine::agreement::dataset_alpha(&fitted.data),
        labels: fitted
            .items
            .keys()
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, json!({ "label": names[est.label(i).0 as usize] })))
            .collect(),
    })
}

/// Multi-label: one binary Dawid-Skene per class. The one-class and
/// collusion signals are not computed (they compare categorical
/// answers); speed and the suspension rule apply as everywhere.
fn fit_sets(p: &projects::Project, rows: &[answer::Model], golds: &[(i64, Value)]) -> Result<Fit> {
    let k = classes(p).len();
    let answers = rows.iter().filter_map(|a| {
        let v: Value = serde_json::from_str(&a.payload).ok()?;
        set_of(p, &v).map(|set| (a.item_id, a.user_id, set))
    });
    let fitted = engine::aggregate::fit_sets(
        k,
        answers,
        golds
            .iter()
            .filter_map(|(i, v)| set_of(p, v).map(|set| (*i, set))),
        &em_config(),
    )
    .map_err(|e| fit_error(p, e))?;
    let est = &fitted.estimate;
    let workers = fitted.workers.len();
    let alphas: Vec<f64> = est
        .data
        .iter()
        .filter_map(engine::agreement::dataset_alpha)
        .collect();
    Ok(Fit {
        users: fitted.workers.keys().to_vec(),
        confusion: (0..workers)
            .map(|w| {
                let flat: Vec<f64> = est
                    .per_class
                    .iter()
                    .flat_map(|e| e.model.confusion(w).iter().copied())
                    .collect();
                json!(flat)
            })
            .collect(),
        accuracy: (0..workers).map(|w| est.accuracy(w)).collect(),
        peer: est.peer_evidence(),
        class_notes: vec![None; workers],
        pair_notes: vec![Vec::new(); workers],
        flagged: Vec::new(),
        priors: json!(
            est.per_class
                .iter()
                .flat_map(|e| e.model.priors().iter().copied())
                .collect::<Vec<f64>>()
        ),
        alpha: (!alphas.is_empty()).then(|| alphas.iter().sum::<f64>() / alphas.len() as f64),
        labels: fitted
            .items
            .keys()
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, super::set_answer(p, &est.labels(i).0)))
            .collect(),
    })
}
