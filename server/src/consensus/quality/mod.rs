//! The quality engine inside the server: gold questions, EM decisions
//! with dynamic overlap, contributor reliability and suspension,
//! qualification exams, and the background re-estimation.
//!
//! The statistics are `sahel_quality` (re-exported as [`engine`]), the
//! same pure code `sahel aggregate` runs; this module stores their inputs
//! and outputs and applies their verdicts inside database transactions.
//!
//! A bounty opts in by having quality settings (`quality_settings`, set on
//! a draft). Without them it keeps the spine's plurality vote, untouched.
//! With them:
//!
//! - **Decisions** ([`decide`]): at each answer, the item's posterior under
//!   the stored model (per-contributor confusion matrices from the last
//!   estimation, or a gold-based guess for newcomers). It resolves when
//!   the best class reaches the target with at least `min_answers`, when
//!   one class has `overlap` agreeing answers, or at `max_answers`;
//!   otherwise it asks for one more answer. Answers agreeing with the
//!   decided class are paid at once, and never taken back. A multi-label
//!   bounty is decided per class ([`decide_sets`]): one binary EM per
//!   class, the set of classes above 0.5, paid by agreement with it.
//! - **Gold** ([`gold`]): mixed into each contributor's tasks at one in
//!   `gold_every`, as ordinary tasks; gold answers update the
//!   contributor's record in the same transaction and are decided (paid
//!   when right) by the background run, like any pending answer.
//! - **Suspension** ([`suspend`]): when the Beta lower bound of a
//!   contributor's accuracy falls under the threshold (or a strong signal
//!   fires), they get no more tasks, their answers on open items stop
//!   counting, and those items go back to the queue for others.
//! - **Re-estimation** ([`run::run_once`]): EM over all counted answers,
//!   refreshing the model, the reliabilities, the signals, and deciding
//!   what the new model settles.

pub mod entity;
pub mod gold;
pub mod report;
pub mod run;

pub use sahel_quality as engine;

use sahel_protocol::Micros;
use sahel_protocol::api::{self, ProjectStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};

use crate::accounts::AuthUser;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::projects::entity::item;
use crate::projects::{self, Project};
use crate::queue::entity::answer;
use crate::state::AppState;
use engine::em::{EmConfig, Model, argmax};
use engine::multi_label::{self, MultiModel};
use engine::reliability::{GoldRecord, PeerEvidence, SuspensionRule};
use entity::{contributor, discard, settings};

use super::{ACCEPT_AGREEMENT, Decision};

pub const DEFAULT_GOLD_EVERY: u32 = 10;
pub const DEFAULT_TARGET: f64 = 0.95;
pub const DEFAULT_EXAM_PASS: f64 = 0.8;

/// What a bounty with quality settings says about payment.
pub const PAYMENT_RULE: &str = "An item is decided when its best class reaches the target confidence with at least the minimum answers, when one class has `overlap` agreeing answers, or at the maximum; the answers agreeing with the decision are paid the reward at that moment, once, and never taken back by later re-estimation. Gold answers are paid the reward when right, from the budget above overlap x items x reward.";

/// The same for a multi-label bounty ([`decide_sets`]).
pub const PAYMENT_RULE_SETS: &str = "Each class is decided on its own (present when its posterior is above 0.5); an item is decided when every class is at least as sure as the target confidence with at least the minimum answers, when `overlap` answers agree with the decided set, or at the maximum. Answers agreeing with the decided set (Jaccard at least 0.5, as without the engine) are paid the reward at that moment, at most `overlap` of them, once, and never taken back by later re-estimation. Gold answers are paid by the same agreement with the known set, from the budget above overlap x items x reward.";

/// What a bounty's EM models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One category per answer: classification, pairwise.
    Categorical,
    /// Any subset of the classes (multi-label): one binary EM per class
    /// ([`engine::multi_label`]).
    PerClass,
    /// Types the engine does not model.
    Unsupported,
}

pub fn shape(p: &Project) -> Shape {
    if !p.schema.classes().is_empty() {
        Shape::Categorical
    } else if !p.schema.set_classes().is_empty() {
        Shape::PerClass
    } else {
        Shape::Unsupported
    }
}

/// The classes EM models: a classification's classes, a pairwise
/// bounty's choices, a multi-label bounty's classes. Empty for the other
/// types, which the engine refuses.
pub fn classes(p: &Project) -> &[String] {
    match shape(p) {
        Shape::Categorical => p.schema.classes(),
        Shape::PerClass => p.schema.set_classes(),
        Shape::Unsupported => &[],
    }
}

