//! A blocking HTTP client for the Sahel API, typed by `sahel-protocol`.
//!
//! The CLI, the integration tests and the load generator all talk to the
//! server through this one client, so what the tests prove is what users
//! run. Requests are authenticated by a bearer token or signed with an
//! ed25519 key (a fresh nonce and timestamp per request).

use std::fmt;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use sahel_protocol::api::{self, Problem};
use sahel_protocol::signing::{self, RequestParts};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Key(SigningKey),
}

/// A failed call: the server's problem document, or a transport failure.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status; 0 when the server was not reached.
    pub status: u16,
    pub problem: Option<Box<Problem>>,
    pub message: String,
}

impl ApiError {
    /// The problem's stable code, e.g. `lease-expired`.
    pub fn code(&self) -> Option<&str> {
        self.problem
            .as_ref()
            .map(|p| p.kind.trim_start_matches("urn:sahel:problem:"))
    }

    pub fn is_transport(&self) -> bool {
        self.status == 0
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.problem, self.status) {
            (Some(p), _) => write!(
                f,
                "{} ({}): {}",
                p.title,
                p.kind.trim_start_matches("urn:sahel:problem:"),
                p.detail
            ),
            (None, 0) => write!(f, "could not reach the server: {}", self.message),
            (None, s) => write!(f, "HTTP {s}: {}", self.message),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// A raw response, for callers that inspect status and body themselves.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Auth,
    retries: u32,
}

/// Whether repeating a request can never do more than sending it once:
/// reads, and writes the server deduplicates by idempotency key.
fn is_repeatable(method: &str, path: &str) -> bool {
    let p = path.split('?').next().unwrap_or(path);
    match method {
        "GET" | "HEAD" | "PUT" | "DELETE" => true,
        "POST" => {
            p.ends_with("/submissions")
                || p.ends_with("/submissions/batch")
                || p.ends_with("/renew")
                || p.ends_with("/fund")
                || p.ends_with("/admin/deposits")
        }
        _ => false,
    }
}

fn random_nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    hex::encode(b)
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Client {
    pub fn new(base: &str, auth: Auth) -> Client {
        // A bound on each phase rather than on the whole call: with a
        // global or per-call budget, ureq resolves the host on a thread
        // spawned for every request, pooled connection or not (a thread
        // per request in `sahel push` and in the load generator, which
        // spent a fifth of its CPU creating them). Without one, an IP
        // address resolves at once and a name through the system's own
        // resolver timeout.
        let phase = Some(Duration::from_secs(120));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_send_request(phase)
            .timeout_send_body(phase)
            .timeout_recv_response(phase)
            .timeout_recv_body(phase)
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            auth,
            retries: 0,
        }
    }

