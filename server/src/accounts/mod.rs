//! Users, roles, passwords (argon2), bearer API tokens, and the ed25519 keys
//! that sign CLI requests.
//!
//! Tokens and passwords are stored only as hashes. A public key is linked
//! to an account only with a proof signed by its private key, and a signed
//! request is accepted once: stale timestamps and seen nonces are refused.

pub mod entity;
pub mod provenance;
pub mod sessions;

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sahel_protocol::Timestamp;
use sahel_protocol::api::{self, Role};
use sahel_protocol::signing::{self, MAX_CLOCK_SKEW_SECS, RequestParts};
use sea_orm::JoinType;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sha2::{Digest, Sha256};

use crate::db::{Db, now_ms};
use crate::error::{Error, Result, is_unique_violation};
use crate::ledger::{self, AccountRef};
use entity::{api_token, request_nonce, user, user_key};

/// A set of roles, stored as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles(i32);

impl Roles {
    fn bit(role: Role) -> i32 {
        match role {
            Role::Buyer => 1,
            Role::Contributor => 2,
            Role::Reviewer => 4,
            Role::Admin => 8,
        }
    }

    pub fn from_bits(bits: i32) -> Roles {
        Roles(bits & 0b1111)
    }

    pub fn bits(self) -> i32 {
        self.0
    }

    pub fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |acc, r| acc | Self::bit(*r)))
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn list(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| self.has(*r)).collect()
    }
}

/// Who is making a request, once authenticated.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser {
    pub id: i64,
    pub roles: Roles,
}

impl AuthUser {
    pub fn require(&self, role: Role) -> Result<()> {
        if self.roles.has(role) || self.roles.has(Role::Admin) {
            Ok(())
        } else {
            Err(Error::forbidden(
                "role-required",
                format!("this action needs the {} role", role.as_str()),
            ))
        }
    }
}

/// A validated sign-up.
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub roles: Roles,
}

impl NewUser {
    /// Validates a self-service sign-up; `admin` cannot be asked for.
    pub fn from_request(req: api::RegisterRequest) -> Result<NewUser> {
        if req.roles.contains(&Role::Admin) {
            return Err(Error::forbidden(
                "role-not-self-assignable",
                "the admin role cannot be chosen at sign-up",
            ));
        }
        let roles = if req.roles.is_empty() {
            Roles::of(&[Role::Contributor])
        } else {
            Roles::of(&req.roles)
        };
        NewUser::new(req.email, req.password, req.display_name, roles)
    }

    pub fn new(
        email: String,
        password: String,
        display_name: String,
        roles: Roles,
    ) -> Result<NewUser> {
        let email = email.trim().to_lowercase();
        let valid_email = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            })
            && !email.chars().any(char::is_whitespace);
        if !valid_email {
            return Err(Error::invalid(
                "invalid-email",
                format!("{email:?} is not an email address"),
            ));
        }
        let n = password.chars().count();
        if !(8..=1024).contains(&n) {
            return Err(Error::invalid(
                "weak-password",
                "the password must be 8 to 1024 characters long",
            ));
        }
        let display_name = display_name.trim().to_owned();
        if display_name.is_empty()
            || display_name.chars().count() > 100
            || display_name.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "invalid-display-name",
                "the display name must be 1 to 100 printable characters",
            ));
        }
        Ok(NewUser {
            email,
            password,
            display_name,
            roles,
        })
    }
}

pub fn to_api_user(u: &user::Model) -> api::User {
    api::User {
        id: u.id,
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        roles: Roles::from_bits(u.roles).list(),
        created_at: Timestamp(u.created_at),
    }
}

/// Argon2 is deliberately slow and memory-hard (19 MiB per hash). Hashes
/// run on a dedicated two-thread runtime: never on an HTTP worker, at most
/// two at a time, and always on the same two threads, so the allocator's
/// per-thread arenas retain at most two hashes' worth of memory (on the
/// shared blocking pool every new thread kept its own 19 MiB).
fn hashing_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sahel-argon2")
            .build()
            .expect("the password hashing threads start")
    })
}