/// How many categories one judgement of a contributor chooses among:
/// the classes, or present/absent when each class is judged on its own.
/// Chance, the suspension rule's default threshold and the target's
/// floor follow from it.
pub fn judged_categories(p: &Project) -> usize {
    match shape(p) {
        Shape::PerClass => 2,
        _ => classes(p).len(),
    }
}

/// The class indices of a normalized multi-label answer, in class order.
pub fn set_of(p: &Project, answer: &Value) -> Option<Vec<u16>> {
    let picked = p.schema.label_set(answer)?;
    Some(
        classes(p)
            .iter()
            .enumerate()
            .filter(|(_, c)| picked.contains(c))
            .map(|(i, _)| i as u16)
            .collect(),
    )
}

/// A multi-label result in canonical form: the classes of `set`, sorted
/// by name as answers are.
pub fn set_answer(p: &Project, set: &[u16]) -> Value {
    let mut names: Vec<&str> = set
        .iter()
        .filter_map(|&c| classes(p).get(c as usize))
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    json!({ "labels": names })
}

/// A gold answer scored for the contributor's record, as `(right, of)`:
/// one judgement for a categorical answer, one per class for a
/// multi-label one (each class right when the answer and the gold agree
/// on its presence).
pub fn gold_score(p: &Project, given: &Value, gold: &Value) -> (i32, i32) {
    match (shape(p), set_of(p, given), set_of(p, gold)) {
        (Shape::PerClass, Some(a), Some(g)) => {
            let k = classes(p).len() as u16;
            let right = (0..k).filter(|c| a.contains(c) == g.contains(c)).count();
            (right as i32, k as i32)
        }
        (Shape::PerClass, _, _) => (0, classes(p).len() as i32),
        _ => (i32::from(same_answer(given, gold)), 1),
    }
}

/// Whether a gold answer is paid: right, for a categorical answer; for a
/// multi-label one, the rule of real items (agreement with the known set
/// of at least [`ACCEPT_AGREEMENT`]).
pub fn gold_paid(p: &Project, given: &Value, gold: &Value) -> bool {
    match shape(p) {
        Shape::PerClass => {
            given.get("labels").is_some() && p.schema.agreement(given, gold) >= ACCEPT_AGREEMENT
        }
        _ => given.get("label").is_some() && given.get("label") == gold.get("label"),
    }
}

/// The class index of a normalized answer.
pub fn class_of(p: &Project, answer: &Value) -> Option<u16> {
    let key = p.schema.vote_key(answer)?;
    classes(p).iter().position(|c| *c == key).map(|i| i as u16)
}

pub async fn settings(
    conn: &impl ConnectionTrait,
    project_id: i64,
) -> Result<Option<settings::Model>> {
    Ok(settings::Entity::find_by_id(project_id).one(conn).await?)
}

/// Funded bounties' quality settings (or their absence), by project. They
/// are fixed once a bounty is funded ([`set_settings`] refuses after) and
/// every lease and answer needs them, so they are read once per process.
#[derive(Default)]
pub struct SettingsCache(
    std::sync::Mutex<std::collections::HashMap<i64, Option<std::sync::Arc<settings::Model>>>>,
);

impl SettingsCache {
    /// The settings of `p`, a project read no earlier than its funding
    /// when it is not a draft: a draft's may still change, so they are
    /// read afresh.
    pub async fn of(
        &self,
        conn: &impl ConnectionTrait,
        p: &Project,
    ) -> Result<Option<std::sync::Arc<settings::Model>>> {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = lock().get(&p.row.id) {
            return Ok(s.clone());
        }
        let s = settings(conn, p.row.id).await?.map(std::sync::Arc::new);
        if p.status() != ProjectStatus::Draft {
            lock().insert(p.row.id, s.clone());
        }
        Ok(s)
    }
}

/// The suspension rule of a bounty: the engine's default for its classes,
/// with the bounty's threshold and minimum.
pub fn rule(p: &Project, s: &settings::Model) -> SuspensionRule {
    SuspensionRule {
        threshold: s.accuracy_threshold,
        min_gold: s.min_gold as u32,
        ..SuspensionRule::for_classes(judged_categories(p))
    }
}

