//! The OpenAPI document served at `/api/v1/openapi.json`.
//!
//! Schemas are derived from the wire types in `sahel-protocol` (feature
//! `openapi`), so they cannot drift from what the handlers parse. The
//! operations come from one table, [`ROUTES`], kept next to the routes in
//! `api/mod.rs`; a test checks that every registered route is listed.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use sahel_protocol::api;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sahel API",
        description = "The open data-annotation marketplace. Errors are application/problem+json (`Problem`). Authentication: bearer token, session cookie + X-CSRF-Token, or an ed25519-signed request."
    ),
    components(schemas(
        api::Role,
        api::RegisterRequest,
        api::LoginRequest,
        api::User,
        api::LoginResponse,
        api::TaskType,
        api::ProjectStatus,
        api::CreateProject,
        api::Project,
        api::ImportLineError,
        api::ImportReport,
        api::FundRequest,
        api::Progress,
        api::LeaseRequest,
        api::Task,
        api::LeaseResponse,
        api::LeaseInfo,
        api::LeaseAnyRequest,
        api::SubmitAnswer,
        api::AnswerStatus,
        api::Submission,
        api::GoldFeedback,
        api::SubmitBatch,
        api::BatchResult,
        api::SubmitBatchResponse,
        api::Verdict,
        api::ReviewTask,
        api::ReviewLeaseResponse,
        api::SubmitReview,
        api::Review,
        api::GivenReview,
        api::NewGoldReview,
        api::GoldReview,
        api::ReviewerStanding,
        api::Problem,
        api::Balance,
        api::Health,
        api::Artifact,
        api::ArtifactLimits,
        api::ImportFromPrefix,
        api::StoredExport,
    ))
)]
struct Doc;

/// One operation: method, path under `/api/v1`, summary, request and
/// response schema names (`None`: no JSON body, or one not described by a
/// shared type).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub response: Option<&'static str>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
) -> Route {
    Route {
        method,
        path,
        summary,
        request,
        response,
    }
}

