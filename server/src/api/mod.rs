//! The JSON API under `/api/v1`: thin handlers that parse, call a
//! capability module, and serialize. Nothing here decides a rule.

pub mod accounts;
pub mod extract;
pub mod ledger;
pub mod projects;
pub mod quality;
pub mod work;

use actix_web::{HttpResponse, web};
use sahel_protocol::api::Health;

use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig, max_import_bytes: usize) {
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| {
        Error::not_found("bad-path", format!("no such resource: {e}")).into()
    }))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        Error::bad_request("bad-query", format!("bad query string: {e}")).into()
    }))
    .route("/healthz", web::get().to(health))
    .service(
        web::scope("/api/v1")
            .route("/accounts/register", web::post().to(accounts::register))
            .route("/accounts/login", web::post().to(accounts::login))
            .route("/me", web::get().to(accounts::me))
            .route("/me/keys", web::post().to(accounts::link_key))
            .route("/me/keys/{id}", web::delete().to(accounts::revoke_key))
            .route("/me/balance", web::get().to(ledger::my_balance))
            .route("/me/ledger", web::get().to(ledger::my_history))
            .route("/admin/deposits", web::post().to(ledger::deposit))
            .route("/admin/audit", web::get().to(ledger::audit))
            .route("/projects", web::post().to(projects::create))
            .route("/projects", web::get().to(projects::list))
            .route("/projects/{id}", web::get().to(projects::get))
            .service(
                web::resource("/projects/{id}/items")
                    .app_data(extract::BodyLimit(max_import_bytes))
                    .route(web::post().to(projects::import)),
            )
            .route("/projects/{id}/fund", web::post().to(projects::fund))
            .route("/projects/{id}/progress", web::get().to(projects::progress))
            .route("/projects/{id}/leases", web::post().to(work::lease))
            .route("/leases/{id}", web::delete().to(work::release))
            .route("/submissions", web::post().to(work::submit))
            .route("/submissions/{id}", web::get().to(work::get_submission))
            .route("/projects/{id}/quality", web::get().to(quality::report))
            .route(
                "/projects/{id}/quality/settings",
                web::get().to(quality::settings),
            )
            .route(
                "/projects/{id}/quality/settings",
                web::put().to(quality::put_settings),
            )
            .route("/projects/{id}/gold", web::get().to(quality::list_gold))
            .route("/projects/{id}/gold", web::post().to(quality::mark_gold))
            .route("/admin/quality/run", web::post().to(quality::run_once)),
    )
    .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse> {
    Err(Error::not_found(
        "no-route",
        "no such endpoint; the API lives under /api/v1",
    ))
}

/// Reports the database and the queue; 503 when either is down, so a load
/// balancer stops sending traffic.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let queue = match state.queue.health().await {
        Ok(()) => format!("ok ({})", state.queue.name()),
        Err(e) => format!("error: {e}"),
    };
    let ok = database == "ok" && queue.starts_with("ok");
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        database,
        queue,
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