/// The settings in effect, for the API.
pub fn view(p: &Project, s: Option<&settings::Model>) -> api::QualitySettings {
    let overlap = p.row.overlap as u32;
    match s {
        Some(s) => api::QualitySettings {
            project_id: p.row.id,
            aggregation: "em".into(),
            gold_every: s.gold_every as u32,
            target_confidence: s.target_confidence,
            min_answers: s.min_answers as u32,
            max_answers: p.row.max_answers as u32,
            accuracy_threshold: s.accuracy_threshold,
            min_gold: s.min_gold as u32,
            exam_size: s.exam_size as u32,
            exam_pass_mark: s.exam_pass_mark,
            speed_floor_ms: s.speed_floor_ms as u64,
            gold_feedback: s.gold_feedback,
            payment_rule: if shape(p) == Shape::PerClass {
                PAYMENT_RULE_SETS
            } else {
                PAYMENT_RULE
            }
            .into(),
        },
        None => api::QualitySettings {
            project_id: p.row.id,
            aggregation: "vote".into(),
            gold_every: 0,
            target_confidence: 0.0,
            min_answers: overlap,
            max_answers: p.row.max_answers as u32,
            accuracy_threshold: 0.0,
            min_gold: 0,
            exam_size: 0,
            exam_pass_mark: 0.0,
            speed_floor_ms: 0,
            gold_feedback: false,
            payment_rule: "Plurality vote: a unique top answer wins once `overlap` answers are in; a tie asks for one more, up to the maximum; the agreeing answers are paid.".into(),
        },
    }
}

/// Sets a draft bounty's quality settings (switching it to the engine).
pub async fn put_settings(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    req: api::QualitySettingsRequest,
) -> Result<api::QualitySettings> {
    let tx = db.write().await?;
    let p = projects::get_owned(&*tx, owner, project_id).await?;
    if p.status() != ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "quality settings are fixed once the bounty is funded",
        ));
    }
    if shape(&p) == Shape::Unsupported {
        return Err(Error::invalid(
            "quality-not-supported",
            format!(
                "the quality engine (gold, EM) models categorical answers: classification, pairwise and multi-label (each class) bounties; {} bounties are decided by {}",
                p.schema.task_type().as_str(),
                if p.schema.is_reviewed() {
                    "review"
                } else {
                    "merging the answers"
                }
            ),
        ));
    }
    let k = judged_categories(&p);
    let chance = 1.0 / k as f64;
    let gold_every = req.gold_every.unwrap_or(DEFAULT_GOLD_EVERY);
    if gold_every == 1 || gold_every > 1000 {
        return Err(Error::invalid(
            "invalid-quality-settings",
            "gold_every is 0 (no gold) or 2 to 1000",
        ));
    }
    let target = req.target_confidence.unwrap_or(DEFAULT_TARGET);
    if !(target > chance && target < 1.0) {
        return Err(Error::invalid(
            "invalid-quality-settings",
            format!("target_confidence must be above chance ({chance:.3}) and below 1"),
        ));
    }
    let overlap = p.row.overlap as u32;
    let min_answers = req.min_answers.unwrap_or(overlap);
    if !(1..=overlap).contains(&min_answers) {
        return Err(Error::invalid(
            "invalid-quality-settings",
            format!("min_answers must be 1 to the overlap ({overlap})"),
        ));
    }
    let default_rule = SuspensionRule::for_classes(k);
    let threshold = req.accuracy_threshold.unwrap_or(default_rule.threshold);
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(Error::invalid(
            "invalid-quality-settings",
            "accuracy_threshold must be between 0 and 1",
        ));
    }
    let min_gold = req.min_gold.unwrap_or(default_rule.min_gold);
    let exam_size = req.exam_size.unwrap_or(0);
    let pass = req.exam_pass_mark.unwrap_or(DEFAULT_EXAM_PASS);
    let floor = req.speed_floor_ms.unwrap_or(0);
    if !(1..=1000).contains(&min_gold)
        || exam_size > 100
        || !(pass > 0.0 && pass <= 1.0)
        || floor > 3_600_000
    {
        return Err(Error::invalid(
            "invalid-quality-settings",
            "min_gold is 1 to 1000, exam_size at most 100, exam_pass_mark in (0, 1], speed_floor_ms at most an hour",
        ));
    }
    let row = settings::ActiveModel {
        project_id: Set(project_id),
        gold_every: Set(gold_every as i32),
        target_confidence: Set(target),
        min_answers: Set(min_answers as i32),
        accuracy_threshold: Set(threshold),
        min_gold: Set(min_gold as i32),
        exam_size: Set(exam_size as i32),
        exam_pass_mark: Set(pass),
        speed_floor_ms: Set(floor as i64),
        created_at: Set(now_ms()),
        gold_feedback: Set(req.gold_feedback.unwrap_or(false)),
    };
    settings::Entity::delete_by_id(project_id)
        .exec(&*tx)
        .await?;
    settings::Entity::insert(row).exec(&*tx).await?;
    // Items imported already wait for the minimum, not the overlap.
    item::Entity::update_many()
        .col_expr(item::Column::Needed, Expr::value(min_answers as i32))
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("open"))
        .exec(&*tx)
        .await?;
    let s = settings(&*tx, project_id).await?;
    tx.commit().await?;
    Ok(view(&p, s.as_ref()))
}

