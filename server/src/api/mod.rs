//! The JSON API under `/api/v1`: thin handlers that parse, call a
//! capability module, and serialize. Nothing here decides a rule.

pub mod accounts;
pub mod artifacts;
pub mod datasets;
pub mod extract;
pub mod ledger;
pub mod openapi;
pub mod projects;
pub mod quality;
pub mod reviews;
pub mod work;

use actix_web::{HttpResponse, web};
use sahel_protocol::api::Health;

use crate::error::{Error, Result};
use crate::state::AppState;

/// The most a signed upload may hold in memory.
const SIGNED_UPLOAD_LIMIT: usize = 64 << 20;

pub fn routes(cfg: &mut web::ServiceConfig, max_import_bytes: usize) {
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| {
        Error::not_found("bad-path", format!("no such resource: {e}")).into()
    }))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        Error::bad_request("bad-query", format!("bad query string: {e}")).into()
    }))
    .route("/healthz", web::get().to(health))
    .route("/metrics", web::get().to(metrics))
    .route(
        "/.well-known/sahel-server-key",
        web::get().to(ledger::server_key),
    )
    .service(
        web::scope("/api/v1")
            // The work routes first: actix tries a scope's routes in
            // order, each pattern with a parameter by a regex match, and
            // a lease or a submission behind thirty of them spent some 4 %
            // of the server's CPU on routing alone.
            .route("/projects/{id}/leases", web::post().to(work::lease))
            .route("/leases/{id}", web::delete().to(work::release))
            .route("/leases/{id}/renew", web::post().to(work::renew))
            .route("/me/leases", web::get().to(work::my_leases))
            .route("/leases", web::post().to(work::lease_any))
            .route("/submissions", web::post().to(work::submit))
            .route("/submissions/batch", web::post().to(work::submit_batch))
            .route("/submissions/{id}", web::get().to(work::get_submission))
            .route("/accounts/register", web::post().to(accounts::register))
            .route("/accounts/login", web::post().to(accounts::login))
            .route("/me", web::get().to(accounts::me))
            .route("/me/keys", web::post().to(accounts::link_key))
            .route("/me/keys/{id}", web::delete().to(accounts::revoke_key))
            .route("/me/custodial-key", web::get().to(accounts::custodial_key))
            .route(
                "/me/custodial-key",
                web::delete().to(accounts::revoke_custodial_key),
            )
            .route("/me/balance", web::get().to(ledger::my_balance))
            .route("/me/ledger", web::get().to(ledger::my_history))
            .route("/me/receipts", web::get().to(ledger::my_receipts))
            .route("/ledger/server-key", web::get().to(ledger::server_key))
            .route(
                "/me/payout-address",
                web::put().to(ledger::set_payout_address),
            )
            .route("/me/payout-address", web::get().to(ledger::payout_address))
            .route(
                "/me/withdrawals",
                web::post().to(ledger::request_withdrawal),
            )
            .route("/me/withdrawals", web::get().to(ledger::withdrawals))
            .route(
                "/me/settlement-proof",
                web::get().to(ledger::my_settlement_proof),
            )
            .route("/admin/epochs", web::post().to(ledger::close_epoch))
            .route("/settlement/epochs/{id}", web::get().to(ledger::epoch))
            .route(
                "/settlement/epochs/{id}/file",
                web::get().to(ledger::epoch_file),
            )
            .route("/admin/deposits", web::post().to(ledger::deposit))
            .route("/admin/audit", web::get().to(ledger::audit))
            .route("/projects", web::post().to(projects::create))
            .route("/projects", web::get().to(projects::list))
            .route("/projects/{id}", web::get().to(projects::get))
            .service(
                web::resource("/projects/{id}/items")
                    // Signed uploads are read whole to check their signature;
                    // bearer uploads stream up to SAHEL_MAX_IMPORT_BYTES.
                    .app_data(extract::BodyLimit(
                        max_import_bytes.min(SIGNED_UPLOAD_LIMIT),
                    ))
                    .route(web::post().to(projects::import)),
            )
            .service(
                web::resource("/artifacts")
                    .app_data(extract::BodyLimit(SIGNED_UPLOAD_LIMIT))
                    .route(web::post().to(artifacts::upload)),
            )
            .route("/artifacts/{sha256}", web::get().to(artifacts::download))
            .route(
                "/projects/{id}/artifact-limits",
                web::get().to(artifacts::get_limits),
            )
            .route(
                "/projects/{id}/artifact-limits",
                web::put().to(artifacts::put_limits),
            )
            .service(
                web::resource("/projects/{id}/items/files")
                    .app_data(extract::BodyLimit(SIGNED_UPLOAD_LIMIT))
                    .route(web::post().to(artifacts::import_files)),
            )
            .route(
                "/projects/{id}/items/from-prefix",
                web::post().to(artifacts::import_prefix),
            )
            .route("/projects/{id}/fund", web::post().to(projects::fund))
            .route("/projects/{id}/progress", web::get().to(projects::progress))
            .route("/projects/{id}/close", web::post().to(projects::close))
            .route("/projects/{id}/pause", web::post().to(projects::pause))
            .route("/projects/{id}/resume", web::post().to(projects::resume))
            .route("/projects/{id}/datasets", web::post().to(datasets::publish))
            .route(
                "/projects/{id}/export.jsonl",
                web::get().to(datasets::project_export),
            )
            .route(
                "/projects/{id}/export",
                web::get().to(datasets::project_export),
            )
            .route("/datasets", web::get().to(datasets::list))
            .route("/datasets/{id}", web::get().to(datasets::get))
            .route("/datasets/{id}/records", web::get().to(datasets::records))
            .route(
                "/datasets/{id}/export.jsonl",
                web::get().to(datasets::export),
            )
            .route(
                "/admin/royalties/run",
                web::post().to(datasets::run_royalties),
            )
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
            .route("/admin/quality/run", web::post().to(quality::run_once))
            .route(
                "/projects/{id}/reviews/lease",
                web::post().to(reviews::lease),
            )
            .route("/reviews/{id}", web::post().to(reviews::submit))
            .route("/reviews/{id}", web::delete().to(reviews::release))
            .route(
                "/projects/{id}/gold-reviews",
                web::post().to(reviews::add_gold),
            )
            .route(
                "/projects/{id}/gold-reviews",
                web::get().to(reviews::list_gold),
            )
            .route(
                "/projects/{id}/reviewers",
                web::get().to(reviews::reviewers),
            )
            .route("/me/reviews", web::get().to(reviews::mine))
            .route("/openapi.json", web::get().to(openapi::serve))
            // Unknown paths under /api/v1 answer problem+json; the rest of
            // the site's unknown paths belong to `crate::web`.
            .default_service(web::to(not_found)),
    );
}

pub async fn not_found() -> Result<HttpResponse> {
    Err(Error::not_found(
        "no-route",
        "no such endpoint; the API lives under /api/v1",
    ))
}

/// The process's counters and memory in Prometheus text format.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(state.queue.name()))
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
