use actix_web::{HttpResponse, web};
use sahel_protocol::api::{LinkKeyRequest, LoginRequest, LoginResponse, RegisterRequest};

use super::extract::{Authed, Caller, JsonBody};
use crate::accounts::{self, NewUser, to_api_user};
use crate::error::Result;
use crate::state::AppState;

pub async fn register(
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<HttpResponse> {
    let password = req.password.clone();
    let email = req.email.clone();
    let u = accounts::create_user(&state.db, NewUser::from_request(req)?).await?;
    let (_, token) = accounts::login(&state.db, &email, &password, Some("sign-up".into())).await?;
    Ok(HttpResponse::Created().json(LoginResponse {
        user: to_api_user(&u),
        token,
    }))
}

pub async fn login(
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<HttpResponse> {
    let (u, token) = accounts::login(&state.db, &req.email, &req.password, req.token_label).await?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        user: to_api_user(&u),
        token,
    }))
}

pub async fn me(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(accounts::me(&state.db.conn, user.id).await?))
}

pub async fn link_key(
    state: web::Data<AppState>,
    Authed(user, req): Authed<LinkKeyRequest>,
) -> Result<HttpResponse> {
    accounts::link_key(&state.db, user.id, req).await?;
    Ok(HttpResponse::Created().json(accounts::me(&state.db.conn, user.id).await?))
}

pub async fn revoke_key(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    accounts::revoke_key(&state.db, user.id, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(accounts::me(&state.db.conn, user.id).await?))
}

pub async fn custodial_key(
    state: web::Data<AppState>,
    Caller(user): Caller,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(accounts::provenance::custodial_info(&state.db, &state.server_key, user.id).await?))
}

/// The user takes over signing: the server's key for them is erased.
pub async fn revoke_custodial_key(
    state: web::Data<AppState>,
    Caller(user): Caller,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(accounts::provenance::revoke_custodial(&state.db, &state.server_key, user.id).await?))
}