/// How many answers a newly imported item waits for.
pub async fn initial_needed(conn: &impl ConnectionTrait, p: &Project) -> Result<i32> {
    Ok(match settings(conn, p.row.id).await? {
        Some(s) => s.min_answers,
        None => p.row.overlap,
    })
}

/// Gold answers a bounty can pay: its budget above overlap x items x
/// reward, in rewards.
pub fn gold_allowance(p: &Project) -> i64 {
    let base = p.full_cost(p.row.item_count).map_or(i64::MAX, |m| m.0);
    std::cmp::max(p.row.budget.saturating_sub(base), 0) / std::cmp::max(p.row.reward, 1)
}

/// What funding must add to overlap x items x reward so that gold answers
/// at one in `gold_every` can be paid: a reward per expected gold answer.
pub async fn gold_reserve(conn: &impl ConnectionTrait, p: &Project) -> Result<Micros> {
    let Some(s) = settings(conn, p.row.id).await? else {
        return Ok(Micros::ZERO);
    };
    if s.gold_every < 2 || gold::count(conn, p.row.id).await? == 0 {
        return Ok(Micros::ZERO);
    }
    let real_answers = p.row.overlap as i64 * p.row.item_count;
    let every = s.gold_every as i64 - 1;
    let gold_answers = (real_answers + every - 1) / every;
    Ok(Micros(p.row.reward.saturating_mul(gold_answers)))
}

/// The EM settings the server decides with (the engine's defaults).
pub fn em_config() -> EmConfig {
    EmConfig::default()
}

/// A model for the contributors `users` on bounty `p`: their confusion
/// matrices from the last estimation or, for those it has not seen yet,
/// a symmetric guess from their gold record (the prior's accuracy when
/// they have none).
async fn model_for(conn: &impl ConnectionTrait, p: &Project, users: &[i64]) -> Result<Model> {
    let k = classes(p).len();
    let cfg = em_config();
    let priors = match entity::state::Entity::find_by_id(p.row.id)
        .one(conn)
        .await?
    {
        Some(st) => serde_json::from_str::<Vec<f64>>(&st.priors)
            .ok()
            .filter(|v| v.len() == k && v.iter().all(|x| *x > 0.0)),
        None => None,
    }
    .unwrap_or_else(|| vec![1.0 / k as f64; k]);
    let rows = contributor::Entity::find()
        .filter(contributor::Column::ProjectId.eq(p.row.id))
        .filter(contributor::Column::UserId.is_in(users.to_vec()))
        .all(conn)
        .await?;
    let mut confusion = Vec::with_capacity(users.len() * k * k);
    for u in users {
        let row = rows.iter().find(|r| r.user_id == *u);
        let stored = row
            .and_then(|r| r.confusion.as_deref())
            .and_then(|c| serde_json::from_str::<Vec<f64>>(c).ok())
            .filter(|m| m.len() == k * k);
        match stored {
            Some(m) => confusion.extend(m),
            None => {
                let acc = newcomer_accuracy(row, &cfg);
                for t in 0..k {
                    for l in 0..k {
                        confusion.push(if t == l {
                            acc
                        } else {
                            (1.0 - acc) / (k - 1) as f64
                        });
                    }
                }
            }
        }
    }
    Ok(Model::from_parts(priors, confusion, &cfg))
}

/// The accuracy a contributor not yet estimated is given: their gold
/// record on top of the EM prior (the prior's accuracy when they have
/// none).
fn newcomer_accuracy(row: Option<&contributor::Model>, cfg: &EmConfig) -> f64 {
    let (c, n) = row.map_or((0, 0), |r| (r.gold_correct, r.gold_total));
    let acc =
        (cfg.prior_strength * cfg.prior_accuracy + c as f64) / (cfg.prior_strength + n as f64);
    acc.clamp(0.01, 0.99)
}

