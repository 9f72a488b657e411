//! Request extractors: authentication and bodies.
//!
//! A signed request's signature covers its body, so authentication and
//! body reading happen in one extractor ([`Authed`]): actix starts every
//! argument's extractor at once, and two extractors cannot share a payload.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use sahel_protocol::signing::{HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use serde::de::DeserializeOwned;

use crate::accounts::{self, AuthUser, PendingNonce, SignatureHeaders, sessions};
use crate::error::{Error, Result};
use crate::state::AppState;

/// Per-route override of the body size limit (imports take more).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

fn state(req: &HttpRequest) -> Result<AppState> {
    req.app_data::<Data<AppState>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("AppState is not registered")))
}

fn limit(req: &HttpRequest, st: &AppState) -> usize {
    req.app_data::<BodyLimit>()
        .map_or(st.config.max_body_bytes, |l| l.0)
}

async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Error::bad_request("unreadable-body", format!("could not read the body: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::too_large(
                "body-too-large",
                format!("the body exceeds the {limit}-byte limit"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Authenticates a request. A signed request's nonce comes back pending:
/// the caller records it ([`PendingNonce::settle`], or inside its own
/// transaction on hot paths).
async fn authenticate(
    req: &HttpRequest,
    st: &AppState,
    body: &[u8],
) -> Result<(AuthUser, PendingNonce)> {
    if let Some(auth) = header(req, "authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .ok_or_else(|| Error::unauthorized("bad-token", "use Authorization: Bearer <token>"))?;
        let user = accounts::authenticate_token(&st.db.conn, token.trim()).await?;
        return Ok((user, PendingNonce::default()));
    }
    if let Some(signature) = header(req, HEADER_SIGNATURE) {
        let missing = |h: &str| {
            Error::unauthorized(
                "bad-signature",
                format!("a signed request needs the {h} header"),
            )
        };
        let h = SignatureHeaders {
            key: header(req, HEADER_KEY).ok_or_else(|| missing(HEADER_KEY))?,
            timestamp: header(req, HEADER_TIMESTAMP).ok_or_else(|| missing(HEADER_TIMESTAMP))?,
            nonce: header(req, HEADER_NONCE).ok_or_else(|| missing(HEADER_NONCE))?,
            signature,
        };
        let (user, claim) = accounts::authenticate_signature(
            &st.db.conn,
            &st.keys,
            &h,
            req.method().as_str(),
            req.path(),
            req.query_string(),
            body,
        )
        .await?;
        return Ok((user, PendingNonce::new(Some(claim))));
    }
    // The web UI's session cookie. A browser sends it on any request to
    // this origin, including one forged by another site, so a request that
    // can change state must also carry the session's CSRF token in a
    // header, which only this origin's pages can read and set.
    if let Some(cookie) = req.cookie(sessions::COOKIE) {
        let session = sessions::authenticate(&st.db.conn, cookie.value()).await?;
        if !req.method().is_safe() {
            session.check_csrf(header(req, sessions::CSRF_HEADER))?;
        }
        return Ok((session.auth(), PendingNonce::default()));
    }
    Err(Error::unauthorized(
        "unauthenticated",
        "sign in: send a bearer token, a signed request, or a session cookie",
    ))
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.is_empty() {
        return Err(Error::bad_request(
            "invalid-json",
            "the request needs a JSON body",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::bad_request(
            "invalid-json",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T>>>>;

/// Reads the body (within its limit) and authenticates the request over it.
async fn read_authenticated(
    req: &HttpRequest,
    payload: Payload,
) -> Result<(AppState, Bytes, AuthUser, PendingNonce)> {
    let st = state(req)?;
    let body = read_body(payload, limit(req, &st)).await?;
    let (user, nonce) = authenticate(req, &st, &body).await?;
    Ok((st, body, user, nonce))
}

/// The authenticated caller, for requests whose body is ignored.
pub struct Caller(pub AuthUser);

impl FromRequest for Caller {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let (st, _, user, nonce) = read_authenticated(&req, payload).await?;
            nonce.settle(&st.db).await?;
            req.extensions_mut().insert(user);
            Ok(Caller(user))
        })
    }
}

/// The authenticated caller and the raw body.
pub struct AuthedBytes(pub AuthUser, pub Bytes);

impl FromRequest for AuthedBytes {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let (st, body, user, nonce) = read_authenticated(&req, payload).await?;
            nonce.settle(&st.db).await?;
            Ok(AuthedBytes(user, body))
        })
    }
}

/// The authenticated caller and the JSON body parsed as `T`. The caller is
/// checked first: an anonymous request learns nothing about body rules.
pub struct Authed<T>(pub AuthUser, pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Authed<T> {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = AuthedBytes::from_request(req, payload);
        Box::pin(async move {
            let AuthedBytes(user, body) = fut.await?;
            Ok(Authed(user, parse_json(&body)?))
        })
    }
}

/// Like [`Authed`], but the signed request's nonce is left for the handler
/// to record inside its own write transaction (hot paths: one transaction
/// per request instead of two). The handler must `settle` it afterwards.
pub struct AuthedPending<T>(pub AuthUser, pub PendingNonce, pub T);

impl<T: DeserializeOwned + 'static> FromRequest for AuthedPending<T> {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let (st, body, user, nonce) = read_authenticated(&req, payload).await?;
            match parse_json(&body) {
                Ok(parsed) => Ok(AuthedPending(user, nonce, parsed)),
                Err(e) => {
                    nonce.settle(&st.db).await?;
                    Err(e)
                }
            }
        })
    }
}

/// An upload body: held in memory when a signature had to cover it,
/// streamed otherwise.
pub enum UploadBody {
    Buffered(Bytes),
    Streaming(Payload),
}

impl UploadBody {
    pub fn into_stream(
        self,
    ) -> Pin<Box<dyn futures_util::Stream<Item = std::result::Result<Bytes, String>>>> {
        match self {
            UploadBody::Buffered(b) => Box::pin(futures_util::stream::iter([Ok(b)])),
            UploadBody::Streaming(p) => Box::pin(p.map(|r| r.map_err(|e| e.to_string()))),
        }
    }
}

/// The authenticated caller and an upload. A bearer-authenticated upload
/// is not read here at all, so the handler can stream it with bounded
/// memory; a signed one is read first (within the route's body limit),
/// because its signature covers the body.
pub struct AuthedUpload(pub AuthUser, pub UploadBody);

impl FromRequest for AuthedUpload {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            if header(&req, HEADER_SIGNATURE).is_some() {
                let (st, body, user, nonce) = read_authenticated(&req, payload).await?;
                nonce.settle(&st.db).await?;
                return Ok(AuthedUpload(user, UploadBody::Buffered(body)));
            }
            let st = state(&req)?;
            let (user, nonce) = authenticate(&req, &st, b"").await?;
            nonce.settle(&st.db).await?;
            Ok(AuthedUpload(user, UploadBody::Streaming(payload)))
        })
    }
}

/// A JSON body on a route that needs no authentication.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = Error;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let st = state(&req)?;
            let body = read_body(payload, limit(&req, &st)).await?;
            Ok(JsonBody(parse_json(&body)?))
        })
    }
}