    /// The same client, retrying failed requests up to `retries` times
    /// (see [`Client::raw_with`] for which).
    pub fn with_retries(&self, retries: u32) -> Client {
        Client {
            retries,
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client pointed at another server address.
    pub fn with_base(&self, base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    pub fn with_auth(&self, auth: Auth) -> Client {
        Client {
            auth,
            ..self.clone()
        }
    }

    /// Sends one request and returns whatever came back. `path` may carry
    /// a query string; it is signed exactly as sent.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> ApiResult<RawResponse> {
        self.raw_with(method, path, body, content_type, &[])
    }

    /// Sends a request, retrying with exponential backoff when this client
    /// has retries and the failure is worth retrying: a 503 always (the
    /// server did nothing), a transport error or 5xx only for requests
    /// that are safe to repeat (reads, and writes with an idempotency key).
    /// Each attempt is signed afresh.
    pub fn raw_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        extra_headers: &[(&str, &str)],
    ) -> ApiResult<RawResponse> {
        let repeatable = is_repeatable(method, path);
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let res = self.send_once(method, path, body, content_type, extra_headers);
            let retry = match &res {
                Ok(r) if r.status == 503 => {
                    if let Some(secs) = r
                        .retry_after
                        .as_deref()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        delay = Duration::from_secs(secs.clamp(1, 30));
                    }
                    true
                }
                Ok(r) => repeatable && r.status >= 500,
                Err(e) => repeatable && e.is_transport(),
            };
            if !retry || attempt >= self.retries {
                return res;
            }
            attempt += 1;
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        extra_headers: &[(&str, &str)],
    ) -> ApiResult<RawResponse> {
        let mut res = self.send_streaming(method, path, body, content_type, extra_headers)?;
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| ApiError {
                status: 0,
                problem: None,
                message: e.to_string(),
            })?;
        Ok(RawResponse {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// Sends one request and hands back the response with its body unread.
    fn send_streaming(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        extra_headers: &[(&str, &str)],
    ) -> ApiResult<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{}", self.base, path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        let bytes = body.unwrap_or(&[]);
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Key(k) => {
                let (p, q) = path.split_once('?').unwrap_or((path, ""));
                let nonce = random_nonce();
                let parts = RequestParts {
                    method,
                    path: p,
                    query: q,
                    timestamp: unix_secs(),
                    nonce: &nonce,
                    body: bytes,
                };
                for (name, value) in signing::sign_request(k, &parts).pairs() {
                    req = req.header(name, value);
                }
            }
        }
        if body.is_some() {
            req = req.header("content-type", content_type);
        }
        for (k, v) in extra_headers {
            req = req.header(*k, *v);
        }
        let req = req.body(bytes.to_vec()).map_err(|e| ApiError {
            status: 0,
            problem: None,
            message: e.to_string(),
        })?;
        self.agent.run(req).map_err(|e| ApiError {
            status: 0,
            problem: None,
            message: e.to_string(),
        })
    }

    fn decode<T: DeserializeOwned>(res: RawResponse) -> ApiResult<T> {
        if (200..300).contains(&res.status) {
            let body = if res.body.is_empty() {
                b"null".as_slice()
            } else {
                &res.body
            };
            return serde_json::from_slice(body).map_err(|e| ApiError {
                status: res.status,
                problem: None,
                message: format!("unexpected response body: {e}"),
            });
        }
        let problem: Option<Box<Problem>> = serde_json::from_slice(&res.body).ok();
        Err(ApiError {
            status: res.status,
            problem,
            message: res.text(),
        })
    }