/// [`model_for`] for a multi-label bounty: per class, the stored priors
/// (`[class][absent, present]`) and each contributor's 2x2 matrix
/// (`[class][true][given]`, stored flat), or the newcomer's guess.
async fn model_for_sets(
    conn: &impl ConnectionTrait,
    p: &Project,
    users: &[i64],
) -> Result<MultiModel> {
    let k = classes(p).len();
    let cfg = em_config();
    let priors = match entity::state::Entity::find_by_id(p.row.id)
        .one(conn)
        .await?
    {
        Some(st) => serde_json::from_str::<Vec<f64>>(&st.priors)
            .ok()
            .filter(|v| v.len() == 2 * k && v.iter().all(|x| *x > 0.0)),
        None => None,
    }
    .unwrap_or_else(|| vec![0.5; 2 * k]);
    let rows = contributor::Entity::find()
        .filter(contributor::Column::ProjectId.eq(p.row.id))
        .filter(contributor::Column::UserId.is_in(users.to_vec()))
        .all(conn)
        .await?;
    let matrices: Vec<Vec<f64>> = users
        .iter()
        .map(|u| {
            let row = rows.iter().find(|r| r.user_id == *u);
            row.and_then(|r| r.confusion.as_deref())
                .and_then(|c| serde_json::from_str::<Vec<f64>>(c).ok())
                .filter(|m| m.len() == 4 * k)
                .unwrap_or_else(|| {
                    let acc = newcomer_accuracy(row, &cfg);
                    [acc, 1.0 - acc, 1.0 - acc, acc].repeat(k)
                })
        })
        .collect();
    let per_class = (0..k)
        .map(|c| {
            let confusion = matrices
                .iter()
                .flat_map(|m| m[4 * c..4 * c + 4].iter().copied())
                .collect();
            Model::from_parts(priors[2 * c..2 * c + 2].to_vec(), confusion, &cfg)
        })
        .collect();
    Ok(MultiModel { per_class })
}

/// The engine's decision on a multi-label item's counted answers: each
/// class's posterior under the stored per-class models, the set of the
/// classes above 0.5, its confidence the least sure class's.
///
/// Payment follows the multi-label rule without the engine: an answer is
/// accepted when its agreement (Jaccard) with the decided set reaches
/// [`ACCEPT_AGREEMENT`], the best agreeing first, then the earliest, at
/// most `overlap` of them. An exact-match rule (the literal analogue of a
/// classification's "same class") would pay an honest contributor who is
/// right on 90% of each of 4 classes only two times in three, and pay
/// differently from the same bounty without the engine. The item also
/// resolves once `overlap` answers agree with the decided set, the
/// analogue of a class with `overlap` votes, so it asks for no answer it
/// could not pay.
async fn decide_sets(
    conn: &impl ConnectionTrait,
    p: &Project,
    s: &settings::Model,
    rows: &[answer::Model],
) -> Result<Decision> {
    let n = rows.len();
    let answers: Vec<Value> = rows
        .iter()
        .map(|a| serde_json::from_str(&a.payload).unwrap_or(Value::Null))
        .collect();
    let sets: Vec<Option<Vec<u16>>> = answers.iter().map(|v| set_of(p, v)).collect();
    let users: Vec<i64> = rows.iter().map(|a| a.user_id).collect();
    let model = model_for_sets(conn, p, &users).await?;
    let votes: Vec<(u32, &[u16])> = sets
        .iter()
        .enumerate()
        .filter_map(|(j, set)| set.as_deref().map(|set| (j as u32, set)))
        .collect();
    let (set, confidence) = multi_label::decide(&model.present(&votes));
    let result = set_answer(p, &set);
    let mut scored: Vec<(f64, i64)> = answers
        .iter()
        .zip(rows)
        .map(|(v, a)| {
            let agree = if v.get("labels").is_some() {
                p.schema.agreement(v, &result)
            } else {
                0.0
            };
            (agree, a.id)
        })
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let overlap = p.row.overlap as usize;
    let agreeing = scored
        .iter()
        .filter(|(a, _)| *a >= ACCEPT_AGREEMENT)
        .count();
    let settled = agreeing >= overlap
        || (n >= s.min_answers as usize && confidence >= s.target_confidence)
        || n >= p.row.max_answers as usize;
    if !settled {
        return Ok(Decision::NeedMore {
            needed: n as u32 + 1,
        });
    }
    let accepted: Vec<i64> = scored
        .iter()
        .filter(|(a, _)| *a >= ACCEPT_AGREEMENT)
        .take(overlap)
        .map(|(_, id)| *id)
        .collect();
    let rejected = rows
        .iter()
        .map(|a| a.id)
        .filter(|id| !accepted.contains(id))
        .collect();
    Ok(Decision::Resolved {
        result,
        agreement: scored.iter().map(|(a, _)| a).sum::<f64>() / n as f64,
        accepted,
        rejected,
        confidence: Some(confidence),
    })
}