async fn on_hashing_threads<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T> {
    hashing_runtime()
        .spawn(async move { f() })
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map_err(Error::Unexpected)
}

thread_local! {
    /// Argon2's working memory, reused by every hash on this thread so the
    /// 19 MiB are allocated once instead of per hash.
    static ARGON2_BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn argon2_raw(
    alg: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    ARGON2_BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        blocks.resize(params.block_count(), argon2::Block::default());
        Argon2::new(alg, version, params.clone())
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
}

/// Hashes a new password with argon2id and the library's default cost,
/// as a PHC string (`$argon2id$v=19$m=...`).
async fn hash_password(password: String) -> Result<String> {
    on_hashing_threads(move || {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let params = Params::default();
        let mut out = [0u8; 32];
        argon2_raw(
            Algorithm::Argon2id,
            Version::V0x13,
            &params,
            password.as_bytes(),
            &salt_bytes,
            &mut out,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params)
                .try_into()
                .map_err(|e| anyhow::anyhow!("params: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
        };
        Ok(phc.to_string())
    })
    .await
}

/// Checks a password against a stored PHC string, in constant time.
async fn verify_password(password: String, hash: String) -> Result<bool> {
    on_hashing_threads(move || {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        let alg =
            Algorithm::try_from(parsed.algorithm).map_err(|e| anyhow::anyhow!("algorithm: {e}"))?;
        let version = Version::try_from(parsed.version.unwrap_or(0x13))
            .map_err(|e| anyhow::anyhow!("version: {e}"))?;
        let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("params: {e}"))?;
        let expected = parsed
            .hash
            .ok_or_else(|| anyhow::anyhow!("stored hash has no output"))?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or_else(|| anyhow::anyhow!("stored hash has no salt"))?;
        let salt = salt
            .decode_b64(&mut salt_buf)
            .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let mut out = vec![0u8; expected.len()];
        argon2_raw(alg, version, &params, password.as_bytes(), salt, &mut out)?;
        let got = Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?;
        Ok(got == expected)
    })
    .await
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    hex::encode(buf)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Creates a user and their ledger account in one transaction.
pub async fn create_user(db: &Db, new: NewUser) -> Result<user::Model> {
    let password_hash = hash_password(new.password).await?;
    let tx = db.write().await?;
    let now = now_ms();
    let inserted = user::ActiveModel {
        email: Set(new.email.clone()),
        display_name: Set(new.display_name),
        password_hash: Set(password_hash),
        roles: Set(new.roles.bits()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&*tx)
    .await;
    let u = match inserted {
        Ok(u) => u,
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::conflict(
                "email-taken",
                format!("an account with {} already exists", new.email),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    ledger::ensure_account(&*tx, AccountRef::User(u.id)).await?;
    tx.commit().await?;
    Ok(u)
}

pub async fn find_by_email(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(conn)
        .await?)
}

pub async fn get_user(conn: &impl ConnectionTrait, id: i64) -> Result<user::Model> {
    user::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("user-not-found", format!("no user {id}")))
}

/// Checks a password and issues a new API token.
pub async fn login(
    db: &Db,
    email: &str,
    password: &str,
    label: Option<String>,
) -> Result<(user::Model, String)> {
    let refused = || Error::unauthorized("bad-credentials", "unknown email or wrong password");
    let Some(u) = find_by_email(&db.conn, email).await? else {
        return Err(refused());
    };
    if !verify_password(password.to_owned(), u.password_hash.clone()).await? {
        return Err(refused());
    }
    let token = create_token(db, u.id, label).await?;
    Ok((u, token))
}

pub async fn create_token(db: &Db, user_id: i64, label: Option<String>) -> Result<String> {
    let token = format!("sahel_{}", random_hex(32));
    let tx = db.write().await?;
    api_token::ActiveModel {
        user_id: Set(user_id),
        token_hash: Set(sha256_hex(token.as_bytes())),
        label: Set(label.map(|l| l.chars().take(100).collect())),
        created_at: Set(now_ms()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&*tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// (user id, roles) of the owner of a token or key row, in one query.
async fn owner_of<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    query: sea_orm::Select<E>,
    owner_column: E::Column,
) -> Result<Option<AuthUser>> {
    let rel = E::belongs_to(user::Entity)
        .from(owner_column)
        .to(user::Column::Id)
        .into();
    let row: Option<(i64, i32)> = query
        .select_only()
        .column_as(Expr::col((user::Entity, user::Column::Id)), "uid")
        .column_as(Expr::col((user::Entity, user::Column::Roles)), "roles")
        .join(JoinType::InnerJoin, rel)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(row.map(|(id, roles)| AuthUser {
        id,
        roles: Roles::from_bits(roles),
    }))
}

pub async fn authenticate_token(conn: &impl ConnectionTrait, token: &str) -> Result<AuthUser> {
    let query = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(sha256_hex(token.as_bytes())))
        .filter(api_token::Column::RevokedAt.is_null());
    owner_of(conn, query, api_token::Column::UserId)
        .await?
        .ok_or_else(|| Error::unauthorized("bad-token", "the bearer token is unknown or revoked"))
}

/// The four signature headers of a request, as received.
pub struct SignatureHeaders<'a> {
    pub key: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// A verified request's (key, nonce) pair, not yet recorded. Recording it
/// is the replay check: the primary key refuses a second (key, nonce), on
/// every replica alike.
#[derive(Clone, Debug)]
pub struct NonceClaim {
    public_key: String,
    nonce: String,
}

/// A nonce that must be recorded before the request's effects are final.
/// Hot paths record it inside their own write transaction ([`Self::record_in`]
/// then [`Self::committed`]), saving a transaction per request; everything
/// else, and every failure, goes through [`Self::settle`].
#[must_use = "an unrecorded nonce lets the request be replayed"]
#[derive(Debug, Default)]
pub struct PendingNonce {
    claim: Option<NonceClaim>,
    recorded: bool,
}

impl PendingNonce {
    pub fn new(claim: Option<NonceClaim>) -> PendingNonce {
        PendingNonce {
            claim,
            recorded: false,
        }
    }

    /// Inserts the nonce inside the caller's transaction.
    pub async fn record_in(&self, conn: &impl ConnectionTrait) -> Result<()> {
        match &self.claim {
            Some(c) => insert_nonce(conn, c).await,
            None => Ok(()),
        }
    }

    /// The signed request's nonce, if the request was signed.
    pub fn claim(&self) -> Option<&NonceClaim> {
        self.claim.as_ref()
    }

    /// The public key that signed the request, if it was signed.
    pub fn signer(&self) -> Option<&str> {
        self.claim.as_ref().map(|c| c.public_key.as_str())
    }

    /// The transaction that recorded the nonce committed.
    pub fn committed(&mut self) {
        self.recorded = true;
    }

    /// Records the nonce on its own unless a committed transaction did.
    pub async fn settle(self, db: &Db) -> Result<()> {
        match (&self.claim, self.recorded) {
            (Some(c), false) => {
                let tx = db.write().await?;
                insert_nonce(&*tx, c).await?;
                tx.commit().await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

async fn insert_nonce(conn: &impl ConnectionTrait, c: &NonceClaim) -> Result<()> {
    match record_nonces(conn, &[c]).await?[..] {
        [check] => check.into_result(),
        _ => Err(anyhow::anyhow!("a nonce was recorded without a result").into()),
    }
}

/// What recording a signed request's nonce found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Seen before: the request is a replay.
    Replayed,
    /// The signing key was revoked (or unlinked) since the request was
    /// authenticated.
    KeyRevoked,
}

impl NonceCheck {
    pub fn is_fresh(self) -> bool {
        self == NonceCheck::Fresh
    }

    pub fn into_result(self) -> Result<()> {
        match self {
            NonceCheck::Fresh => Ok(()),
            NonceCheck::Replayed => Err(replayed()),
            NonceCheck::KeyRevoked => Err(unknown_key()),
        }
    }
}

/// Records many requests' nonces in one statement (inside the caller's
/// transaction) and says, for each, whether it was fresh; a refused one is
/// left out instead of failing the others.
///
/// A nonce is recorded only while its key is linked and unrevoked, so the
/// transaction that makes a signed request's effects final is also the one
/// that checks its key: a revocation on any replica refuses every request
/// not yet committed, whatever [`KeyCache`] holds.
pub async fn record_nonces(
    conn: &impl ConnectionTrait,
    claims: &[&NonceClaim],
) -> Result<Vec<NonceCheck>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let now = now_ms();
    let (sql, values) = match backend {
        // One statement text whatever the number of claims (`db::shape`).
        sea_orm::DatabaseBackend::Postgres => {
            let claimed: Vec<serde_json::Value> = claims
                .iter()
                .map(|c| serde_json::json!({ "public_key": c.public_key, "nonce": c.nonce }))
                .collect();
            (
                "INSERT INTO request_nonces (public_key, nonce, created_at) \
                 SELECT k.public_key, c.nonce, CAST($2 AS BIGINT) \
                 FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS c(public_key text, nonce text) \
                 JOIN user_keys k ON k.public_key = c.public_key AND k.revoked_at IS NULL \
                 ON CONFLICT (public_key, nonce) DO NOTHING RETURNING public_key, nonce"
                    .to_owned(),
                vec![
                    serde_json::Value::Array(claimed).to_string().into(),
                    now.into(),
                ],
            )
        }
        _ => {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(claims.len() * 3);
            for c in claims {
                values.extend([
                    c.nonce.clone().into(),
                    now.into(),
                    c.public_key.clone().into(),
                ]);
            }
            // Each SELECT ends in a WHERE clause, which SQLite needs to
            // read the ON CONFLICT that follows as the upsert's.
            let select = "SELECT public_key, ?, CAST(? AS BIGINT) FROM user_keys \
                          WHERE public_key = ? AND revoked_at IS NULL";
            let sql = format!(
                "INSERT INTO request_nonces (public_key, nonce, created_at) {} \
                 ON CONFLICT (public_key, nonce) DO NOTHING RETURNING public_key, nonce",
                vec![select; claims.len()].join(" UNION ALL ")
            );
            (sql, values)
        }
    };
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    let mut fresh = std::collections::HashSet::with_capacity(rows.len());
    for r in rows {
        fresh.insert((
            r.try_get::<String>("", "public_key")?,
            r.try_get::<String>("", "nonce")?,
        ));
    }
    // Two calls in one batch may carry the same nonce: only the first is
    // fresh (`remove`).
    let checks: Vec<bool> = claims
        .iter()
        .map(|c| fresh.remove(&(c.public_key.clone(), c.nonce.clone())))
        .collect();
    // Refusals are rare: only then is it worth a statement to say which.
    let refused: Vec<String> = claims
        .iter()
        .zip(&checks)
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c.public_key.clone())
        .collect();
    let linked: Vec<String> = match refused.is_empty() {
        true => Vec::new(),
        false => {
            user_key::Entity::find()
                .select_only()
                .column(user_key::Column::PublicKey)
                .filter(user_key::Column::PublicKey.is_in(refused))
                .filter(user_key::Column::RevokedAt.is_null())
                .into_tuple()
                .all(conn)
                .await?
        }
    };
    Ok(claims
        .iter()
        .zip(checks)
        .map(|(c, ok)| match ok {
            true => NonceCheck::Fresh,
            false if linked.contains(&c.public_key) => NonceCheck::Replayed,
            false => NonceCheck::KeyRevoked,
        })
        .collect())
}

/// The refusal of a signed request whose nonce was seen before.
pub fn replayed() -> Error {
    Error::unauthorized(
        "replayed-request",
        "this nonce was already used; sign each request afresh",
    )
}

fn unknown_key() -> Error {
    Error::unauthorized(
        "unknown-key",
        "this public key is not linked to any account (or was revoked)",
    )
}

/// Who owns a public key, remembered for a while: every signed request
/// would otherwise read it. A key's owner never changes and roles are only
/// ever added, so an entry can only be late, never wrong: a revocation is
/// enforced when the request's nonce is recorded ([`record_nonces`], on
/// every replica at once), and an added role shows once the entry expires.
pub struct KeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (AuthUser, std::time::Instant)>>,
    ttl: std::time::Duration,
}

impl Default for KeyCache {
    fn default() -> KeyCache {
        KeyCache {
            entries: Default::default(),
            ttl: std::time::Duration::from_secs(60),
        }
    }
}

/// Past this many keys the cache starts over rather than track recency.
const KEY_CACHE_CAP: usize = 100_000;

impl KeyCache {
    fn get(&self, key_hex: &str) -> Option<AuthUser> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key_hex)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(u, _)| *u)
    }

    fn put(&self, key_hex: &str, user: AuthUser) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= KEY_CACHE_CAP {
            entries.clear();
        }
        entries.insert(key_hex.to_owned(), (user, std::time::Instant::now()));
    }
}

