//! Provenance signatures on answers: checked when a contributor signs,
//! made with a custodial per-account key when they do not.
//!
//! The custodial secret is stored XORed with a pad derived from the server
//! key and the user id, so a database dump alone cannot sign for anyone.
//! A user who revokes their custodial key must sign every answer with one
//! of their own linked keys from then on.

use ed25519_dalek::SigningKey;
use sahel_protocol::api;
use sahel_protocol::provenance::{provenance_message, sign_answer};
use sahel_protocol::signing;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::Value;

use super::entity::{custodial_key, user_key};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};
use crate::ledger::receipts::ServerKey;

const CUSTODIAL_DOMAIN: &str = "SAHEL-CUSTODIAL-KEY-V1";

/// A verified provenance signature, ready for the answer row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub signature: String,
    pub public_key: String,
    /// `client` or `custodial`.
    pub signed_by: &'static str,
}

fn unwrap_secret(server: &ServerKey, user_id: i64, wrapped: &str) -> Result<SigningKey> {
    let bytes: [u8; 32] = hex::decode(wrapped)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("custodial key of user {user_id} is unreadable"))?;
    let pad = server.derive(CUSTODIAL_DOMAIN, user_id);
    let mut secret = [0u8; 32];
    for i in 0..32 {
        secret[i] = bytes[i] ^ pad[i];
    }
    Ok(SigningKey::from_bytes(&secret))
}

/// The user's active custodial key, created on first use; `None` when the
/// user revoked it.
async fn custodial(
    conn: &impl ConnectionTrait,
    server: &ServerKey,
    user_id: i64,
) -> Result<Option<SigningKey>> {
    if let Some(row) = custodial_key::Entity::find_by_id(user_id).one(conn).await? {
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        return unwrap_secret(server, user_id, &row.wrapped_secret).map(Some);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    let pad = server.derive(CUSTODIAL_DOMAIN, user_id);
    let wrapped: Vec<u8> = secret.iter().zip(pad).map(|(s, p)| s ^ p).collect();
    // Two first answers of one contributor may race to create the key
    // (answers are signed before the write gate): the first insert wins,
    // and both sign with the key it stored.
    custodial_key::Entity::insert(custodial_key::ActiveModel {
        user_id: Set(user_id),
        public_key: Set(signing::public_key_hex(&key.verifying_key())),
        wrapped_secret: Set(hex::encode(wrapped)),
        created_at: Set(now_ms()),
        revoked_at: Set(None),
    })
    .on_conflict_do_nothing_on([custodial_key::Column::UserId])
    .exec_without_returning(conn)
    .await?;
    let row = custodial_key::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the custodial key of user {user_id} vanished"))?;
    unwrap_secret(server, user_id, &row.wrapped_secret).map(Some)
}

/// Checks a contributor's signature against their linked keys, or signs
/// with their custodial key when they sent none. `request_key` is the key
/// that signed the request itself, already found linked and unrevoked by
/// authentication: the answer's signature is tried against it first,
/// without reading the keys again.
pub async fn sign_or_verify(
    conn: &impl ConnectionTrait,
    server: &ServerKey,
    user_id: i64,
    (content_hash, guideline_version): (&str, &str),
    answer: &Value,
    (signature, request_key): (Option<&str>, Option<&str>),
) -> Result<Provenance> {
    match signature {
        Some(sig) => {
            let message = provenance_message(content_hash, guideline_version, answer);
            let signed = |key: &str| {
                signing::parse_public_key(key)
                    .is_ok_and(|vk| signing::verify(&vk, &message, sig).is_ok())
            };
            let by = |public_key: String| Provenance {
                signature: sig.to_ascii_lowercase(),
                public_key,
                signed_by: "client",
            };
            if let Some(k) = request_key
                && signed(k)
            {
                return Ok(by(k.to_owned()));
            }
            let keys = user_key::Entity::find()
                .filter(user_key::Column::UserId.eq(user_id))
                .filter(user_key::Column::RevokedAt.is_null())
                .all(conn)
                .await?;
            if let Some(k) = keys.into_iter().find(|k| signed(&k.public_key)) {
                return Ok(by(k.public_key));
            }
            Err(Error::invalid(
                "invalid-answer-signature",
                "the signature is not one of your linked keys' over this item's content hash, \
                 the guideline version and the normalized answer",
            ))
        }
        None => {
            let Some(key) = custodial(conn, server, user_id).await? else {
                return Err(Error::invalid(
                    "signature-required",
                    "you revoked the server-held key: sign your answers with your own key",
                ));
            };
            Ok(Provenance {
                signature: sign_answer(&key, content_hash, guideline_version, answer),
                public_key: signing::public_key_hex(&key.verifying_key()),
                signed_by: "custodial",
            })
        }
    }
}

pub async fn custodial_info(
    db: &Db,
    server: &ServerKey,
    user_id: i64,
) -> Result<api::CustodialKey> {
    if let Some(row) = custodial_key::Entity::find_by_id(user_id)
        .one(&db.conn)
        .await?
    {
        return Ok(api::CustodialKey {
            public_key: row.public_key,
            active: row.revoked_at.is_none(),
        });
    }
    let tx = db.write().await?;
    let key = custodial(&*tx, server, user_id).await?;
    tx.commit().await?;
    let key = key.ok_or_else(|| anyhow::anyhow!("a new custodial key is revoked"))?;
    Ok(api::CustodialKey {
        public_key: signing::public_key_hex(&key.verifying_key()),
        active: true,
    })
}

/// The user takes over: the server forgets how to sign for them (the
/// wrapped secret is erased) and refuses their unsigned answers.
pub async fn revoke_custodial(
    db: &Db,
    server: &ServerKey,
    user_id: i64,
) -> Result<api::CustodialKey> {
    let tx = db.write().await?;
    if custodial_key::Entity::find_by_id(user_id)
        .one(&*tx)
        .await?
        .is_none()
    {
        custodial(&*tx, server, user_id).await?;
    }
    custodial_key::Entity::update_many()
        .col_expr(custodial_key::Column::RevokedAt, Expr::value(now_ms()))
        .col_expr(custodial_key::Column::WrappedSecret, Expr::value(""))
        .filter(custodial_key::Column::UserId.eq(user_id))
        .filter(custodial_key::Column::RevokedAt.is_null())
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    let row = custodial_key::Entity::find_by_id(user_id)
        .one(&db.conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("custodial key row vanished"))?;
    Ok(api::CustodialKey {
        public_key: row.public_key,
        active: false,
    })
}
