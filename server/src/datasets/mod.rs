//! Datasets: a finished bounty published as a frozen, versioned snapshot of
//! its resolved items, licensed per record read or per full export.
//!
//! Publishing copies the resolved items and fixes each contributor's
//! royalty weight: the rewards of their accepted answers plus the reviews
//! they were paid for in the bounty. Every use (a page of records, an
//! export) is one database transaction: the use row and its charge (see
//! `ledger::royalty::charge_use`). Splitting the pool among contributors is
//! left to royalty rounds, so a use costs the same with 10 or 100,000
//! contributors.

pub mod entity;
pub mod export;

use sahel_protocol::api::{self, Role};
use sahel_protocol::provenance::{self, ExportRecord, SignedAnswer};
use sahel_protocol::{Micros, Timestamp};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use crate::accounts::AuthUser;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::ledger::entity::review_payment;
use crate::ledger::payments::check_key;
use crate::ledger::royalty;
use crate::projects::{self, entity::item};
use crate::queue::entity::answer;
use entity::{contributor, dataset, record, usage};

pub const MAX_PER_PAGE: i64 = 1000;

pub fn to_api(d: &dataset::Model) -> api::Dataset {
    api::Dataset {
        id: d.id,
        project_id: d.project_id,
        buyer_id: d.buyer_id,
        version: d.version,
        title: d.title.clone(),
        price_per_record: d.price_per_record.map(Micros),
        price_per_export: d.price_per_export.map(Micros),
        record_count: d.record_count,
        contributors: d.contributors,
        created_at: Timestamp(d.created_at),
    }
}

fn check_price(p: Option<Micros>, what: &str) -> Result<Option<i64>> {
    match p {
        Some(m) if m.0 <= 0 => Err(Error::invalid(
            "invalid-price",
            format!("the {what} price must be positive (leave it out to not license {what}s)"),
        )),
        Some(m) => Ok(Some(m.0)),
        None => Ok(None),
    }
}

#[derive(FromQueryResult)]
struct WeightRow {
    user_id: i64,
    weight: Option<i64>,
}

/// Publishes a finished (completed or closed) bounty as its next dataset
/// version, in one transaction.
pub async fn publish(
    db: &Db,
    buyer: &AuthUser,
    project_id: i64,
    req: api::PublishDataset,
) -> Result<api::Dataset> {
    buyer.require(Role::Buyer)?;
    let per_record = check_price(req.price_per_record, "record")?;
    let per_export = check_price(req.price_per_export, "export")?;
    if per_record.is_none() && per_export.is_none() {
        return Err(Error::invalid(
            "invalid-price",
            "set a price per record read, per full export, or both",
        ));
    }
    let tx = db.write().await?;
    let p = projects::get_owned(&*tx, buyer, project_id).await?;
    if !p.status().has_ended() {
        return Err(Error::conflict(
            "project-not-finished",
            "only a completed or closed bounty can be published",
        ));
    }
    let items = item::Entity::find()
        .filter(item::Column::ProjectId.eq(project_id))
        .filter(item::Column::Status.eq("resolved"))
        .order_by_asc(item::Column::Seq)
        .all(&*tx)
        .await?;
    if items.is_empty() {
        return Err(Error::conflict(
            "nothing-to-publish",
            "the bounty has no resolved items",
        ));
    }
    let mut weights: std::collections::BTreeMap<i64, i64> = Default::default();
    let answers: Vec<WeightRow> = answer::Entity::find()
        .select_only()
        .column(answer::Column::UserId)
        .column_as(
            Expr::col(answer::Column::Paid).sum().cast_as("BIGINT"),
            "weight",
        )
        .filter(answer::Column::ProjectId.eq(project_id))
        .filter(answer::Column::Status.eq("accepted"))
        .group_by(answer::Column::UserId)
        .into_model()
        .all(&*tx)
        .await?;
    let reviews: Vec<WeightRow> = review_payment::Entity::find()
        .select_only()
        .column_as(review_payment::Column::ReviewerId, "user_id")
        .column_as(
            Expr::col(review_payment::Column::Amount)
                .sum()
                .cast_as("BIGINT"),
            "weight",
        )
        .filter(review_payment::Column::ProjectId.eq(project_id))
        .group_by(review_payment::Column::ReviewerId)
        .into_model()
        .all(&*tx)
        .await?;
    for w in answers.into_iter().chain(reviews) {
        *weights.entry(w.user_id).or_default() += w.weight.unwrap_or(0);
    }
    weights.retain(|_, w| *w > 0);
    let total_weight: i64 = weights.values().sum();
    let version: Option<i32> = dataset::Entity::find()
        .select_only()
        .column_as(dataset::Column::Version.max(), "v")
        .filter(dataset::Column::ProjectId.eq(project_id))
        .into_tuple()
        .one(&*tx)
        .await?
        .flatten();
    let version = version.unwrap_or(0) + 1;
    let title = req
        .title
        .map(|t| t.trim().chars().take(200).collect::<String>())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("{} v{version}", p.row.title));
    let d = dataset::ActiveModel {
        project_id: Set(project_id),
        buyer_id: Set(p.row.buyer_id),
        version: Set(version),
        title: Set(title),
        price_per_record: Set(per_record),
        price_per_export: Set(per_export),
        record_count: Set(items.len() as i64),
        contributors: Set(weights.len() as i64),
        total_weight: Set(total_weight),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    for (n, chunk) in items.chunks(500).enumerate() {
        record::Entity::insert_many(chunk.iter().enumerate().map(|(i, it)| record::ActiveModel {
            dataset_id: Set(d.id),
            seq: Set((n * 500 + i + 1) as i64),
            item_id: Set(it.id),
            data: Set(it.data.clone()),
            result: Set(it.result.clone().unwrap_or_else(|| "null".into())),
            ..Default::default()
        }))
        .exec(&*tx)
        .await?;
    }
    let weights: Vec<(i64, i64)> = weights.into_iter().collect();
    for chunk in weights.chunks(1000) {
        contributor::Entity::insert_many(chunk.iter().map(|(u, w)| contributor::ActiveModel {
            dataset_id: Set(d.id),
            user_id: Set(*u),
            weight: Set(*w),
        }))
        .exec(&*tx)
        .await?;
    }
    tx.commit().await?;
    Ok(to_api(&d))
}