pub const ROUTES: &[Route] = &[
    r(
        "post",
        "/accounts/register",
        "Sign up",
        Some("RegisterRequest"),
        Some("LoginResponse"),
    ),
    r(
        "post",
        "/accounts/login",
        "Log in: returns a bearer token",
        Some("LoginRequest"),
        Some("LoginResponse"),
    ),
    r("get", "/me", "The caller's account and keys", None, None),
    r(
        "post",
        "/me/keys",
        "Link an ed25519 key (with proof)",
        None,
        None,
    ),
    r("delete", "/me/keys/{id}", "Revoke a linked key", None, None),
    r(
        "get",
        "/me/custodial-key",
        "The key the server signs the caller's answers with",
        None,
        None,
    ),
    r(
        "delete",
        "/me/custodial-key",
        "Erase the custodial key",
        None,
        None,
    ),
    r(
        "get",
        "/me/balance",
        "The caller's balance",
        None,
        Some("Balance"),
    ),
    r("get", "/me/ledger", "The caller's postings", None, None),
    r(
        "get",
        "/me/receipts",
        "The caller's signed receipts",
        None,
        None,
    ),
    r(
        "get",
        "/ledger/server-key",
        "The key that signs receipts",
        None,
        None,
    ),
    r(
        "put",
        "/me/payout-address",
        "Set the EVM payout address",
        None,
        None,
    ),
    r(
        "get",
        "/me/payout-address",
        "The EVM payout address",
        None,
        None,
    ),
    r(
        "post",
        "/me/withdrawals",
        "Lock an amount until the next epoch",
        None,
        None,
    ),
    r(
        "get",
        "/me/withdrawals",
        "The caller's withdrawals",
        None,
        None,
    ),
    r(
        "get",
        "/me/settlement-proof",
        "The caller's Merkle leaf and proof",
        None,
        None,
    ),
    r(
        "post",
        "/admin/epochs",
        "Settle locked withdrawals (admin)",
        None,
        None,
    ),
    r(
        "get",
        "/settlement/epochs/{id}",
        "A settlement epoch",
        None,
        None,
    ),
    r(
        "get",
        "/settlement/epochs/{id}/file",
        "A settlement epoch's published file",
        None,
        None,
    ),
    r(
        "post",
        "/admin/deposits",
        "Credit a balance (admin)",
        None,
        None,
    ),
    r(
        "get",
        "/admin/audit",
        "Re-derive the ledger invariants (admin)",
        None,
        None,
    ),
    r(
        "post",
        "/projects",
        "Create a bounty of any task type (docs/task-types.md)",
        Some("CreateProject"),
        Some("Project"),
    ),
    r(
        "get",
        "/projects",
        "Bounties the caller may see",
        None,
        None,
    ),
    r("get", "/projects/{id}", "One bounty", None, Some("Project")),
    r(
        "post",
        "/projects/{id}/items",
        "Import items (JSONL, CSV or Label Studio; per-line errors)",
        None,
        Some("ImportReport"),
    ),
    r(
        "post",
        "/projects/{id}/fund",
        "Escrow the budget and open the bounty",
        Some("FundRequest"),
        Some("Project"),
    ),
    r(
        "get",
        "/projects/{id}/progress",
        "Progress, escrow and payments",
        None,
        Some("Progress"),
    ),
    r(
        "post",
        "/projects/{id}/pause",
        "Pause a bounty: no new leases (owner)",
        None,
        Some("Project"),
    ),
    r(
        "post",
        "/projects/{id}/resume",
        "Resume a paused bounty (owner)",
        None,
        Some("Project"),
    ),
    r(
        "post",
        "/projects/{id}/close",
        "Close a bounty and refund unspent escrow",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/datasets",
        "Publish a finished bounty as a dataset",
        None,
        None,
    ),
    r(
        "get",
        "/projects/{id}/export",
        "Export resolved items",
        None,
        None,
    ),
    r(
        "get",
        "/projects/{id}/export.jsonl",
        "Export resolved items as JSONL",
        None,
        None,
    ),
    r("get", "/datasets", "Published datasets", None, None),
    r("get", "/datasets/{id}", "One dataset", None, None),
    r(
        "get",
        "/datasets/{id}/records",
        "A charged page of records",
        None,
        None,
    ),
    r(
        "get",
        "/datasets/{id}/export.jsonl",
        "A charged full export",
        None,
        None,
    ),
    r(
        "post",
        "/admin/royalties/run",
        "Run royalty rounds now (admin)",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/leases",
        "Lease tasks of a bounty",
        Some("LeaseRequest"),
        Some("LeaseResponse"),
    ),
    r("delete", "/leases/{id}", "Give a lease back", None, None),
    r(
        "post",
        "/leases/{id}/renew",
        "Extend a lease",
        None,
        Some("LeaseInfo"),
    ),
    r("get", "/me/leases", "The caller's open leases", None, None),
    r(
        "post",
        "/leases",
        "Lease from any open bounty, by priority",
        Some("LeaseAnyRequest"),
        Some("LeaseResponse"),
    ),
    r(
        "post",
        "/submissions",
        "Answer a lease (validated by the task type; idempotent by key)",
        Some("SubmitAnswer"),
        Some("Submission"),
    ),
    r(
        "post",
        "/submissions/batch",
        "Up to 100 answers, each accepted or refused on its own",
        Some("SubmitBatch"),
        Some("SubmitBatchResponse"),
    ),
    r(
        "get",
        "/submissions/{id}",
        "One of the caller's submissions",
        None,
        Some("Submission"),
    ),
    r(
        "get",
        "/projects/{id}/quality",
        "Agreement statistics and standings (owner)",
        None,
        None,
    ),
    r(
        "get",
        "/projects/{id}/quality/settings",
        "The consensus rule in effect",
        None,
        None,
    ),
    r(
        "put",
        "/projects/{id}/quality/settings",
        "Switch a draft bounty to the quality engine (voted types only)",
        None,
        None,
    ),
    r(
        "get",
        "/projects/{id}/gold",
        "Gold items (owner)",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/gold",
        "Mark a resolved item gold (owner)",
        None,
        None,
    ),
    r(
        "post",
        "/admin/quality/run",
        "One step of the background re-estimation (admin)",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/reviews/lease",
        "Lease an answer to review (free_text, file_collection)",
        None,
        Some("ReviewLeaseResponse"),
    ),
    r(
        "post",
        "/reviews/{id}",
        "Review a leased answer: accept, or reject with a reason (idempotent by key); paid the bounty's review reward",
        Some("SubmitReview"),
        Some("GivenReview"),
    ),
    r(
        "delete",
        "/reviews/{id}",
        "Give a review lease back unused (skip): the answer goes to someone else",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/gold-reviews",
        "Add a gold review: an answer and the verdict a good reviewer gives it (owner)",
        Some("NewGoldReview"),
        Some("GoldReview"),
    ),
    r(
        "get",
        "/projects/{id}/gold-reviews",
        "Gold reviews and how reviewers fared on each (owner)",
        None,
        Some("GoldReview"),
    ),
    r(
        "get",
        "/projects/{id}/reviewers",
        "Reviewers' records: reviews, accuracy on gold reviews, suspensions (owner)",
        None,
        Some("ReviewerStanding"),
    ),
    r(
        "get",
        "/me/reviews",
        "Reviews of your answers, newest first: verdicts and the reasons of rejections",
        None,
        Some("Review"),
    ),
    r(
        "post",
        "/artifacts",
        "Upload a file (raw body, streamed; ?project=ID applies the bounty's limits); its type is sniffed from the bytes",
        None,
        Some("Artifact"),
    ),
    r(
        "get",
        "/artifacts/{sha256}",
        "Download a file you may see (ETag, If-None-Match, Range)",
        None,
        None,
    ),
    r(
        "get",
        "/projects/{id}/artifact-limits",
        "The bounty's upload limits",
        None,
        Some("ArtifactLimits"),
    ),
    r(
        "put",
        "/projects/{id}/artifact-limits",
        "Set the bounty's upload limits (draft only)",
        Some("ArtifactLimits"),
        Some("ArtifactLimits"),
    ),
    r(
        "post",
        "/projects/{id}/items/files",
        "Import items from files: multipart, or one zip or tar",
        None,
        Some("ImportReport"),
    ),
    r(
        "post",
        "/projects/{id}/items/from-prefix",
        "Import items from an allowed object-store prefix",
        Some("ImportFromPrefix"),
        Some("ImportReport"),
    ),
    r(
        "get",
        "/projects/{id}/export",
        "The results streamed as ?format=jsonl|csv|label_studio|coco",
        None,
        None,
    ),
    r(
        "post",
        "/projects/{id}/exports",
        "Write the results (?format=...) to object storage",
        None,
        Some("StoredExport"),
    ),
    r("get", "/openapi.json", "This document", None, None),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(route: &Route) -> Value {
    let ok = match route.response {
        Some(name) => json!({
            "description": "OK",
            "content": { "application/json": { "schema": schema_ref(name) } }
        }),
        None => json!({ "description": "OK" }),
    };
    let problem = json!({
        "description": "A problem the client can act on (stable `type`)",
        "content": { "application/problem+json": { "schema": schema_ref("Problem") } }
    });
    let mut op = json!({
        "summary": route.summary,
        "responses": { "200": ok, "4XX": problem },
    });
    if let Some(name) = route.request {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema_ref(name) } }
        });
    }
    if route.path.contains("{id}") {
        op["parameters"] = json!([{
            "name": "id", "in": "path", "required": true,
            "schema": { "type": "integer", "format": "int64" }
        }]);
    }
    op
}