/// The engine's decision on an item's counted answers (`rows`, pending
/// and not discarded). See the module doc for the rule. Every answer that
/// agrees with the decided class is accepted; at most `overlap` can,
/// because the item resolves as soon as one class has that many.
pub async fn decide(
    conn: &impl ConnectionTrait,
    p: &Project,
    s: &settings::Model,
    rows: &[answer::Model],
) -> Result<Decision> {
    let n = rows.len();
    if n == 0 {
        return Ok(Decision::NeedMore { needed: 1 });
    }
    if shape(p) == Shape::PerClass {
        return decide_sets(conn, p, s, rows).await;
    }
    let names = classes(p);
    let labels: Vec<Option<u16>> = rows
        .iter()
        .map(|a| {
            serde_json::from_str::<Value>(&a.payload)
                .ok()
                .and_then(|v| class_of(p, &v))
        })
        .collect();
    let users: Vec<i64> = rows.iter().map(|a| a.user_id).collect();
    let model = model_for(conn, p, &users).await?;
    let votes: Vec<(u32, u16)> = labels
        .iter()
        .enumerate()
        .filter_map(|(j, l)| l.map(|l| (j as u32, l)))
        .collect();
    let mut post = vec![0.0; names.len()];
    model.posterior(&votes, &mut post);
    let (best, confidence) = argmax(&post);
    let mut counts = vec![0usize; names.len()];
    for (_, l) in &votes {
        counts[*l as usize] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0);
    let settled = top >= p.row.overlap as usize
        || (n >= s.min_answers as usize && confidence >= s.target_confidence)
        || n >= p.row.max_answers as usize;
    if !settled {
        return Ok(Decision::NeedMore {
            needed: n as u32 + 1,
        });
    }
    let (accepted, rejected): (Vec<usize>, Vec<usize>) =
        (0..n).partition(|&j| labels[j] == Some(best));
    Ok(Decision::Resolved {
        result: json!({ "label": names[best as usize] }),
        agreement: accepted.len() as f64 / n as f64,
        accepted: accepted.iter().map(|&j| rows[j].id).collect(),
        rejected: rejected.iter().map(|&j| rows[j].id).collect(),
        confidence: Some(confidence),
    })
}

/// Whether a contributor may take tasks of a bounty, and which.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// No quality settings: the spine's queue, unchanged.
    Vote,
    /// Real items, with gold mixed in.
    Work(settings::Model),
    /// The qualification exam first: only gold items, this many more.
    Exam(settings::Model, u32),
}

/// A contributor's standing, created on first use.
pub async fn standing(
    conn: &impl ConnectionTrait,
    project_id: i64,
    user_id: i64,
) -> Result<contributor::Model> {
    if let Some(r) = find_standing(conn, project_id, user_id).await? {
        return Ok(r);
    }
    let now = now_ms();
    let fresh = contributor::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        tasks_served: Set(0),
        gold_correct: Set(0),
        gold_total: Set(0),
        peer_agreement: Set(0.0),
        peer_answers: Set(0),
        accuracy_mean: Set(0.0),
        accuracy_lower: Set(0.0),
        em_accuracy: Set(None),
        confusion: Set(None),
        answers_timed: Set(0),
        answers_fast: Set(0),
        exam: Set("none".into()),
        exam_correct: Set(0),
        exam_total: Set(0),
        signals: Set("[]".into()),
        suspended_at: Set(None),
        suspension_reason: Set(None),
        updated_at: Set(now),
        ..Default::default()
    };
    contributor::Entity::insert(fresh)
        .on_conflict_do_nothing_on([contributor::Column::ProjectId, contributor::Column::UserId])
        .exec_without_returning(conn)
        .await?;
    find_standing(conn, project_id, user_id)
        .await?
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("standing row vanished")))
}

async fn find_standing(
    conn: &impl ConnectionTrait,
    project_id: i64,
    user_id: i64,
) -> Result<Option<contributor::Model>> {
    Ok(contributor::Entity::find()
        .filter(contributor::Column::ProjectId.eq(project_id))
        .filter(contributor::Column::UserId.eq(user_id))
        .one(conn)
        .await?)
}

fn refuse_if_locked(r: &contributor::Model) -> Result<()> {
    if r.suspended_at.is_some() {
        return Err(Error::forbidden(
            "suspended",
            format!(
                "you are suspended from this bounty: {}",
                r.suspension_reason.as_deref().unwrap_or("quality")
            ),
        ));
    }
    if r.exam == "failed" {
        return Err(Error::forbidden(
            "exam-failed",
            "you did not pass this bounty's qualification exam",
        ));
    }
    Ok(())
}

