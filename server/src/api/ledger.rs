use actix_web::{HttpResponse, web};
use sahel_protocol::api::{
    Balance, CloseEpoch, DepositRequest, ReceiptPage, Role, ServerKeyInfo, SetPayoutAddress,
    WithdrawalRequest,
};
use sahel_protocol::receipt::RECEIPT_DOMAIN;
use serde::Deserialize;

use super::extract::{Authed, Caller};
use crate::error::Error;
use crate::error::Result;
use crate::ledger::{self, AccountRef, payments, receipts, settlement};
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

/// Re-derives every ledger invariant, the receipt chain and its
/// signatures included.
pub async fn audit(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    receipts::seal(&state.db, &state.server_key).await?;
    let key = state.server_key.verifying_key();
    let a = ledger::audit_with_key(&state.db.conn, Some(&key)).await?;
    Ok(HttpResponse::Ok().json(a.to_json()))
}

pub async fn server_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ServerKeyInfo {
        algorithm: "ed25519".into(),
        public_key: state.server_key.public_hex(),
        receipt_domain: String::from_utf8_lossy(RECEIPT_DOMAIN).into_owned(),
    })
}

#[derive(Deserialize)]
pub struct ReceiptsQuery {
    after_seq: Option<u64>,
    limit: Option<u64>,
}

pub async fn my_receipts(
    state: web::Data<AppState>,
    Caller(user): Caller,
    q: web::Query<ReceiptsQuery>,
) -> Result<HttpResponse> {
    receipts::seal(&state.db, &state.server_key).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    let (bundle, next_after_seq) = receipts::bundle_for_user(
        &state.db.conn,
        &state.server_key,
        user.id,
        q.after_seq.unwrap_or(0),
        limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ReceiptPage {
        bundle,
        next_after_seq,
    }))
}

pub async fn set_payout_address(
    state: web::Data<AppState>,
    Authed(user, req): Authed<SetPayoutAddress>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(payments::set_payout_address(&state.db, user.id, req).await?))
}

pub async fn payout_address(
    state: web::Data<AppState>,
    Caller(user): Caller,
) -> Result<HttpResponse> {
    match payments::payout_address(&state.db.conn, user.id).await? {
        Some(a) => Ok(HttpResponse::Ok().json(a)),
        None => Err(Error::not_found(
            "no-payout-address",
            "no payout address is set",
        )),
    }
}

pub async fn request_withdrawal(
    state: web::Data<AppState>,
    Authed(user, req): Authed<WithdrawalRequest>,
) -> Result<HttpResponse> {
    let w = payments::request_withdrawal(&state.db, user.id, req).await?;
    Ok(HttpResponse::Created().json(w))
}

pub async fn withdrawals(state: web::Data<AppState>, Caller(user): Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(payments::withdrawals(&state.db.conn, user.id).await?))
}

pub async fn close_epoch(
    state: web::Data<AppState>,
    Authed(user, req): Authed<CloseEpoch>,
) -> Result<HttpResponse> {
    user.require(Role::Admin)?;
    let dir = state.config.data_dir.join("settlement");
    let e = settlement::close_epoch(
        &state.db,
        &req.idempotency_key,
        state.config.payout_decimals,
        Some(&dir),
    )
    .await?;
    Ok(HttpResponse::Created().json(e))
}

/// `latest` or an epoch number.
fn epoch_id(raw: &str) -> Result<Option<i64>> {
    if raw == "latest" {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|_| Error::not_found("epoch-not-found", format!("no settlement epoch {raw:?}")))
}

pub async fn epoch(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(settlement::get(&state.db.conn, epoch_id(&path)?).await?))
}

pub async fn epoch_file(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(settlement::file(&state.db.conn, epoch_id(&path)?).await?))
}

#[derive(Deserialize)]
pub struct ProofQuery {
    epoch: Option<i64>,
}

pub async fn my_settlement_proof(
    state: web::Data<AppState>,
    Caller(user): Caller,
    q: web::Query<ProofQuery>,
) -> Result<HttpResponse> {
    Ok(
        HttpResponse::Ok()
            .json(settlement::proof_for_user(&state.db.conn, user.id, q.epoch).await?),
    )
}
