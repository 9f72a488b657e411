use actix_web::{HttpResponse, web};
use sahel_protocol::api::{
    LeaseAnyRequest, LeaseRequest, LeaseResponse, SubmitAnswer, SubmitBatch, SubmitBatchResponse,
};

use super::extract::{AuthedPending, Caller};
use crate::error::Result;
use crate::queue;
use crate::state::AppState;

/// The hot paths record a signed request's nonce inside their own write
/// transaction; `settle` records it on its own when they did not commit.
pub async fn lease(
    state: web::Data<AppState>,
    AuthedPending(user, mut nonce, req): AuthedPending<LeaseRequest>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let tasks = queue::lease(&state, &user, &mut nonce, path.into_inner(), req.count).await;
    nonce.settle(&state.db).await?;
    Ok(HttpResponse::Ok().json(LeaseResponse { tasks: tasks? }))
}

pub async fn submit(
    state: web::Data<AppState>,
    AuthedPending(user, mut nonce, req): AuthedPending<SubmitAnswer>,
) -> Result<HttpResponse> {
    let submission = queue::submit(&state, &user, &mut nonce, req).await;
    nonce.settle(&state.db).await?;
    Ok(HttpResponse::Ok().json(submission?))
}

pub async fn release(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    queue::release(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
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
    AuthedPending(user, nonce, req): AuthedPending<LeaseAnyRequest>,
) -> Result<HttpResponse> {
    let tasks = queue::lease_any(&state, &user, nonce, req.count).await?;
    Ok(HttpResponse::Ok().json(LeaseResponse { tasks }))
}

pub async fn submit_batch(
    state: web::Data<AppState>,
    AuthedPending(user, mut nonce, req): AuthedPending<SubmitBatch>,
) -> Result<HttpResponse> {
    let results = queue::submit_batch(&state, &user, &mut nonce, req).await;
    nonce.settle(&state.db).await?;
    Ok(HttpResponse::Ok().json(SubmitBatchResponse { results: results? }))
}

pub async fn renew(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(queue::renew(&state, &user, path.into_inner()).await?))
}

pub async fn my_leases(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(queue::my_leases(&state.db.conn, &user).await?))
}