/// Whether `user` may lease tasks of `p`, and which kind.
pub async fn admit(state: &AppState, user: &AuthUser, p: &Project) -> Result<Admission> {
    let conn = &state.db.conn;
    let Some(s) = state.quality.of(conn, p).await? else {
        return Ok(Admission::Vote);
    };
    let s = (*s).clone();
    let r = find_standing(conn, p.row.id, user.id).await?;
    if let Some(r) = &r {
        refuse_if_locked(r)?;
    }
    let exam_done = r.as_ref().map_or(0, |r| r.exam_total);
    let passed = r.as_ref().is_some_and(|r| r.exam == "passed");
    if s.exam_size > 0 && !passed {
        let left = std::cmp::max(s.exam_size - exam_done, 0) as u32;
        return Ok(Admission::Exam(s, left));
    }
    Ok(Admission::Work(s))
}

/// Canonical answers of a voted type are equal exactly when they agree.
pub fn same_answer(a: &Value, b: &Value) -> bool {
    !a.is_null() && a == b
}

/// Bookkeeping after an answer is inserted, in the same transaction:
/// refuses it if its author is suspended or failed the exam, records its
/// speed, and for a gold answer updates the gold record and exam and
/// applies the suspension rule. Returns true when answers were discarded
/// (the queue must be reloaded after the commit).
pub async fn after_answer(
    conn: &impl ConnectionTrait,
    p: &Project,
    settings: Option<&settings::Model>,
    user_id: i64,
    given: &Value,
    gold: Option<&Value>,
    (leased_at, now): (i64, i64),
) -> Result<bool> {
    let Some(s) = settings else {
        return Ok(false);
    };
    let r = standing(conn, p.row.id, user_id).await?;
    refuse_if_locked(&r)?;
    let fast = s.speed_floor_ms > 0 && now - leased_at < s.speed_floor_ms;
    let mut update = contributor::Entity::update_many()
        .col_expr(
            contributor::Column::AnswersTimed,
            Expr::col(contributor::Column::AnswersTimed).add(1),
        )
        .col_expr(
            contributor::Column::AnswersFast,
            Expr::col(contributor::Column::AnswersFast).add(i32::from(fast)),
        )
        .col_expr(contributor::Column::UpdatedAt, Expr::value(now));
    // The exam counts whole answers; the record, judgements (one per
    // class on a multi-label bounty).
    let correct = gold.map(|g| same_answer(given, g));
    if let (Some(ok), Some(g)) = (correct, gold) {
        let (right, of) = gold_score(p, given, g);
        update = update
            .col_expr(
                contributor::Column::GoldTotal,
                Expr::col(contributor::Column::GoldTotal).add(of),
            )
            .col_expr(
                contributor::Column::GoldCorrect,
                Expr::col(contributor::Column::GoldCorrect).add(right),
            );
        if s.exam_size > 0 && r.exam == "none" {
            update = update
                .col_expr(
                    contributor::Column::ExamTotal,
                    Expr::col(contributor::Column::ExamTotal).add(1),
                )
                .col_expr(
                    contributor::Column::ExamCorrect,
                    Expr::col(contributor::Column::ExamCorrect).add(i32::from(ok)),
                );
        }
    }
    update
        .filter(contributor::Column::Id.eq(r.id))
        .exec(conn)
        .await?;
    if correct.is_none() {
        return Ok(false);
    }
    let r = standing(conn, p.row.id, user_id).await?;
    if s.exam_size > 0 && r.exam == "none" && r.exam_total >= s.exam_size {
        let passed = r.exam_correct as f64 >= s.exam_pass_mark * r.exam_total as f64 - 1e-9;
        contributor::Entity::update_many()
            .col_expr(
                contributor::Column::Exam,
                Expr::value(if passed { "passed" } else { "failed" }),
            )
            .filter(contributor::Column::Id.eq(r.id))
            .exec(conn)
            .await?;
    }
    refresh_accuracy(conn, p, s, &r, now).await
}

fn record(r: &contributor::Model) -> (GoldRecord, PeerEvidence) {
    (
        GoldRecord {
            correct: std::cmp::max(r.gold_correct, 0) as u32,
            total: std::cmp::max(r.gold_total, 0) as u32,
        },
        PeerEvidence {
            agreement: r.peer_agreement,
            answers: std::cmp::max(r.peer_answers, 0) as u32,
        },
    )
}

