use actix_web::{HttpRequest, HttpResponse, web};
use sahel_protocol::api::{PublishDataset, Role, RoyaltyRun};
use serde::Deserialize;

use super::extract::{Authed, Caller};
use crate::datasets::{self, export as formats};
use crate::error::Result;
use crate::ledger::royalty::{self, Step};
use crate::projects;
use crate::state::AppState;

fn idempotency_key(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
}

pub async fn publish(
    state: web::Data<AppState>,
    Authed(user, req): Authed<PublishDataset>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let d = datasets::publish(&state.db, &user, path.into_inner(), req).await?;
    Ok(HttpResponse::Created().json(d))
}

pub async fn list(state: web::Data<AppState>, Caller(_): Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(datasets::list(&state.db.conn).await?))
}

pub async fn get(
    state: web::Data<AppState>,
    Caller(_): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(datasets::to_api(
        &datasets::get(&state.db.conn, path.into_inner()).await?,
    )))
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    per_page: Option<i64>,
}

/// One page of records; each call is a charged use unless it repeats the
/// `Idempotency-Key` of an earlier one.
pub async fn records(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(user): Caller,
    path: web::Path<i64>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let page = datasets::read_page(
        &state.db,
        &user,
        path.into_inner(),
        q.page.unwrap_or(1),
        q.per_page.unwrap_or(100),
        idempotency_key(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The whole dataset, streamed (`?format=`, JSONL with provenance by
/// default); one charged use.
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(user): Caller,
    path: web::Path<i64>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse> {
    let format = q.format()?;
    let id = path.into_inner();
    let d = datasets::get(&state.db.conn, id).await?;
    let p = projects::get(&state.db.conn, d.project_id).await?;
    // Refuse a format the type cannot take before charging for it.
    format.check(p.row.task_type.as_str())?;
    let (d, charge) = datasets::charge_export(&state.db, &user, id, idempotency_key(&req)).await?;
    let source = formats::Source::Dataset {
        dataset: d.id,
        project: d.project_id,
    };
    let body = formats::stream_from(state.db.conn.clone(), &p, source, format)?;
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .insert_header(("x-sahel-use-id", charge.use_id.to_string()))
        .insert_header(("x-sahel-charged", charge.amount.0.to_string()))
        .streaming(body))
}

/// Runs royalty distribution until idle (bounded), for operators and tests;
/// the server also runs it in the background.
pub async fn run_royalties(
    state: web::Data<AppState>,
    Caller(user): Caller,
) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    let mut run = RoyaltyRun::default();
    for s in royalty::run_until_idle(&state.db, 10_000).await? {
        match s {
            Step::Opened { .. } => run.rounds_opened += 1,
            Step::Paid { payees, .. } => {
                run.batches_paid += 1;
                run.payments += payees as u64;
            }
            Step::Idle => {}
        }
    }
    Ok(HttpResponse::Ok().json(run))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

impl ExportQuery {
    /// The format asked for; JSONL with provenance when none is.
    fn format(&self) -> Result<formats::ExportFormat> {
        formats::ExportFormat::parse(self.format.as_deref().unwrap_or("jsonl"))
    }
}

/// A project's resolved items, for its buyer, streamed page by page in
/// the format asked (`?format=jsonl|csv|label_studio|coco`, JSONL with
/// provenance by default).
pub async fn project_export(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse> {
    let format = q.format()?;
    let p = projects::get_owned(&state.db.conn, &user, path.into_inner()).await?;
    let body = formats::stream(state.db.conn.clone(), &p, format)?;
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{}\"", format.file_name(p.row.id)),
        ))
        .streaming(body))
}

/// Writes a project's export into object storage (content-addressed, so
/// the same results are stored once) and says where to download it.
pub async fn store_export(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse> {
    let format = q.format()?;
    let p = projects::get_owned(&state.db.conn, &user, path.into_inner()).await?;
    let body = Box::pin(formats::stream(state.db.conn.clone(), &p, format)?);
    let unlimited = crate::artifacts::Limits {
        max_bytes: u64::MAX,
        accept: Vec::new(),
    };
    let mut stored = state.artifacts.put_stream(body, &unlimited).await?;
    // The format is known; sniffing text formats would only guess it.
    stored.media_type = format.media_type().to_owned();
    let artifact =
        crate::artifacts::record_upload(&state.db, &state.artifacts, user.id, &stored).await?;
    Ok(
        HttpResponse::Created().json(sahel_protocol::api::StoredExport {
            project_id: p.row.id,
            format: format.as_str().to_owned(),
            download: format!("/api/v1/artifacts/{}", artifact.sha256),
            artifact,
        }),
    )
}
