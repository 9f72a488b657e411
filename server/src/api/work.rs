use actix_web::{HttpResponse, web};
use sahel_protocol::api::{
    LeaseAnyRequest, LeaseRequest, LeaseResponse, SubmitAnswer, SubmitBatch, SubmitBatchResponse,
};

use super::extract::{Authed, Caller};
use crate::error::Result;
use crate::queue;
use crate::state::AppState;

pub async fn lease(
    state: web::Data<AppState>,
    Authed(user, req): Authed<LeaseRequest>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let tasks = queue::lease(&state, &user, path.into_inner(), req.count).await?;
    Ok(HttpResponse::Ok().json(LeaseResponse { tasks }))
}

pub async fn release(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    queue::release(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn submit(
    state: web::Data<AppState>,
    Authed(user, req): Authed<SubmitAnswer>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(queue::submit(&state, &user, req).await?))
}

pub async fn get_submission(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(queue::get_submission(&state.db.conn, &user, path.into_inner()).await?))
}

pub async fn lease_any(
    state: web::Data<AppState>,
    Authed(user, req): Authed<LeaseAnyRequest>,
) -> Result<HttpResponse> {
    let tasks = queue::lease_any(&state, &user, req.count).await?;
    Ok(HttpResponse::Ok().json(LeaseResponse { tasks }))
}

pub async fn submit_batch(
    state: web::Data<AppState>,
    Authed(user, req): Authed<SubmitBatch>,
) -> Result<HttpResponse> {
    let results = queue::submit_batch(&state, &user, req).await?;
    Ok(HttpResponse::Ok().json(SubmitBatchResponse { results }))
}