/// Recomputes a contributor's accuracy posterior and suspends them if the
/// rule says so. Returns true when answers were discarded.
pub async fn refresh_accuracy(
    conn: &impl ConnectionTrait,
    p: &Project,
    s: &settings::Model,
    r: &contributor::Model,
    now: i64,
) -> Result<bool> {
    let rule = rule(p, s);
    let (g, peer) = record(r);
    let est = rule.estimate_with(g, peer);
    contributor::Entity::update_many()
        .col_expr(contributor::Column::AccuracyMean, Expr::value(est.mean))
        .col_expr(contributor::Column::AccuracyLower, Expr::value(est.lower))
        .filter(contributor::Column::Id.eq(r.id))
        .exec(conn)
        .await?;
    if r.suspended_at.is_some() || !rule.suspends_with(g, peer) {
        return Ok(false);
    }
    let reason = format!(
        "accuracy too low: {} of {} {} right{}; the 95% lower bound of accuracy is {:.2}, under this bounty's threshold {:.2}",
        g.correct,
        g.total,
        if shape(p) == Shape::PerClass {
            "class judgements on gold items"
        } else {
            "gold answers"
        },
        if peer.answers > 0 {
            format!(
                ", and {:.0} of {} answers agree with what the other contributors settled",
                peer.agreement, peer.answers
            )
        } else {
            String::new()
        },
        est.lower,
        rule.threshold
    );
    suspend(conn, p, r.user_id, &reason, now).await
}

/// Suspends a contributor from a bounty: no more tasks, and their answers
/// on items still open stop counting (rejected unpaid, listed in
/// `quality_discards`, the item's count lowered so others answer it).
/// Decided items keep their decisions. Returns true when answers were
/// discarded. Idempotent.
pub async fn suspend(
    conn: &impl ConnectionTrait,
    p: &Project,
    user_id: i64,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let r = standing(conn, p.row.id, user_id).await?;
    let marked = contributor::Entity::update_many()
        .col_expr(contributor::Column::SuspendedAt, Expr::value(now))
        .col_expr(contributor::Column::SuspensionReason, Expr::value(reason))
        .filter(contributor::Column::Id.eq(r.id))
        .filter(contributor::Column::SuspendedAt.is_null())
        .exec(conn)
        .await?;
    if marked.rows_affected == 0 {
        return Ok(false);
    }
    tracing::info!(
        project = p.row.id,
        user = user_id,
        reason,
        "contributor suspended"
    );
    let pending = answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(p.row.id))
        .filter(answer::Column::UserId.eq(user_id))
        .filter(answer::Column::Status.eq("pending"))
        .all(conn)
        .await?;
    let ids: Vec<i64> = pending.iter().map(|a| a.item_id).collect();
    let open: Vec<i64> = item::Entity::find()
        .filter(item::Column::Id.is_in(ids))
        .filter(item::Column::Status.eq("open"))
        .all(conn)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut discarded = false;
    for a in pending.iter().filter(|a| open.contains(&a.item_id)) {
        // The item first, then the answer: the order in which answering
        // and resolving lock them, so the two never wait on each other in
        // a cycle. An item decided meanwhile keeps its decision.
        let counted = item::Entity::update_many()
            .col_expr(
                item::Column::AnswersCount,
                Expr::col(item::Column::AnswersCount).sub(1),
            )
            .filter(item::Column::Id.eq(a.item_id))
            .filter(item::Column::Status.eq("open"))
            .exec(conn)
            .await?;
        if counted.rows_affected != 1 {
            continue;
        }
        let res = answer::Entity::update_many()
            .col_expr(answer::Column::Status, Expr::value("rejected"))
            .col_expr(answer::Column::DecidedAt, Expr::value(now))
            .filter(answer::Column::Id.eq(a.id))
            .filter(answer::Column::Status.eq("pending"))
            .exec(conn)
            .await?;
        if res.rows_affected != 1 {
            item::Entity::update_many()
                .col_expr(
                    item::Column::AnswersCount,
                    Expr::col(item::Column::AnswersCount).add(1),
                )
                .filter(item::Column::Id.eq(a.item_id))
                .exec(conn)
                .await?;
            continue;
        }
        discard::ActiveModel {
            answer_id: Set(a.id),
            project_id: Set(p.row.id),
            item_id: Set(a.item_id),
            user_id: Set(user_id),
            reason: Set(format!("author suspended: {reason}")),
            created_at: Set(now),
        }
        .insert(conn)
        .await?;
        discarded = true;
    }
    Ok(discarded)
}

/// After a commit that discarded answers or closed items outside the
/// submit path: reload the bounty's queue from the database, so the items
/// are offered again (and never to a suspended contributor, whom leasing
/// refuses anyway).
pub async fn refresh_queue(state: &AppState, project_id: i64) {
    if let Err(e) = crate::queue::reload_project(state, project_id).await {
        tracing::warn!(error = %e, project = project_id, "reloading the queue after a quality change failed");
    }
}
