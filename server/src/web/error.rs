//! Refusals as HTML pages: the web layer's counterpart of the API's
//! problem+json. Every [`crate::error::Error`] becomes a page with its
//! HTTP status, a heading a person understands, the reason, and the
//! stable code for support; a page that needs a session redirects to the
//! log-in page instead.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::Ctx;
use crate::error::{ClientKind, Error};

#[derive(Debug)]
pub enum PageError {
    /// A capability (or the web layer) refused, or something broke.
    Refused(Error),
    /// The page needs a session; log in, then come back to `next`.
    LoginRequired { next: String },
}

impl From<Error> for PageError {
    fn from(e: Error) -> PageError {
        PageError::Refused(e)
    }
}

impl From<sea_orm::DbErr> for PageError {
    fn from(e: sea_orm::DbErr) -> PageError {
        PageError::Refused(e.into())
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Refused(e) => write!(f, "{e}"),
            PageError::LoginRequired { next } => write!(f, "log in to see {next}"),
        }
    }
}

pub struct LineError {
    pub line: u64,
    pub message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub ctx: Ctx,
    pub status: u16,
    pub heading: String,
    pub detail: String,
    pub code: String,
    pub errors: Vec<LineError>,
}

/// A heading for the refusals people meet most; the detail says the rest.
fn heading(kind: Option<ClientKind>, code: &str) -> &'static str {
    match (kind, code) {
        (_, "csrf-missing" | "csrf-mismatch") => "This form has expired",
        (_, "role-required") => "Your account cannot do this",
        (_, "not-project-owner") => "This bounty belongs to someone else",
        (_, "not-your-earnings") => "These earnings are not yours",
        (_, "import-failed" | "import-empty") => "The file was not imported",
        (Some(ClientKind::NotFound), _) => "Not found",
        (Some(ClientKind::Forbidden), _) => "Not allowed",
        (Some(ClientKind::Unauthorized), _) => "Please log in",
        (Some(ClientKind::Invalid | ClientKind::BadRequest), _) => "That did not work",
        (Some(ClientKind::Conflict), _) => "That cannot be done now",
        (Some(ClientKind::Gone), _) => "This has expired",
        (Some(ClientKind::TooLarge), _) => "That is too large",
        (Some(ClientKind::Unavailable), _) => "Please try again in a moment",
        (None, _) => "Something went wrong on our side",
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::Refused(e) => e.status_code(),
            PageError::LoginRequired { .. } => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let e = match self {
            PageError::LoginRequired { next } => {
                let to = format!("/login?next={}", encode_query(next));
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, to))
                    .finish();
            }
            PageError::Refused(e) => e,
        };
        if let Error::Unexpected(err) = e {
            tracing::error!(error = ?err, "page failed");
        }
        let problem = e.to_problem();
        let code = problem
            .kind
            .trim_start_matches("urn:sahel:problem:")
            .to_owned();
        let page = ErrorPage {
            ctx: Ctx {
                user: None,
                csrf: String::new(),
                bare: true,
            },
            status: problem.status,
            heading: heading(e.client_kind(), &code).to_owned(),
            detail: sentence(&problem.detail),
            code,
            errors: problem
                .errors
                .into_iter()
                .map(|l| LineError {
                    line: l.line,
                    message: l.message,
                })
                .collect(),
        };
        let body = page.render().unwrap_or_else(|_| {
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()
        });
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(super::CSP),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Error::Client(c) = e
            && let Some(s) = c.retry_after_secs
        {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.content_type("text/html; charset=utf-8").body(body)
    }
}

/// A capability's reason as a sentence: capitalized, with a full stop.
fn sentence(detail: &str) -> String {
    let mut chars = detail.trim().chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?', ')']) {
        out.push('.');
    }
    out
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            sentence("only the buyer may do this"),
            "Only the buyer may do this."
        );
        assert_eq!(sentence("Done."), "Done.");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn the_next_page_is_percent_encoded() {
        assert_eq!(encode_query("/a b?c=1&d"), "/a%20b%3Fc%3D1%26d");
    }
}