pub async fn get(conn: &impl ConnectionTrait, id: i64) -> Result<dataset::Model> {
    dataset::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("dataset-not-found", format!("no dataset {id}")))
}

pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<api::Dataset>> {
    Ok(dataset::Entity::find()
        .order_by_asc(dataset::Column::Id)
        .all(conn)
        .await?
        .iter()
        .map(to_api)
        .collect())
}

fn to_record(r: record::Model) -> api::DatasetRecord {
    api::DatasetRecord {
        seq: r.seq,
        item_id: r.item_id,
        data: serde_json::from_str(&r.data).unwrap_or(serde_json::Value::Null),
        result: serde_json::from_str(&r.result).unwrap_or(serde_json::Value::Null),
    }
}

fn to_charge(u: &usage::Model) -> api::UseCharge {
    api::UseCharge {
        use_id: u.id,
        amount: Micros(u.amount),
        fee: Micros(u.fee),
        buyer_share: Micros(u.buyer_share),
        royalty_pool: Micros(u.pool_amount),
        transaction_id: u.transaction_id,
    }
}

/// What a use is, to tell a retry from a different request under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Records { page: i64, per_page: i64 },
    Export,
}

/// Records one use and charges it, in the caller's transaction. A retry
/// under the same key returns the first use and charges nothing.
async fn charge(
    conn: &impl ConnectionTrait,
    d: &dataset::Model,
    licensee: i64,
    what: Use,
    records: i64,
    key: &str,
) -> Result<usage::Model> {
    let (kind, page, price) = match what {
        Use::Records { page, .. } => ("records", Some(page), d.price_per_record),
        Use::Export => ("export", None, d.price_per_export),
    };
    let Some(price) = price else {
        return Err(Error::conflict(
            "use-not-licensed",
            format!("dataset {} is not licensed for {kind}", d.id),
        ));
    };
    if let Some(prev) = usage::Entity::find()
        .filter(usage::Column::LicenseeId.eq(licensee))
        .filter(usage::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?
    {
        return if prev.dataset_id == d.id && prev.kind == kind && prev.page == page {
            Ok(prev)
        } else {
            Err(Error::conflict(
                "idempotency-key-reused",
                "this idempotency key was used for a different dataset use",
            ))
        };
    }
    let amount = match what {
        Use::Records { .. } => price.checked_mul(records),
        Use::Export => Some(price),
    }
    .ok_or_else(|| Error::invalid("invalid-price", "the charge overflows"))?;
    let u = usage::ActiveModel {
        dataset_id: Set(d.id),
        licensee_id: Set(licensee),
        kind: Set(kind.into()),
        page: Set(page),
        records: Set(records),
        amount: Set(amount),
        fee: Set(0),
        buyer_share: Set(0),
        pool_amount: Set(0),
        transaction_id: Set(0),
        round_id: Set(None),
        idempotency_key: Set(key.to_owned()),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(conn)
    .await
    .map_err(|e| {
        if crate::error::is_unique_violation(&e) {
            Error::conflict("retry", "a concurrent request used this key; retry")
        } else {
            e.into()
        }
    })?;
    let (posted, c) = royalty::charge_use(
        conn,
        d.id,
        d.buyer_id,
        licensee,
        amount,
        json!({
            "dataset_id": d.id,
            "version": d.version,
            "use_id": u.id,
            "use": kind,
            "page": page,
            "records": records,
            "licensee_id": licensee,
        }),
        format!("use:{}", u.id),
    )
    .await?;
    usage::Entity::update_many()
        .col_expr(usage::Column::TransactionId, Expr::value(posted.id()))
        .col_expr(usage::Column::Fee, Expr::value(c.fee))
        .col_expr(usage::Column::BuyerShare, Expr::value(c.buyer_share))
        .col_expr(usage::Column::PoolAmount, Expr::value(c.pool))
        .filter(usage::Column::Id.eq(u.id))
        .exec(conn)
        .await?;
    Ok(usage::Model {
        transaction_id: posted.id(),
        fee: c.fee,
        buyer_share: c.buyer_share,
        pool_amount: c.pool,
        ..u
    })
}

fn licensee_key(key: Option<&str>) -> Result<String> {
    match key {
        Some(k) => Ok(check_key(k)?.to_owned()),
        None => Ok(crate::accounts::random_hex(16)),
    }
}

/// Reads one page of records, charging the licensee for the records on it.
/// A page past the end is empty and free.
pub async fn read_page(
    db: &Db,
    licensee: &AuthUser,
    dataset_id: i64,
    page: i64,
    per_page: i64,
    key: Option<&str>,
) -> Result<api::DatasetPage> {
    licensee.require(Role::Buyer)?;
    if page < 1 || !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(Error::invalid(
            "invalid-page",
            format!("pages start at 1 and hold 1 to {MAX_PER_PAGE} records"),
        ));
    }
    let key = licensee_key(key)?;
    let d = get(&db.conn, dataset_id).await?;
    if d.price_per_record.is_none() {
        return Err(Error::conflict(
            "use-not-licensed",
            format!("dataset {dataset_id} is not licensed for records"),
        ));
    }
    let from = (page - 1).saturating_mul(per_page);
    let rows = record::Entity::find()
        .filter(record::Column::DatasetId.eq(dataset_id))
        .filter(record::Column::Seq.gt(from))
        .filter(record::Column::Seq.lte(from.saturating_add(per_page)))
        .order_by_asc(record::Column::Seq)
        .all(&db.conn)
        .await?;
    let charge = if rows.is_empty() {
        None
    } else {
        let tx = db.write().await?;
        let u = charge(
            &*tx,
            &d,
            licensee.id,
            Use::Records { page, per_page },
            rows.len() as i64,
            &key,
        )
        .await?;
        tx.commit().await?;
        Some(to_charge(&u))
    };
    Ok(api::DatasetPage {
        dataset_id,
        version: d.version,
        page,
        per_page,
        total_records: d.record_count,
        records: rows.into_iter().map(to_record).collect(),
        charge,
    })
}

/// Export lines with provenance: each resolved item with its data, content
/// hash, result, the guideline version, and every accepted answer with its
/// contributor's public key and signature.
pub async fn with_provenance(
    conn: &impl ConnectionTrait,
    project_id: i64,
    items: Vec<(i64, String, String)>,
) -> Result<Vec<ExportRecord>> {
    let guideline = match projects::get(conn, project_id).await {
        Ok(p) => provenance::guideline_version(&p.row.instructions, &p.schema.to_json()),
        Err(_) => String::new(),
    };
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(500) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _, _)| *id).collect();
        let mut by_item: std::collections::HashMap<i64, Vec<SignedAnswer>> = Default::default();
        for a in answer::Entity::find()
            .filter(answer::Column::ItemId.is_in(ids))
            .filter(answer::Column::Status.eq("accepted"))
            .order_by_asc(answer::Column::Id)
            .all(conn)
            .await?
        {
            by_item.entry(a.item_id).or_default().push(SignedAnswer {
                answer_id: a.id,
                contributor_id: a.user_id,
                public_key: a.signer_key.unwrap_or_default(),
                answer: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
                signature: a.signature.unwrap_or_default(),
                signed_by: a.signed_by.unwrap_or_default(),
            });
        }
        for (id, data, result) in chunk {
            let data: serde_json::Value =
                serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
            out.push(ExportRecord {
                item_id: *id,
                content_hash: provenance::item_content_hash(&data),
                data,
                guideline_version: guideline.clone(),
                result: serde_json::from_str(result).unwrap_or(serde_json::Value::Null),
                answers: by_item.remove(id).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Charges one full export of a dataset; its records are then streamed
/// by [`export::stream_from`] with [`export::Source::Dataset`].
pub async fn charge_export(
    db: &Db,
    licensee: &AuthUser,
    dataset_id: i64,
    key: Option<&str>,
) -> Result<(dataset::Model, api::UseCharge)> {
    licensee.require(Role::Buyer)?;
    let key = licensee_key(key)?;
    let d = get(&db.conn, dataset_id).await?;
    let tx = db.write().await?;
    let u = charge(&*tx, &d, licensee.id, Use::Export, d.record_count, &key).await?;
    tx.commit().await?;
    Ok((d, to_charge(&u)))
}
