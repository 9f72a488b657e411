//! Artifacts: every file Sahel holds (item media, contributors' uploads),
//! in object storage under the SHA-256 of its bytes.
//!
//! [`store::ArtifactStore`] streams uploads into the object store (local
//! directory by default, S3 by URL); this module records them (`artifacts`,
//! `artifact_uploaders`), links them to the items and answers that
//! reference them, decides who may read them, and holds per-bounty upload
//! limits. [`import`] turns uploaded files, archives and store prefixes
//! into items.

pub mod entity;
pub mod import;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use sahel_protocol::api::Role;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set, Statement, Value,
};

use crate::accounts::AuthUser;
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::projects::Project;
pub use store::{ArtifactStore, Limits, Stored, is_sha256_hex};

/// The item fields that hold artifact references (docs/task-types.md).
pub const ITEM_FIELDS: [&str; 3] = ["image", "audio", "file"];

pub use sahel_protocol::api::{Artifact as ArtifactInfo, ArtifactLimits as ProjectLimits};

impl From<&entity::artifact::Model> for ArtifactInfo {
    fn from(m: &entity::artifact::Model) -> Self {
        ArtifactInfo {
            sha256: m.sha256.clone(),
            size: m.size as u64,
            media_type: m.media_type.clone(),
            created_at: sahel_protocol::Timestamp(m.created_at),
        }
    }
}

/// Runs SQL written with `?` placeholders on either database.
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Records a stored upload: the artifact row (once per content) and the
/// uploader. If the row cannot be written, a newly stored object is removed
/// again, so the store never holds what the database does not know.
pub async fn record_upload(
    db: &Db,
    artifacts: &ArtifactStore,
    uploader: i64,
    stored: &Stored,
) -> Result<ArtifactInfo> {
    let res: Result<entity::artifact::Model> = async {
        let tx = db.write().await?;
        let now = now_ms();
        entity::artifact::Entity::insert(entity::artifact::ActiveModel {
            sha256: Set(stored.sha256.clone()),
            size: Set(stored.size as i64),
            media_type: Set(stored.media_type.clone()),
            uploader: Set(uploader),
            created_at: Set(now),
        })
        .on_conflict_do_nothing_on([entity::artifact::Column::Sha256])
        .exec_without_returning(&*tx)
        .await?;
        entity::uploader::Entity::insert(entity::uploader::ActiveModel {
            sha256: Set(stored.sha256.clone()),
            user_id: Set(uploader),
            created_at: Set(now),
        })
        .on_conflict_do_nothing_on([
            entity::uploader::Column::Sha256,
            entity::uploader::Column::UserId,
        ])
        .exec_without_returning(&*tx)
        .await?;
        let row = entity::artifact::Entity::find_by_id(stored.sha256.clone())
            .one(&*tx)
            .await?
            .ok_or_else(|| anyhow::anyhow!("artifact row vanished"))?;
        tx.commit().await?;
        Ok(row)
    }
    .await;
    match res {
        Ok(row) => Ok(ArtifactInfo::from(&row)),
        Err(e) => {
            if stored.new_object {
                let _ = artifacts.delete(&stored.sha256).await;
            }
            Err(e)
        }
    }
}

pub async fn find(
    conn: &impl ConnectionTrait,
    sha256: &str,
) -> Result<Option<entity::artifact::Model>> {
    Ok(entity::artifact::Entity::find_by_id(sha256.to_owned())
        .one(conn)
        .await?)
}

