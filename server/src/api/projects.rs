use actix_web::{HttpResponse, web};
use sahel_protocol::api::{CloseProject, CreateProject, FundRequest};
use serde::Deserialize;

use super::extract::{Authed, AuthedUpload, Caller};
use crate::error::Result;
use crate::projects::{self, NewProject, import};
use crate::state::AppState;

pub async fn create(
    state: web::Data<AppState>,
    Authed(user, req): Authed<CreateProject>,
) -> Result<HttpResponse> {
    let p = projects::create(&state.db, &user, NewProject::try_from(req)?).await?;
    Ok(HttpResponse::Created().json(p.to_api()))
}

pub async fn list(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(projects::list(&state.db.conn, &user).await?))
}

pub async fn get(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        projects::get_visible(&state.db.conn, &user, path.into_inner())
            .await?
            .to_api(),
    ))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    format: Option<String>,
    #[serde(default)]
    partial: bool,
}

pub async fn import(
    state: web::Data<AppState>,
    AuthedUpload(user, body): AuthedUpload,
    path: web::Path<i64>,
    q: web::Query<ImportQuery>,
) -> Result<HttpResponse> {
    let format = import::Format::parse(q.format.as_deref().unwrap_or("jsonl"))?;
    let limit = state.config.max_import_bytes;
    let report = import::import_stream(
        &state.db,
        &user,
        path.into_inner(),
        format,
        q.partial,
        body.into_stream(),
        limit,
    )
    .await?;
    Ok(HttpResponse::Created().json(report))
}

pub async fn fund(
    state: web::Data<AppState>,
    Authed(user, req): Authed<FundRequest>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = projects::fund(&state.db, &user, path.into_inner(), &req.idempotency_key).await?;
    crate::queue::load_project(&state, p.row.id).await?;
    Ok(HttpResponse::Ok().json(p.to_api()))
}

pub async fn progress(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = projects::get_visible(&state.db.conn, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(projects::progress(&state.db.conn, &p).await?))
}

pub async fn close(
    state: web::Data<AppState>,
    Authed(user, req): Authed<CloseProject>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let closed = projects::close(&state.db, &user, id, &req.idempotency_key).await?;
    // Committed: now the queue forgets the project.
    crate::queue::forget(&*state.queue, id).await;
    Ok(HttpResponse::Ok().json(closed))
}

/// Stops handing out tasks; leases already taken may still be answered.
pub async fn pause(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = projects::pause(&state.db, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(p.to_api()))
}

pub async fn resume(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = projects::resume(&state.db, &user, path.into_inner()).await?;
    // The queue kept a paused bounty (or lost it in a restart: start-up
    // loads only open ones); either way it holds it after this.
    crate::queue::load_project(&state, p.row.id).await?;
    Ok(HttpResponse::Ok().json(p.to_api()))
}
