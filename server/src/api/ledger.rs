use actix_web::{HttpResponse, web};
use sahel_protocol::api::{Balance, DepositRequest, Role};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Authed, Caller};
use crate::error::Result;
use crate::ledger::{self, AccountRef};
use crate::state::AppState;

pub async fn my_balance(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    let balance = ledger::balance(&state.db.conn, AccountRef::User(user.id)).await?;
    Ok(HttpResponse::Ok().json(Balance {
        user_id: user.id,
        balance,
    }))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<u64>,
}

pub async fn my_history(
    state: web::Data<AppState>,
    Caller(user): Caller,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(HttpResponse::Ok()
        .json(ledger::history(&state.db.conn, AccountRef::User(user.id), limit).await?))
}

pub async fn deposit(
    state: web::Data<AppState>,
    Authed(user, req): Authed<DepositRequest>,
) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    let receipt = ledger::deposit(&state.db, req).await?;
    Ok(HttpResponse::Created().json(receipt))
}

pub async fn audit(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    let a = ledger::audit(&state.db.conn).await?;
    Ok(HttpResponse::Ok().json(json!({
        "clean": a.is_clean(),
        "postings_total": a.postings_total,
        "unbalanced_transactions": a.unbalanced_transactions,
        "balance_mismatches": a.balance_mismatches,
        "negative_accounts": a.negative_accounts,
    })))
}