/// May `user` read this artifact? The uploaders, admins, the buyer of a
/// bounty whose item or answer references it, a contributor holding a live
/// lease on an item that references it, a reviewer holding a live review
/// lease on such an answer or item, or on a gold review of that file.
/// Everyone else is told it does not exist.
pub async fn can_read(conn: &impl ConnectionTrait, user: &AuthUser, sha256: &str) -> Result<bool> {
    if user.roles.has(Role::Admin) {
        return Ok(true);
    }
    let b = conn.get_database_backend();
    let sql = "SELECT 1 AS ok WHERE \
        EXISTS (SELECT 1 FROM artifact_uploaders WHERE sha256 = ? AND user_id = ?) \
        OR EXISTS (SELECT 1 FROM item_artifacts ia JOIN items i ON i.id = ia.item_id \
                   JOIN projects p ON p.id = i.project_id \
                   WHERE ia.sha256 = ? AND p.buyer_id = ?) \
        OR EXISTS (SELECT 1 FROM answer_artifacts aa JOIN answers a ON a.id = aa.answer_id \
                   JOIN projects p ON p.id = a.project_id \
                   WHERE aa.sha256 = ? AND (p.buyer_id = ? OR a.user_id = ?)) \
        OR EXISTS (SELECT 1 FROM item_artifacts ia JOIN leases l ON l.item_id = ia.item_id \
                   WHERE ia.sha256 = ? AND l.user_id = ? AND l.status = 'open' AND l.expires_at > ?) \
        OR EXISTS (SELECT 1 FROM review_leases r \
                   LEFT JOIN answer_artifacts aa ON aa.answer_id = r.answer_id \
                   LEFT JOIN item_artifacts ia ON ia.item_id = r.item_id \
                   WHERE (aa.sha256 = ? OR ia.sha256 = ?) AND r.reviewer_id = ? \
                   AND r.status = 'open' AND r.expires_at > ?) \
        OR EXISTS (SELECT 1 FROM review_leases r JOIN gold_reviews g ON g.id = r.gold_review_id \
                   WHERE g.artifact = ? AND r.reviewer_id = ? \
                   AND r.status = 'open' AND r.expires_at > ?)";
    let s = sha256.to_owned();
    let values: Vec<Value> = vec![
        s.clone().into(),
        user.id.into(),
        s.clone().into(),
        user.id.into(),
        s.clone().into(),
        user.id.into(),
        user.id.into(),
        s.clone().into(),
        user.id.into(),
        now_ms().into(),
        s.clone().into(),
        s.clone().into(),
        user.id.into(),
        now_ms().into(),
        s.into(),
        user.id.into(),
        now_ms().into(),
    ];
    Ok(conn.query_one_raw(stmt(b, sql, values)).await?.is_some())
}

