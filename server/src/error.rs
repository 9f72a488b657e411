//! Every error a client can act on, mapped to HTTP in one place.
//!
//! Capability code returns [`Error`]: a [`ClientError`] when the request is
//! at fault (its `code` becomes the stable problem `type`), or `Unexpected`
//! for anything else, which is logged and answered with an opaque 500.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use sahel_protocol::api::{ImportLineError, Problem};
use sea_orm::{DbErr, SqlErr};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Malformed request: unparsable JSON, missing header.
    BadRequest,
    /// Well-formed but outside the rules: an answer outside the schema.
    Invalid,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// Existed once, no longer usable: an expired lease.
    Gone,
    TooLarge,
    /// Try again later: a backend is rebuilding.
    Unavailable,
}

impl ClientKind {
    fn status(self) -> StatusCode {
        match self {
            ClientKind::BadRequest => StatusCode::BAD_REQUEST,
            ClientKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ClientKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ClientKind::Forbidden => StatusCode::FORBIDDEN,
            ClientKind::NotFound => StatusCode::NOT_FOUND,
            ClientKind::Conflict => StatusCode::CONFLICT,
            ClientKind::Gone => StatusCode::GONE,
            ClientKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientError {
    pub kind: ClientKind,
    /// Stable slug, e.g. `lease-expired`; becomes `urn:sahel:problem:<code>`.
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<ImportLineError>,
    pub retry_after_secs: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {}", .0.code, .0.detail)]
    Client(ClientError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

macro_rules! constructors {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl Error {
            $(
                pub fn $name(code: &'static str, detail: impl Into<String>) -> Error {
                    Error::client(ClientKind::$kind, code, detail)
                }
            )*
        }
    };
}

constructors! {
    bad_request => BadRequest,
    invalid => Invalid,
    unauthorized => Unauthorized,
    forbidden => Forbidden,
    not_found => NotFound,
    conflict => Conflict,
    gone => Gone,
    too_large => TooLarge,
}

impl Error {
    pub fn client(kind: ClientKind, code: &'static str, detail: impl Into<String>) -> Error {
        Error::Client(ClientError {
            kind,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        })
    }

    pub fn unavailable(
        code: &'static str,
        detail: impl Into<String>,
        retry_after_secs: u32,
    ) -> Error {
        let mut e = ClientError {
            kind: ClientKind::Unavailable,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        };
        e.retry_after_secs = Some(retry_after_secs);
        Error::Client(e)
    }

    /// Attaches per-line errors (imports) to a client error.
    pub fn with_errors(mut self, errors: Vec<ImportLineError>) -> Error {
        if let Error::Client(c) = &mut self {
            c.errors = errors;
        }
        self
    }

    pub fn client_kind(&self) -> Option<ClientKind> {
        match self {
            Error::Client(c) => Some(c.kind),
            Error::Unexpected(_) => None,
        }
    }

    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Client(c) => {
                let status = c.kind.status();
                Problem {
                    kind: format!("urn:sahel:problem:{}", c.code),
                    title: status.canonical_reason().unwrap_or("Error").to_owned(),
                    status: status.as_u16(),
                    detail: c.detail.clone(),
                    errors: c.errors.clone(),
                }
            }
            Error::Unexpected(_) => Problem {
                kind: "urn:sahel:problem:internal".into(),
                title: "Internal Server Error".into(),
                status: 500,
                detail: "the server failed to handle this request; it has been logged".into(),
                errors: Vec::new(),
            },
        }
    }
}

impl From<DbErr> for Error {
    fn from(e: DbErr) -> Error {
        // PostgreSQL aborts one of two transactions that wait on each other
        // (40P01) or cannot be serialized (40001); nothing was written, and
        // the client may simply try again.
        let text = e.to_string();
        if text.contains("deadlock detected") || text.contains("could not serialize") {
            tracing::warn!(error = %text, "transaction aborted by the database; client told to retry");
            return Error::unavailable(
                "retry",
                "the database aborted this transaction because of a concurrent one; retry",
                1,
            );
        }
        Error::Unexpected(anyhow::Error::new(e))
    }
}

/// True when a database error is a unique-constraint violation, which
/// callers turn into a conflict (or an idempotent replay).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Client(c) => c.kind.status(),
            Error::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::Unexpected(e) = self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Error::Client(ClientError {
            retry_after_secs: Some(s),
            ..
        }) = self
        {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.body(serde_json::to_vec(&self.to_problem()).unwrap_or_default())
    }
}
