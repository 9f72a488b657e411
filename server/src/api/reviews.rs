//! Review tasks for the reviewed task types (free text, file collection).

use actix_web::{HttpResponse, web};
use sahel_protocol::api::{NewGoldReview, ReviewLeaseResponse, SubmitReview};

use super::extract::{Authed, Caller};
use crate::consensus::review::{self, gold};
use crate::error::Result;
use crate::state::AppState;

pub async fn lease(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let task = review::lease(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ReviewLeaseResponse { task }))
}

pub async fn submit(
    state: web::Data<AppState>,
    Authed(user, req): Authed<SubmitReview>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(review::submit(&state, &user, path.into_inner(), req).await?))
}

/// Gives a review lease back unused (a skip).
pub async fn release(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    review::release(&state, &user, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reviews of the caller's answers, newest first (verdict and reason).
pub async fn mine(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    let reviews = crate::consensus::review::reviews_of_author(&state.db.conn, user.id, 100).await?;
    Ok(HttpResponse::Ok().json(reviews))
}

/// Adds a gold review: an answer whose right verdict the buyer knows.
pub async fn add_gold(
    state: web::Data<AppState>,
    Authed(user, req): Authed<NewGoldReview>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let g = gold::create(&state.db, &user, path.into_inner(), req).await?;
    Ok(HttpResponse::Created().json(g))
}

pub async fn list_gold(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(gold::list(&state.db.conn, &user, path.into_inner()).await?))
}

/// Reviewers' records on a bounty: reviews, gold accuracy, suspensions.
pub async fn reviewers(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(gold::reviewers(&state.db.conn, &user, path.into_inner()).await?))
}