/// The artifact references in an item: the `image`, `audio` and `file`
/// fields holding a 64-hex SHA-256.
pub fn item_refs(data: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = ITEM_FIELDS
        .iter()
        .filter_map(|f| data.get(*f).and_then(serde_json::Value::as_str))
        .filter(|s| is_sha256_hex(s))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The artifact reference in an answer (`{"artifact": sha}`, file
/// collection).
pub fn answer_refs(payload: &serde_json::Value) -> Vec<String> {
    payload
        .get("artifact")
        .and_then(serde_json::Value::as_str)
        .filter(|s| is_sha256_hex(s))
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default()
}

/// Of `hashes`, those that exist and `user` may reference: they uploaded
/// them or may already read them. A buyer cannot gain access to someone
/// else's file by naming its hash in an item.
pub async fn usable_by(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    hashes: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let mut ok = BTreeSet::new();
    if hashes.is_empty() {
        return Ok(ok);
    }
    let list: Vec<String> = hashes.iter().cloned().collect();
    for chunk in list.chunks(500) {
        let rows = entity::uploader::Entity::find()
            .filter(entity::uploader::Column::UserId.eq(user.id))
            .filter(entity::uploader::Column::Sha256.is_in(chunk.to_vec()))
            .all(conn)
            .await?;
        ok.extend(rows.into_iter().map(|r| r.sha256));
    }
    for h in hashes {
        if !ok.contains(h) && can_read(conn, user, h).await? && find(conn, h).await?.is_some() {
            ok.insert(h.clone());
        }
    }
    Ok(ok)
}

/// Checks that every artifact a batch of items references exists and is
/// the importer's to use; the refusal names the missing hashes.
pub async fn check_item_refs(
    conn: &impl ConnectionTrait,
    user: &AuthUser,
    items: &[serde_json::Value],
) -> Result<()> {
    let wanted: BTreeSet<String> = items.iter().flat_map(item_refs).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let ok = usable_by(conn, user, &wanted).await?;
    let missing: Vec<&String> = wanted.difference(&ok).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing.iter().take(10).map(|s| s.to_string()).collect();
    Err(Error::invalid(
        "unknown-artifact",
        format!(
            "{} referenced artifact(s) are not stored or not yours to use (upload them first): {}",
            missing.len(),
            shown.join(", ")
        ),
    ))
}

/// Records which artifacts the items `item_id → data` reference.
pub async fn link_items(
    conn: &impl ConnectionTrait,
    items: &BTreeMap<i64, Vec<String>>,
) -> Result<()> {
    let rows: Vec<entity::item_link::ActiveModel> = items
        .iter()
        .flat_map(|(id, refs)| {
            refs.iter().map(move |r| entity::item_link::ActiveModel {
                item_id: Set(*id),
                sha256: Set(r.clone()),
            })
        })
        .collect();
    for chunk in rows.chunks(400) {
        entity::item_link::Entity::insert_many(chunk.to_vec())
            .on_conflict_do_nothing_on([
                entity::item_link::Column::ItemId,
                entity::item_link::Column::Sha256,
            ])
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Checks and records a file-collection answer's artifact: it must exist
/// and have been uploaded by the answering contributor. Called in the
/// submission's transaction once the answer row exists.
pub async fn link_answer(
    conn: &impl ConnectionTrait,
    answer_id: i64,
    user_id: i64,
    payload: &serde_json::Value,
) -> Result<()> {
    for sha in answer_refs(payload) {
        let mine = entity::uploader::Entity::find()
            .filter(entity::uploader::Column::Sha256.eq(sha.clone()))
            .filter(entity::uploader::Column::UserId.eq(user_id))
            .one(conn)
            .await?;
        if mine.is_none() {
            return Err(Error::invalid(
                "unknown-artifact",
                format!(
                    "artifact {sha} is not one you uploaded; upload the file first (POST /api/v1/artifacts)"
                ),
            ));
        }
        entity::answer_link::Entity::insert(entity::answer_link::ActiveModel {
            answer_id: Set(answer_id),
            sha256: Set(sha),
        })
        .on_conflict_do_nothing_on([
            entity::answer_link::Column::AnswerId,
            entity::answer_link::Column::Sha256,
        ])
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}

pub async fn project_limits(conn: &impl ConnectionTrait, project_id: i64) -> Result<ProjectLimits> {
    let row = entity::limits::Entity::find_by_id(project_id)
        .one(conn)
        .await?;
    Ok(match row {
        None => ProjectLimits::default(),
        Some(r) => ProjectLimits {
            max_bytes: r.max_bytes.map(|b| b as u64),
            accept: r
                .accept
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| anyhow::anyhow!("stored accept list: {e}"))?,
        },
    })
}

/// Sets a draft bounty's upload limits (its buyer only).
pub async fn set_project_limits(
    db: &Db,
    owner: &AuthUser,
    project_id: i64,
    limits: ProjectLimits,
) -> Result<ProjectLimits> {
    let p = crate::projects::get_owned(&db.conn, owner, project_id).await?;
    if p.status() != sahel_protocol::api::ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "upload limits can only change before the bounty is funded",
        ));
    }
    if limits.max_bytes == Some(0) {
        return Err(Error::invalid(
            "invalid-limits",
            "max_bytes must be positive",
        ));
    }
    if let Some(a) = &limits.accept {
        for t in a {
            let ok = t.split_once('/').is_some_and(|(x, y)| {
                !x.is_empty() && !y.is_empty() && !t.contains(char::is_whitespace)
            });
            if !ok {
                return Err(Error::invalid(
                    "invalid-limits",
                    format!("{t:?} is not a media type (like image/png or audio/*)"),
                ));
            }
        }
    }
    let tx = db.write().await?;
    entity::limits::Entity::delete_by_id(project_id)
        .exec(&*tx)
        .await?;
    entity::limits::Entity::insert(entity::limits::ActiveModel {
        project_id: Set(project_id),
        max_bytes: Set(limits.max_bytes.map(|b| b as i64)),
        accept: Set(limits
            .accept
            .as_ref()
            .map(|a| serde_json::to_string(a).unwrap_or_default())),
    })
    .exec(&*tx)
    .await?;
    tx.commit().await?;
    Ok(limits)
}

/// The limits an upload to `project` by `user` runs under: the server's
/// maximum, the bounty's limits, and for contributors to a file-collection
/// bounty the schema's `accept` and `max_bytes`.
pub async fn limits_for(
    conn: &impl ConnectionTrait,
    server_max: u64,
    user: &AuthUser,
    project: Option<&Project>,
) -> Result<Limits> {
    let mut limits = Limits {
        max_bytes: server_max,
        accept: Vec::new(),
    };
    let Some(p) = project else { return Ok(limits) };
    let pl = project_limits(conn, p.row.id).await?;
    limits = limits.and(&Limits {
        max_bytes: pl.max_bytes.unwrap_or(u64::MAX),
        accept: pl.accept.unwrap_or_default(),
    });
    if p.row.buyer_id != user.id {
        // The raw stored schema: file collection's `accept`/`max_bytes`.
        let raw: serde_json::Value = serde_json::from_str(&p.row.schema).unwrap_or_default();
        let accept: Vec<String> = raw
            .get("accept")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let max = raw
            .get("max_bytes")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(u64::MAX);
        limits = limits.and(&Limits {
            max_bytes: max,
            accept,
        });
    }
    Ok(limits)
}
