use actix_web::{HttpRequest, HttpResponse, web};
use sahel_protocol::api::{PublishDataset, Role, RoyaltyRun};
use serde::Deserialize;

use super::extract::{Authed, Caller};
use crate::datasets;
use crate::error::Result;
use crate::ledger::royalty::{self, Step};
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

/// The whole dataset as JSON lines; one charged use.
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let (_, records, charge) =
        datasets::export(&state.db, &user, path.into_inner(), idempotency_key(&req)).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("x-sahel-use-id", charge.use_id.to_string()))
        .insert_header(("x-sahel-charged", charge.amount.0.to_string()))
        .body(jsonl(&records)?))
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

fn jsonl<T: serde::Serialize>(lines: &[T]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut body, l).map_err(anyhow::Error::from)?;
        body.push(b'\n');
    }
    Ok(body)
}

/// A project's resolved items with provenance, for its buyer.
pub async fn project_export(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let lines = datasets::project_export(&state.db.conn, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(jsonl(&lines)?))
}
