//! The quality engine's routes: settings, gold, the buyer's report, and a
//! manual step of the background re-estimation for operators.

use actix_web::{HttpResponse, web};
use sahel_protocol::api::{MarkGold, QualitySettingsRequest, Role};

use super::extract::{Authed, Caller};
use crate::consensus::quality::{self, gold, report, run};
use crate::error::Result;
use crate::projects;
use crate::state::AppState;

pub async fn settings(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = projects::get_visible(&state.db.conn, &user, path.into_inner()).await?;
    let s = quality::settings(&state.db.conn, p.row.id).await?;
    Ok(HttpResponse::Ok().json(quality::view(&p, s.as_ref())))
}

pub async fn put_settings(
    state: web::Data<AppState>,
    Authed(user, req): Authed<QualitySettingsRequest>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(quality::put_settings(&state.db, &user, path.into_inner(), req).await?))
}

pub async fn report(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(report::report(&state.db.conn, &user, path.into_inner()).await?))
}

pub async fn mark_gold(
    state: web::Data<AppState>,
    Authed(user, req): Authed<MarkGold>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(gold::mark(&state.db, &user, path.into_inner(), req).await?))
}

pub async fn list_gold(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(gold::list(&state.db.conn, &user, path.into_inner()).await?))
}

pub async fn run_once(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(run::run_once(&state).await?))
}
