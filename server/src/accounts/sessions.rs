//! Browser sessions: what the web UI's cookie stands for.
//!
//! The cookie carries a random token; the table keeps only its SHA-256, as
//! for API tokens. Every session has its own CSRF token: a request that the
//! cookie authenticates may change state only if it also carries that
//! token (a form field for HTML forms, the `X-CSRF-Token` header for the
//! JSON API), which a page on another origin cannot read. Sessions end at
//! log-out or after [`LIFETIME_MS`], whichever comes first.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::entity::user;
use super::{AuthUser, Roles, random_hex, sha256_hex};
use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

/// The session cookie's name.
pub const COOKIE: &str = "sahel_session";
/// The header that carries the CSRF token on cookie-authenticated JSON
/// requests (the page reads it from its own HTML).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session lasts 14 days from log-in, however active.
pub const LIFETIME_MS: i64 = 14 * 24 * 3600 * 1000;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "web_sessions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Hex SHA-256 of the cookie's token; the token is never stored.
        pub token_hash: String,
        pub user_id: i64,
        pub csrf_token: String,
        pub created_at: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity as web_session;

/// A live session and its user.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: i64,
    pub csrf_token: String,
    pub expires_at: i64,
    pub user: user::Model,
}

impl Session {
    pub fn auth(&self) -> AuthUser {
        AuthUser {
            id: self.user.id,
            roles: Roles::from_bits(self.user.roles),
        }
    }

    /// Whether `given` is this session's CSRF token.
    pub fn csrf_ok(&self, given: &str) -> bool {
        constant_time_eq(self.csrf_token.as_bytes(), given.as_bytes())
    }

    /// Refuses a state-changing request without this session's token.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<()> {
        match given {
            Some(g) if self.csrf_ok(g) => Ok(()),
            Some(_) => Err(Error::forbidden(
                "csrf-mismatch",
                "the CSRF token does not belong to this session; reload the page and try again",
            )),
            None => Err(Error::forbidden(
                "csrf-missing",
                "this request needs the session's CSRF token",
            )),
        }
    }
}

/// A session just started: the token goes into the cookie, once.
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

/// Compares two secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a password and starts a session. Creates no API token.
pub async fn log_in(db: &Db, email: &str, password: &str) -> Result<NewSession> {
    let refused = || Error::unauthorized("bad-credentials", "unknown email or wrong password");
    let Some(u) = super::find_by_email(&db.conn, email).await? else {
        return Err(refused());
    };
    if !super::verify_password(password.to_owned(), u.password_hash.clone()).await? {
        return Err(refused());
    }
    start(db, u).await
}

/// Starts a session for a user (after sign-up or log-in), sweeping
/// expired sessions on the way so the table stays small without a job.
pub async fn start(db: &Db, u: user::Model) -> Result<NewSession> {
    let token = random_hex(32);
    let csrf_token = random_hex(32);
    let now = now_ms();
    let tx = db.write().await?;
    web_session::Entity::delete_many()
        .filter(web_session::Column::ExpiresAt.lt(now))
        .exec(&*tx)
        .await?;
    let row = web_session::ActiveModel {
        token_hash: Set(sha256_hex(token.as_bytes())),
        user_id: Set(u.id),
        csrf_token: Set(csrf_token),
        created_at: Set(now),
        expires_at: Set(now + LIFETIME_MS),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(NewSession {
        token,
        session: Session {
            id: row.id,
            csrf_token: row.csrf_token,
            expires_at: row.expires_at,
            user: u,
        },
    })
}

/// The live session a cookie's token stands for.
pub async fn authenticate(conn: &impl ConnectionTrait, token: &str) -> Result<Session> {
    let refused = || Error::unauthorized("session-expired", "your session has ended; log in again");
    let row = web_session::Entity::find()
        .filter(web_session::Column::TokenHash.eq(sha256_hex(token.as_bytes())))
        .filter(web_session::Column::ExpiresAt.gt(now_ms()))
        .one(conn)
        .await?
        .ok_or_else(refused)?;
    let u = user::Entity::find_by_id(row.user_id)
        .one(conn)
        .await?
        .ok_or_else(refused)?;
    Ok(Session {
        id: row.id,
        csrf_token: row.csrf_token,
        expires_at: row.expires_at,
        user: u,
    })
}

/// Ends a session (log-out). Ending an unknown one is not an error.
pub async fn end(db: &Db, session_id: i64) -> Result<()> {
    let tx = db.write().await?;
    web_session::Entity::delete_by_id(session_id)
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