    /// A 2xx response as it is, anything else as the problem it carries.
    fn success(res: RawResponse) -> ApiResult<RawResponse> {
        if (200..300).contains(&res.status) {
            return Ok(res);
        }
        let problem: Option<Box<Problem>> = serde_json::from_slice(&res.body).ok();
        Err(ApiError {
            status: res.status,
            problem,
            message: res.text(),
        })
    }

    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> ApiResult<T> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("request bodies serialize"));
        let res = self.raw(method, path, bytes.as_deref(), "application/json")?;
        Self::decode(res)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> ApiResult<T> {
        self.call("GET", path, None::<&()>)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> ApiResult<T> {
        self.call("POST", path, Some(body))
    }

    pub fn health(&self) -> ApiResult<api::Health> {
        self.get("/healthz")
    }

    pub fn register(&self, req: &api::RegisterRequest) -> ApiResult<api::LoginResponse> {
        self.post("/api/v1/accounts/register", req)
    }

    pub fn login(&self, req: &api::LoginRequest) -> ApiResult<api::LoginResponse> {
        self.post("/api/v1/accounts/login", req)
    }

    pub fn me(&self) -> ApiResult<api::Me> {
        self.get("/api/v1/me")
    }

    /// Links `key` to the account this client is authenticated as.
    pub fn link_key(
        &self,
        user_id: i64,
        key: &SigningKey,
        label: Option<String>,
    ) -> ApiResult<api::Me> {
        use ed25519_dalek::Signer;
        let public_key = signing::public_key_hex(&key.verifying_key());
        let proof = hex::encode(
            key.sign(&signing::key_link_message(user_id, &public_key))
                .to_bytes(),
        );
        self.post(
            "/api/v1/me/keys",
            &api::LinkKeyRequest {
                public_key,
                proof,
                label,
            },
        )
    }

    pub fn projects(&self) -> ApiResult<Vec<api::Project>> {
        self.get("/api/v1/projects")
    }

    pub fn project(&self, id: i64) -> ApiResult<api::Project> {
        self.get(&format!("/api/v1/projects/{id}"))
    }

    pub fn create_project(&self, req: &api::CreateProject) -> ApiResult<api::Project> {
        self.post("/api/v1/projects", req)
    }

    pub fn import_items(
        &self,
        project: i64,
        format: &str,
        body: &[u8],
    ) -> ApiResult<api::ImportReport> {
        let ct = match format {
            "csv" => "text/csv",
            "label_studio" => "application/json",
            _ => "application/x-ndjson",
        };
        let res = self.raw(
            "POST",
            &format!("/api/v1/projects/{project}/items?format={format}"),
            Some(body),
            ct,
        )?;
        Self::decode(res)
    }

    pub fn fund(&self, project: i64, idempotency_key: &str) -> ApiResult<api::Project> {
        self.post(
            &format!("/api/v1/projects/{project}/fund"),
            &api::FundRequest {
                idempotency_key: idempotency_key.into(),
            },
        )
    }

    pub fn progress(&self, project: i64) -> ApiResult<api::Progress> {
        self.get(&format!("/api/v1/projects/{project}/progress"))
    }

    pub fn lease(&self, project: i64, count: u32) -> ApiResult<Vec<api::Task>> {
        let res: api::LeaseResponse = self.post(
            &format!("/api/v1/projects/{project}/leases"),
            &api::LeaseRequest { count },
        )?;
        Ok(res.tasks)
    }

    pub fn release(&self, lease_id: i64) -> ApiResult<()> {
        let res = self.raw("DELETE", &format!("/api/v1/leases/{lease_id}"), None, "")?;
        Self::decode::<serde_json::Value>(res).map(|_| ())
    }

    pub fn my_leases(&self) -> ApiResult<Vec<api::LeaseInfo>> {
        self.get("/api/v1/me/leases")
    }

    pub fn renew(&self, lease_id: i64) -> ApiResult<api::LeaseInfo> {
        self.call(
            "POST",
            &format!("/api/v1/leases/{lease_id}/renew"),
            None::<&()>,
        )
    }

    pub fn revoke_key(&self, key_id: i64) -> ApiResult<api::Me> {
        self.call("DELETE", &format!("/api/v1/me/keys/{key_id}"), None::<&()>)
    }

    pub fn submit(&self, req: &api::SubmitAnswer) -> ApiResult<api::Submission> {
        self.post("/api/v1/submissions", req)
    }

    pub fn lease_any(&self, count: u32) -> ApiResult<Vec<api::Task>> {
        let res: api::LeaseResponse =
            self.post("/api/v1/leases", &api::LeaseAnyRequest { count })?;
        Ok(res.tasks)
    }

    pub fn submit_batch(
        &self,
        submissions: Vec<api::SubmitAnswer>,
    ) -> ApiResult<Vec<api::BatchResult>> {
        let res: api::SubmitBatchResponse = self.post(
            "/api/v1/submissions/batch",
            &api::SubmitBatch { submissions },
        )?;
        Ok(res.results)
    }

    pub fn balance(&self) -> ApiResult<api::Balance> {
        self.get("/api/v1/me/balance")
    }

    pub fn ledger(&self) -> ApiResult<api::LedgerHistory> {
        self.get("/api/v1/me/ledger")
    }

    pub fn deposit(&self, req: &api::DepositRequest) -> ApiResult<api::TransactionReceipt> {
        self.post("/api/v1/admin/deposits", req)
    }

    pub fn audit(&self) -> ApiResult<serde_json::Value> {
        self.get("/api/v1/admin/audit")
    }

    pub fn close_project(
        &self,
        project: i64,
        idempotency_key: &str,
    ) -> ApiResult<api::ClosedProject> {
        self.post(
            &format!("/api/v1/projects/{project}/close"),
            &api::CloseProject {
                idempotency_key: idempotency_key.into(),
            },
        )
    }

    pub fn pause_project(&self, project: i64) -> ApiResult<api::Project> {
        self.call(
            "POST",
            &format!("/api/v1/projects/{project}/pause"),
            None::<&()>,
        )
    }

    pub fn resume_project(&self, project: i64) -> ApiResult<api::Project> {
        self.call(
            "POST",
            &format!("/api/v1/projects/{project}/resume"),
            None::<&()>,
        )
    }

    pub fn set_payout_address(&self, address: &str) -> ApiResult<api::PayoutAddress> {
        self.call(
            "PUT",
            "/api/v1/me/payout-address",
            Some(&api::SetPayoutAddress {
                address: address.into(),
            }),
        )
    }

    pub fn payout_address(&self) -> ApiResult<api::PayoutAddress> {
        self.get("/api/v1/me/payout-address")
    }

    pub fn withdraw(
        &self,
        amount: sahel_protocol::Micros,
        idempotency_key: &str,
    ) -> ApiResult<api::Withdrawal> {
        self.post(
            "/api/v1/me/withdrawals",
            &api::WithdrawalRequest {
                amount,
                idempotency_key: idempotency_key.into(),
            },
        )
    }

    pub fn withdrawals(&self) -> ApiResult<Vec<api::Withdrawal>> {
        self.get("/api/v1/me/withdrawals")
    }

    pub fn close_epoch(&self, idempotency_key: &str) -> ApiResult<api::SettlementEpoch> {
        self.post(
            "/api/v1/admin/epochs",
            &api::CloseEpoch {
                idempotency_key: idempotency_key.into(),
            },
        )
    }

    /// `None` for the latest epoch.
    pub fn epoch(&self, id: Option<i64>) -> ApiResult<api::SettlementEpoch> {
        let id = id.map_or("latest".to_owned(), |i| i.to_string());
        self.get(&format!("/api/v1/settlement/epochs/{id}"))
    }

    pub fn epoch_file(&self, id: Option<i64>) -> ApiResult<sahel_protocol::settlement::EpochFile> {
        let id = id.map_or("latest".to_owned(), |i| i.to_string());
        self.get(&format!("/api/v1/settlement/epochs/{id}/file"))
    }

    pub fn settlement_proof(&self, epoch: Option<i64>) -> ApiResult<api::SettlementProof> {
        match epoch {
            Some(e) => self.get(&format!("/api/v1/me/settlement-proof?epoch={e}")),
            None => self.get("/api/v1/me/settlement-proof"),
        }
    }

    pub fn publish_dataset(
        &self,
        project: i64,
        req: &api::PublishDataset,
    ) -> ApiResult<api::Dataset> {
        self.post(&format!("/api/v1/projects/{project}/datasets"), req)
    }

    pub fn datasets(&self) -> ApiResult<Vec<api::Dataset>> {
        self.get("/api/v1/datasets")
    }

    /// One charged page of records; the same `idempotency_key` again
    /// returns the same page without a second charge.
    pub fn dataset_records(
        &self,
        dataset: i64,
        page: i64,
        per_page: i64,
        idempotency_key: Option<&str>,
    ) -> ApiResult<api::DatasetPage> {
        let path = format!("/api/v1/datasets/{dataset}/records?page={page}&per_page={per_page}");
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| vec![("idempotency-key", k)])
            .unwrap_or_default();
        let res = self.raw_with("GET", &path, None, "", &headers)?;
        Self::decode(res)
    }

    /// A charged full export: the raw JSON lines.
    pub fn dataset_export(
        &self,
        dataset: i64,
        idempotency_key: Option<&str>,
    ) -> ApiResult<RawResponse> {
        let path = format!("/api/v1/datasets/{dataset}/export.jsonl");
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| vec![("idempotency-key", k)])
            .unwrap_or_default();
        let res = self.raw_with("GET", &path, None, "", &headers)?;
        Self::success(res)
    }

    /// A project's results with provenance (its buyer only): JSON lines.
    pub fn project_export(&self, project: i64) -> ApiResult<RawResponse> {
        self.project_export_as(project, "jsonl")
    }

    /// A project's results in `format` (jsonl, csv, label_studio, coco).
    pub fn project_export_as(&self, project: i64, format: &str) -> ApiResult<RawResponse> {
        let path = format!("/api/v1/projects/{project}/export?format={format}");
        Self::success(self.raw("GET", &path, None, "")?)
    }

    /// Uploads a file; `project` applies that bounty's limits (and, for a
    /// contributor, its file-collection schema's).
    pub fn upload_artifact(&self, bytes: &[u8], project: Option<i64>) -> ApiResult<api::Artifact> {
        let path = match project {
            Some(p) => format!("/api/v1/artifacts?project={p}"),
            None => "/api/v1/artifacts".to_owned(),
        };
        let res = self.raw("POST", &path, Some(bytes), "application/octet-stream")?;
        Self::decode(res)
    }

    /// Streams an artifact into `out`; returns its size and media type.
    pub fn download_artifact(
        &self,
        sha256: &str,
        out: &mut dyn std::io::Write,
    ) -> ApiResult<(u64, String)> {
        let path = format!("/api/v1/artifacts/{sha256}");
        let mut res = self.send_streaming("GET", &path, None, "", &[])?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let transport = |e: std::io::Error| ApiError {
            status: 0,
            problem: None,
            message: e.to_string(),
        };
        if status != 200 {
            let body = res
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .unwrap_or_default();
            return Self::success(RawResponse {
                status,
                content_type,
                retry_after: None,
                body,
            })
            .map(|_| (0, String::new()));
        }
        let mut reader = res.body_mut().with_config().limit(u64::MAX).reader();
        let n = std::io::copy(&mut reader, out).map_err(transport)?;
        Ok((n, content_type))
    }

    /// Imports items from files: a multipart body or one zip/tar archive.
    pub fn import_files(
        &self,
        project: i64,
        body: &[u8],
        content_type: &str,
    ) -> ApiResult<api::ImportReport> {
        let res = self.raw(
            "POST",
            &format!("/api/v1/projects/{project}/items/files"),
            Some(body),
            content_type,
        )?;
        Self::decode(res)
    }

    /// Imports one item per object under a store prefix the server reads.
    pub fn import_from_prefix(&self, project: i64, url: &str) -> ApiResult<api::ImportReport> {
        self.post(
            &format!("/api/v1/projects/{project}/items/from-prefix"),
            &api::ImportFromPrefix { url: url.into() },
        )
    }

    pub fn set_artifact_limits(
        &self,
        project: i64,
        limits: &api::ArtifactLimits,
    ) -> ApiResult<api::ArtifactLimits> {
        self.call(
            "PUT",
            &format!("/api/v1/projects/{project}/artifact-limits"),
            Some(limits),
        )
    }

    pub fn custodial_key(&self) -> ApiResult<api::CustodialKey> {
        self.get("/api/v1/me/custodial-key")
    }

    pub fn revoke_custodial_key(&self) -> ApiResult<api::CustodialKey> {
        let res = self.raw("DELETE", "/api/v1/me/custodial-key", None, "")?;
        Self::decode(res)
    }

    pub fn run_royalties(&self) -> ApiResult<api::RoyaltyRun> {
        self.post("/api/v1/admin/royalties/run", &serde_json::json!({}))
    }

    pub fn server_key(&self) -> ApiResult<api::ServerKeyInfo> {
        self.get("/.well-known/sahel-server-key")
    }

    pub fn receipts_page(&self, after_seq: u64, limit: u64) -> ApiResult<api::ReceiptPage> {
        self.get(&format!(
            "/api/v1/me/receipts?after_seq={after_seq}&limit={limit}"
        ))
    }

    /// Every receipt of the caller, page by page, with the balances as the
    /// last page states them.
    pub fn all_receipts(&self) -> ApiResult<sahel_protocol::receipt::ReceiptBundle> {
        let mut page = self.receipts_page(0, 5000)?;
        let mut all = std::mem::take(&mut page.bundle);
        while let Some(after) = page.next_after_seq {
            page = self.receipts_page(after, 5000)?;
            all.receipts.append(&mut page.bundle.receipts);
            all.predecessors.append(&mut page.bundle.predecessors);
            all.balances = std::mem::take(&mut page.bundle.balances);
        }
        Ok(all)
    }
}
