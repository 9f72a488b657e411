//! The web UI: server-rendered HTML pages for contributors and buyers.
//!
//! Pages are askama templates from the repository's `templates/` folder
//! (`server/askama.toml` points there), compiled into the binary together
//! with the one stylesheet and the small scripts in `templates/static/`,
//! so the server runs from any directory and nothing loads from elsewhere.
//! Every page works without JavaScript; the scripts only enhance (the live
//! cost of a bounty, reading an import file, and the labeling page, which
//! talks to the JSON API with the session cookie).
//!
//! Handlers are thin, like the API's: they authenticate the session
//! ([`session`]), call a capability module, and render. The few read-only
//! queries that only pages need (open leases to resume, chart series,
//! resolved items with their answers) live in [`views`]; nothing here
//! writes a capability's tables except through that capability.
//!
//! Every refusal is an HTML page with the status and the reason
//! ([`error::PageError`]); a page that needs a session sends the visitor
//! to log in and back.

mod assets;
mod auth;
mod buyer;
pub mod charts;
mod contribute;
pub mod error;
pub mod multipart;
pub mod session;
mod views;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use askama::Template;

use crate::error::Error;
use error::PageError;
use session::Visitor;

/// Registers the pages, the static assets and the site-wide 404.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(256 * 1024)
            .error_handler(|e, _| {
                PageError::from(Error::bad_request(
                    "bad-form",
                    format!("the form could not be read: {e}"),
                ))
                .into()
            }),
    )
    .route("/", web::get().to(auth::home))
    .route("/static/{file}", web::get().to(assets::serve))
    .route("/signup", web::get().to(auth::signup_form))
    .route("/signup", web::post().to(auth::signup))
    .route("/login", web::get().to(auth::login_form))
    .route("/login", web::post().to(auth::login))
    .route("/logout", web::post().to(auth::logout))
    .route("/bounties", web::get().to(contribute::bounties))
    .route("/bounties/{id}", web::get().to(contribute::bounty))
    .route("/bounties/{id}/work", web::get().to(contribute::work))
    .route(
        "/bounties/{id}/work",
        web::post().to(contribute::work_submit),
    )
    .route("/bounties/{id}/skip", web::post().to(contribute::work_skip))
    .route("/bounties/{id}/review", web::get().to(contribute::review))
    .route("/earnings", web::get().to(contribute::my_earnings))
    .route("/users/{id}/earnings", web::get().to(contribute::earnings))
    .route(
        "/earnings/payout-address",
        web::post().to(contribute::set_payout_address),
    )
    .route(
        "/earnings/withdrawals",
        web::post().to(contribute::request_withdrawal),
    )
    .route("/quality", web::get().to(contribute::my_quality))
    .route("/projects", web::get().to(buyer::projects))
    .route("/projects/new", web::get().to(buyer::new_form))
    .route("/projects/new", web::post().to(buyer::create))
    .route("/projects/{id}", web::get().to(buyer::project))
    .route("/projects/{id}/import", web::post().to(buyer::import))
    .route("/projects/{id}/fund", web::post().to(buyer::fund))
    .route("/projects/{id}/pause", web::post().to(buyer::pause))
    .route("/projects/{id}/resume", web::post().to(buyer::resume))
    .route("/projects/{id}/close", web::post().to(buyer::close))
    .route("/projects/{id}/datasets", web::post().to(buyer::publish))
    .route("/projects/{id}/progress", web::get().to(buyer::progress))
    .route("/projects/{id}/items", web::get().to(buyer::items))
    .default_service(web::to(not_found));
}

/// Unknown paths: an HTML page for browsers, problem+json for the rest
/// (API clients that strayed outside `/api/v1`).
async fn not_found(req: HttpRequest) -> Result<HttpResponse, PageError> {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        Err(Error::not_found("no-page", "there is no page at this address").into())
    } else {
        Ok(crate::api::not_found()
            .await
            .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e)))
    }
}

/// What every page's layout needs: who is signed in, and the token its
/// forms carry.
pub struct Ctx {
    pub user: Option<NavUser>,
    pub csrf: String,
    /// Hide the account links (error pages do not know who is asking).
    pub bare: bool,
}

pub struct NavUser {
    pub id: i64,
    pub name: String,
    pub buyer: bool,
    pub contributor: bool,
}

/// Security headers for every HTML response. The policy allows nothing
/// from other origins, no inline script and no inline style, so an
/// injected tag that escaped the templates would still not run.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn secure_headers(res: &mut HttpResponseBuilder) {
    res.insert_header((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ))
    .insert_header((
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .insert_header((
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ))
    .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
}

/// Renders a page with a 200.
pub fn render(v: &Visitor, page: &impl Template) -> Result<HttpResponse, PageError> {
    render_status(v, actix_web::http::StatusCode::OK, page)
}

pub fn render_status(
    v: &Visitor,
    status: actix_web::http::StatusCode,
    page: &impl Template,
) -> Result<HttpResponse, PageError> {
    let body = page
        .render()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("rendering a page: {e}")))?;
    let mut res = HttpResponse::build(status);
    secure_headers(&mut res);
    v.set_cookies(&mut res);
    Ok(res.content_type("text/html; charset=utf-8").body(body))
}

/// A 303 to `to`: the answer to every successful form POST, so a reload
/// does not post twice.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish()
}

/// A numeric path segment, or the not-found page.
fn path_id(req: &HttpRequest, name: &str) -> Result<i64, PageError> {
    req.match_info()
        .get(name)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::not_found("no-page", "there is no page at this address").into())
}

/// Formats unix milliseconds as `2026-11-24 17:05 UTC`.
pub fn when(ms: i64) -> String {
    let s = sahel_protocol::Timestamp(ms).to_string();
    match (s.get(0..10), s.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => s,
    }
}