/// The whole document as JSON, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc =
            serde_json::to_value(Doc::openapi()).expect("the OpenAPI document serializes");
        let mut paths = Map::new();
        for route in ROUTES {
            let entry = paths
                .entry(format!("/api/v1{}", route.path))
                .or_insert_with(|| json!({}));
            entry[route.method] = operation(route);
        }
        doc["paths"] = Value::Object(paths);
        doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
        doc
    })
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path registered under `/api/v1` in `api/mod.rs` is documented.
    #[test]
    fn every_route_is_in_the_document() {
        let source = include_str!("mod.rs");
        let scope = source.find("web::scope(\"/api/v1\")").unwrap();
        let registered: Vec<&str> = source[scope..]
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/') && *s != "/api/v1")
            .collect();
        assert!(registered.len() > 40, "{registered:?}");
        for path in registered {
            assert!(
                ROUTES.iter().any(|r| r.path == path),
                "{path} is registered but not in openapi::ROUTES"
            );
        }
    }

    #[test]
    fn every_referenced_schema_exists_and_review_routes_are_documented() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in ROUTES {
            for name in [r.request, r.response].into_iter().flatten() {
                assert!(schemas.contains_key(name), "{name} is not a component");
            }
        }
        assert!(
            doc["paths"]["/api/v1/reviews/{id}"]["post"]["requestBody"].is_object(),
            "{doc}"
        );
        let task_types = &schemas["TaskType"]["enum"];
        for t in api::TaskType::ALL {
            assert!(
                task_types.as_array().unwrap().contains(&json!(t.as_str())),
                "{task_types}"
            );
        }
        assert_eq!(
            schemas["Verdict"]["enum"],
            json!(["accept", "reject"]),
            "{}",
            schemas["Verdict"]
        );
    }
}
