//! A bounty's agreement statistics and its contributors' standing, for
//! its buyer (`GET /projects/{id}/quality`).

use std::collections::HashMap;

use sahel_protocol::Timestamp;
use sahel_protocol::api;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use super::entity::{contributor, discard, state as qstate};
use super::{Shape, class_of, classes, engine, gold, settings, shape, view};
use crate::accounts::AuthUser;
use crate::error::Result;
use crate::projects;
use crate::projects::entity::item;
use crate::queue::entity::answer;

pub async fn report(
    conn: &impl ConnectionTrait,
    owner: &AuthUser,
    project_id: i64,
) -> Result<api::QualityReport> {
    let p = projects::get_owned(conn, owner, project_id).await?;
    let s = settings(conn, project_id).await?;
    let names = classes(&p).to_vec();
    let k = names.len();
    let discarded: Vec<i64> = discard::Entity::find()
        .filter(discard::Column::ProjectId.eq(project_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|d| d.answer_id)
        .collect();
    let golds: HashMap<i64, Value> = gold::all(conn, project_id).await?.into_iter().collect();
    let answers: Vec<answer::Model> = answer::Entity::find()
        .filter(answer::Column::ProjectId.eq(project_id))
        .all(conn)
        .await?;
    let items = item::Entity::find()
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("resolved"))
        .all(conn)
        .await?;
    let result_of: HashMap<i64, u16> = items
        .iter()
        .filter(|i| !golds.contains_key(&i.id))
        .filter_map(|i| {
            let r: Value = serde_json::from_str(i.result.as_deref()?).ok()?;
            class_of(&p, &r["answer"]).map(|c| (i.id, c))
        })
        .collect();

    // Counted answers on real items, by item, for alpha; and per class and
    // contributor against the results.
    let mut units: HashMap<i64, Vec<u16>> = HashMap::new();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut per_user: HashMap<i64, (u32, u32, u32)> = HashMap::new();
    let mut on_resolved = 0u64;
    for a in &answers {
        let entry = per_user.entry(a.user_id).or_default();
        if golds.contains_key(&a.item_id) {
            continue;
        }
        entry.0 += 1;
        if result_of.contains_key(&a.item_id) {
            on_resolved += 1;
        }
        if discarded.contains(&a.id) {
            continue;
        }
        let Some(c) = serde_json::from_str::<Value>(&a.payload)
            .ok()
            .and_then(|v| class_of(&p, &v))
        else {
            continue;
        };
        units.entry(a.item_id).or_default().push(c);
        if let Some(&r) = result_of.get(&a.item_id) {
            confusion[r as usize][c as usize] += 1;
            entry.2 += 1;
            if r == c {
                entry.1 += 1;
            }
        }
    }
    let st = qstate::Entity::find_by_id(project_id).one(conn).await?;
    // A multi-label bounty's answers are not one category each: its alpha
    // is the last estimation's mean over the classes, and a confusion of
    // sets is not a K x K table.
    let per_class = shape(&p) == Shape::PerClass;
    let alpha = if per_class {
        st.as_ref().and_then(|s| s.alpha)
    } else {
        engine::agreement::alpha_nominal(k, units.values().map(Vec::as_slice))
    };
    if per_class {
        confusion.clear();
    }
    let rows = contributor::Entity::find()
        .filter(contributor::Column::ProjectId.eq(project_id))
        .all(conn)
        .await?;
    let mut contributors: Vec<api::ContributorQuality> = rows
        .iter()
        .map(|r| {
            let (n, agree, compared) = per_user.get(&r.user_id).copied().unwrap_or_default();
            api::ContributorQuality {
                user_id: r.user_id,
                answers: n,
                gold_correct: r.gold_correct.max(0) as u32,
                gold_total: r.gold_total.max(0) as u32,
                accuracy: r.accuracy_mean,
                accuracy_lower: r.accuracy_lower,
                em_accuracy: r.em_accuracy,
                agreement: (compared > 0).then(|| agree as f64 / compared as f64),
                exam: if s.as_ref().is_some_and(|s| s.exam_size > 0) && r.exam == "none" {
                    "pending".into()
                } else {
                    r.exam.clone()
                },
                signals: serde_json::from_str(&r.signals).unwrap_or_default(),
                suspended: r.suspended_at.is_some(),
                suspension_reason: r.suspension_reason.clone(),
            }
        })
        .collect();
    contributors.sort_by_key(|c| c.user_id);
    let gold_answers = if golds.is_empty() {
        0
    } else {
        answer::Entity::find()
            .filter(answer::Column::ProjectId.eq(project_id))
            .filter(answer::Column::ItemId.is_in(golds.keys().copied().collect::<Vec<_>>()))
            .count(conn)
            .await? as i64
    };
    let resolved = result_of.len() as i64;
    Ok(api::QualityReport {
        project_id,
        settings: view(&p, s.as_ref()),
        classes: names,
        alpha,
        confusion,
        items_resolved: resolved,
        answers_per_resolved_item: (resolved > 0).then(|| on_resolved as f64 / resolved as f64),
        gold_items: golds.len() as i64,
        gold_answers,
        discarded_answers: discarded.len() as i64,
        revised_items: st.as_ref().map_or(0, |s| s.revised_items as i64),
        estimations: st.as_ref().map_or(0, |s| s.estimations as i64),
        estimated_at: st.as_ref().and_then(|s| s.estimated_at).map(Timestamp),
        contributors,
        flagged_pairs: st
            .as_ref()
            .and_then(|s| serde_json::from_str(&s.pairs).ok())
            .unwrap_or_default(),
    })
}