/// Verifies a signed request: timestamp within the skew window, signature
/// by a linked, unrevoked key. The nonce comes back unrecorded.
pub async fn authenticate_signature(
    conn: &impl ConnectionTrait,
    keys: &KeyCache,
    h: &SignatureHeaders<'_>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<(AuthUser, NonceClaim)> {
    let ts: i64 = h.timestamp.parse().map_err(|_| {
        Error::unauthorized("bad-signature", "the timestamp header is not unix seconds")
    })?;
    let now_secs = now_ms() / 1000;
    if (now_secs - ts).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(Error::unauthorized(
            "stale-request",
            format!(
                "the request timestamp is more than {MAX_CLOCK_SKEW_SECS} s from the server clock; check your clock"
            ),
        ));
    }
    if h.nonce.len() < 16
        || h.nonce.len() > 64
        || !h.nonce.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::unauthorized(
            "bad-signature",
            "the nonce must be 16 to 64 letters or digits",
        ));
    }
    let vk = signing::parse_public_key(h.key)
        .map_err(|e| Error::unauthorized("bad-signature", e.to_string()))?;
    let parts = RequestParts {
        method,
        path,
        query,
        timestamp: ts,
        nonce: h.nonce,
        body,
    };
    signing::verify(&vk, &parts.canonical_message(), h.signature)
        .map_err(|e| Error::unauthorized("bad-signature", e.to_string()))?;

    let key_hex = signing::public_key_hex(&vk);
    let user = match keys.get(&key_hex) {
        Some(u) => u,
        None => {
            let query = user_key::Entity::find()
                .filter(user_key::Column::PublicKey.eq(key_hex.clone()))
                .filter(user_key::Column::RevokedAt.is_null());
            let u = owner_of(conn, query, user_key::Column::UserId)
                .await?
                .ok_or_else(unknown_key)?;
            keys.put(&key_hex, u);
            u
        }
    };
    Ok((
        user,
        NonceClaim {
            public_key: key_hex,
            nonce: h.nonce.to_owned(),
        },
    ))
}

/// Deletes nonces too old to matter: a request that reused one would be
/// refused for its timestamp anyway. Returns how many were removed.
pub async fn sweep_nonces(db: &Db) -> Result<u64> {
    let cutoff = now_ms() - 2 * MAX_CLOCK_SKEW_SECS * 1000 - 60_000;
    let tx = db.write().await?;
    let res = request_nonce::Entity::delete_many()
        .filter(request_nonce::Column::CreatedAt.lt(cutoff))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(res.rows_affected)
}

pub async fn link_key(db: &Db, user_id: i64, req: api::LinkKeyRequest) -> Result<user_key::Model> {
    let vk = signing::parse_public_key(req.public_key.trim())
        .map_err(|e| Error::invalid("invalid-key", e.to_string()))?;
    let key_hex = signing::public_key_hex(&vk);
    signing::verify(
        &vk,
        &signing::key_link_message(user_id, &key_hex),
        &req.proof,
    )
    .map_err(|_| {
        Error::invalid(
            "invalid-key-proof",
            "the proof is not this key's signature of the key-link message for your account",
        )
    })?;
    let tx = db.write().await?;
    let inserted = user_key::ActiveModel {
        user_id: Set(user_id),
        public_key: Set(key_hex),
        label: Set(req.label.map(|l| l.chars().take(100).collect())),
        created_at: Set(now_ms()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&*tx)
    .await;
    let key = match inserted {
        Ok(k) => k,
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::conflict(
                "key-taken",
                "this public key is already linked (keys cannot be shared or re-linked)",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(key)
}

pub async fn revoke_key(db: &Db, user_id: i64, key_id: i64) -> Result<()> {
    let tx = db.write().await?;
    let res = user_key::Entity::update_many()
        .col_expr(user_key::Column::RevokedAt, Expr::value(now_ms()))
        .filter(user_key::Column::Id.eq(key_id))
        .filter(user_key::Column::UserId.eq(user_id))
        .filter(user_key::Column::RevokedAt.is_null())
        .exec(&*tx)
        .await?;
    if res.rows_affected == 0 {
        return Err(Error::not_found(
            "key-not-found",
            format!("you have no active key {key_id}"),
        ));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn me(conn: &impl ConnectionTrait, user_id: i64) -> Result<api::Me> {
    let u = get_user(conn, user_id).await?;
    let keys = user_key::Entity::find()
        .filter(user_key::Column::UserId.eq(user_id))
        .order_by_asc(user_key::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(|k| api::PublicKeyInfo {
            id: k.id,
            public_key: k.public_key,
            label: k.label,
            created_at: Timestamp(k.created_at),
            revoked_at: k.revoked_at.map(Timestamp),
        })
        .collect();
    Ok(api::Me {
        user: to_api_user(&u),
        keys,
    })
}

/// Creates an admin, or grants the admin role to an existing account. Used
/// by `sahel-server create-admin` and by tests; never reachable over HTTP.
pub async fn ensure_admin(
    db: &Db,
    email: &str,
    password: &str,
    display_name: &str,
) -> Result<user::Model> {
    if let Some(u) = find_by_email(&db.conn, email).await? {
        let tx = db.write().await?;
        let roles = Roles::from_bits(u.roles).bits() | Roles::of(&[Role::Admin]).bits();
        user::Entity::update_many()
            .col_expr(user::Column::Roles, Expr::value(roles))
            .filter(user::Column::Id.eq(u.id))
            .exec(&*tx)
            .await?;
        tx.commit().await?;
        return get_user(&db.conn, u.id).await;
    }
    let new = NewUser::new(
        email.to_owned(),
        password.to_owned(),
        display_name.to_owned(),
        Roles::of(&[Role::Admin]),
    )?;
    create_user(db, new).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_only_the_right_password_and_interoperate_with_the_library() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ours = rt.block_on(hash_password("correct horse".into())).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(
            rt.block_on(verify_password("correct horse".into(), ours.clone()))
                .unwrap()
        );
        assert!(
            !rt.block_on(verify_password("wrong horse".into(), ours.clone()))
                .unwrap()
        );
        // The library's own verifier accepts our hashes, and we accept its.
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"pw-from-lib", &salt)
            .unwrap()
            .to_string();
        assert!(
            rt.block_on(verify_password("pw-from-lib".into(), theirs))
                .unwrap()
        );
    }

    #[test]
    fn roles_round_trip_through_bits() {
        let r = Roles::of(&[Role::Buyer, Role::Reviewer]);
        assert!(r.has(Role::Buyer) && r.has(Role::Reviewer) && !r.has(Role::Admin));
        assert_eq!(
            Roles::from_bits(r.bits()).list(),
            vec![Role::Buyer, Role::Reviewer]
        );
    }

    #[test]
    fn sign_up_validation_refuses_bad_input() {
        let mk = |email: &str, pw: &str, name: &str| {
            NewUser::new(email.into(), pw.into(), name.into(), Roles::default())
        };
        assert!(mk("a@b.c", "longenough", "Ann").is_ok());
        assert!(mk("no-at-sign", "longenough", "Ann").is_err());
        assert!(mk("a@b.c", "short", "Ann").is_err());
        assert!(mk("a@b.c", "longenough", "  ").is_err());
        assert!(mk("a @b.c", "longenough", "Ann").is_err());
        let admin = api::RegisterRequest {
            email: "a@b.c".into(),
            password: "longenough".into(),
            display_name: "Ann".into(),
            roles: vec![Role::Admin],
        };
        assert!(NewUser::from_request(admin).is_err());
    }
}
