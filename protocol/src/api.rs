//! Request and response bodies of the JSON API under `/api/v1`.
//!
//! These are plain serde types: the server parses them into validated
//! domain values at its edge, the CLI and any Rust client build them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::money::Micros;
use crate::time::Timestamp;

pub const API_PREFIX: &str = "/api/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Buyer,
    Contributor,
    Reviewer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Buyer, Role::Contributor, Role::Reviewer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Contributor => "contributor",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }
}

// ---------------------------------------------------------------- accounts

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub display_name: String,
    /// Roles asked for at sign-up. `admin` cannot be self-assigned.
    #[serde(default)]
    pub roles: Vec<Role>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// A label for the API token the login creates (e.g. "laptop CLI").
    #[serde(default)]
    pub token_label: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub user: User,
    /// Bearer token for `Authorization: Bearer ...`. Shown once; the server
    /// keeps only its hash.
    pub token: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkKeyRequest {
    /// Hex of the 32-byte ed25519 public key.
    pub public_key: String,
    /// Hex signature of [`crate::signing::key_link_message`] by that key.
    pub proof: String,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    pub id: i64,
    pub public_key: String,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Me {
    pub user: User,
    pub keys: Vec<PublicKeyInfo>,
}

// ---------------------------------------------------------------- projects

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TaskType {
    Classification,
    MultiLabel,
    TextSpans,
    BoundingBoxes,
    Pairwise,
    FreeText,
    FileCollection,
}

impl TaskType {
    pub const ALL: [TaskType; 7] = [
        TaskType::Classification,
        TaskType::MultiLabel,
        TaskType::TextSpans,
        TaskType::BoundingBoxes,
        TaskType::Pairwise,
        TaskType::FreeText,
        TaskType::FileCollection,
    ];

    /// The wire name (`docs/task-types.md`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Classification => "classification",
            TaskType::MultiLabel => "multi_label",
            TaskType::TextSpans => "text_spans",
            TaskType::BoundingBoxes => "bounding_boxes",
            TaskType::Pairwise => "pairwise",
            TaskType::FreeText => "free_text",
            TaskType::FileCollection => "file_collection",
        }
    }

    pub fn parse(s: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProjectStatus {
    /// Created, items may be imported; not visible to contributors.
    Draft,
    /// Funded; contributors may take tasks.
    Open,
    /// Paused by its buyer: no new task is handed out; leases already
    /// taken may still be answered. Resuming reopens it.
    Paused,
    /// Every item is resolved.
    Completed,
    /// Closed by its buyer: open leases ended, unspent escrow refunded.
    Closed,
}

impl ProjectStatus {
    /// Funded and not over (open or paused): its leases may still be
    /// answered, and the task queue holds it.
    pub fn is_running(self) -> bool {
        matches!(self, ProjectStatus::Open | ProjectStatus::Paused)
    }

    /// Completed or closed: no more work, and its results may be published.
    pub fn has_ended(self) -> bool {
        matches!(self, ProjectStatus::Completed | ProjectStatus::Closed)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProject {
    pub title: String,
    #[serde(default)]
    pub instructions: String,
    pub task_type: TaskType,
    /// Per type (`docs/task-types.md`). Classification:
    /// `{"classes": ["positive", "negative"]}`.
    pub schema: Value,
    /// Answers collected per item before consensus is attempted; for
    /// reviewed types (free text, file collection), answers accepted per
    /// item.
    pub overlap: u32,
    /// Paid from escrow for each accepted answer.
    pub reward: Micros,
    /// What the buyer will escrow when funding.
    pub budget: Micros,
    #[serde(default)]
    pub priority: i32,
    /// Reviewed types: reviews each answer gets (1 to 5, default 1); the
    /// majority decides it, a tie rejects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviews_per_answer: Option<u32>,
    /// Reviewed types: paid from escrow to the reviewer for each review
    /// (default 0: the buyer's own reviewers). Funding then covers a
    /// review of every answer an item may get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_reward: Option<Micros>,
    /// Reviewed types: one review in this many is a gold review, when the
    /// bounty has any (0: none; 2 to 1000; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_review_every: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: i64,
    pub buyer_id: i64,
    pub title: String,
    pub instructions: String,
    pub task_type: TaskType,
    pub schema: Value,
    pub overlap: u32,
    /// Ties ask for one more answer, up to this many; chosen so that
    /// accepted answers per item never exceed `overlap`.
    pub max_answers: u32,
    pub reward: Micros,
    pub budget: Micros,
    pub status: ProjectStatus,
    pub priority: i32,
    pub item_count: i64,
    pub created_at: Timestamp,
    /// Reviews each answer gets, for reviewed types (1 for the others,
    /// which are not reviewed).
    #[serde(default = "one")]
    pub reviews_per_answer: u32,
    /// Paid per review (reviewed types).
    #[serde(default)]
    pub review_reward: Micros,
    /// One review in this many is a gold review (reviewed types; 0: none).
    #[serde(default)]
    pub gold_review_every: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportLineError {
    /// 1-based line (JSONL) or record (CSV, counting the header as line 1).
    pub line: u64,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    pub imported: u64,
    pub errors: Vec<ImportLineError>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FundRequest {
    pub idempotency_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub project_id: i64,
    pub status: ProjectStatus,
    pub items_total: i64,
    pub items_resolved: i64,
    pub items_without_consensus: i64,
    pub answers_total: i64,
    pub answers_accepted: i64,
    pub answers_rejected: i64,
    pub budget: Micros,
    pub escrow_balance: Micros,
    pub paid_out: Micros,
}

// ---------------------------------------------------------------- queue

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRequest {
    /// How many tasks to lease at once (1 to 100).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub lease_id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub expires_at: Timestamp,
    /// The item's data as imported (e.g. `{"text": "..."}`).
    pub data: Value,
    pub task_type: TaskType,
    pub schema: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseResponse {
    /// Empty when the project has nothing left for this contributor.
    pub tasks: Vec<Task>,
}

/// An open lease, as `GET /me/leases` and renewals report it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseInfo {
    pub lease_id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub expires_at: Timestamp,
}

/// Lease from any open project the caller may work on, highest priority
/// first (then oldest project), filling `count` across projects.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseAnyRequest {
    #[serde(default = "one")]
    pub count: u32,
}

// ---------------------------------------------------------------- submissions

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitAnswer {
    pub lease_id: i64,
    /// Per type. Classification: `{"label": "positive"}`.
    pub answer: Value,
    /// Chosen by the client, unique per submission; a retry with the same
    /// key returns the first result and changes nothing.
    pub idempotency_key: String,
    /// Hex ed25519 signature, by one of the caller's linked keys, of
    /// `sahel_protocol::provenance::provenance_message` over the item's
    /// content hash, the project's guideline version and the normalized
    /// answer. Without it the server signs with the account's custodial key
    /// (unless the user revoked it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AnswerStatus {
    /// Waiting for the item's consensus.
    Pending,
    /// Reviewed types: waiting for its reviews.
    PendingReview,
    Accepted,
    Rejected,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submission {
    pub id: i64,
    pub lease_id: i64,
    pub item_id: i64,
    pub project_id: i64,
    pub answer: Value,
    pub status: AnswerStatus,
    /// Paid for this answer so far (the reward once accepted).
    pub paid: Micros,
    pub created_at: Timestamp,
    /// On bounties that show it, in the response to an answer to a gold
    /// item: whether it was right, and the known answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_feedback: Option<GoldFeedback>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GoldFeedback {
    pub correct: bool,
    pub answer: Value,
}

/// Up to 100 answers in one call; each is accepted or refused on its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitBatch {
    pub submissions: Vec<SubmitAnswer>,
}

/// One answer's fate in a batch: `submission` or `error`, never both.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitBatchResponse {
    /// In the order of the request.
    pub results: Vec<BatchResult>,
}

// ---------------------------------------------------------------- reviews

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    Accept,
    Reject,
}

/// An answer to review, on a lease (`POST /projects/{id}/reviews/lease`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// The answer's id is not shown: a reviewer judges the answer, not its
/// history, and gold reviews must look like any other.
pub struct ReviewTask {
    pub lease_id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub expires_at: Timestamp,
    /// The item's data, as contributors saw it.
    pub data: Value,
    /// The answer under review.
    pub answer: Value,
    pub task_type: TaskType,
    pub schema: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewLeaseResponse {
    /// `None` when nothing in the bounty is waiting for this reviewer.
    pub task: Option<ReviewTask>,
}

/// `POST /reviews/{lease_id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitReview {
    pub verdict: Verdict,
    /// Required to reject; stored with the review (and returned with it);
    /// at most 2,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A retry with the same key returns the first result and changes
    /// nothing.
    pub idempotency_key: String,
}

/// A review as its reviewer gave it (`POST /reviews/{lease_id}`). It says
/// nothing of the answer's fate: that would tell gold reviews apart.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GivenReview {
    pub id: i64,
    pub lease_id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// An answer whose right verdict the buyer knows, mixed into reviewers'
/// streams to measure them (`POST /projects/{id}/gold-reviews`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewGoldReview {
    /// An item of the bounty: reviewers see its data with the answer.
    pub item_id: i64,
    /// An answer valid under the bounty's schema.
    pub answer: Value,
    /// What a good reviewer says of it.
    pub verdict: Verdict,
    /// Why (for the buyer's records; never shown to reviewers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GoldReview {
    pub id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub answer: Value,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// Reviewers who judged it, and how many got it right.
    pub judged: u32,
    pub judged_right: u32,
    pub created_at: Timestamp,
}

/// A reviewer's record on one bounty (`GET /projects/{id}/reviewers`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewerStanding {
    pub user_id: i64,
    /// Reviews given, gold ones included.
    pub reviews: u32,
    pub gold_correct: u32,
    pub gold_total: u32,
    /// Posterior mean and lower credible bound of accuracy on gold
    /// reviews (Beta, with the same prior and level as contributors').
    pub accuracy_mean: f64,
    pub accuracy_lower: f64,
    pub suspended: bool,
    pub suspension_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Review {
    pub id: i64,
    pub lease_id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub answer_id: i64,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// The reviewed answer's status after this review.
    pub answer_status: AnswerStatus,
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------- ledger

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepositRequest {
    pub user_id: i64,
    pub amount: Micros,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balance {
    pub user_id: i64,
    pub balance: Micros,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub transaction_id: i64,
    pub kind: String,
    /// Signed: positive credits this account, negative debits it.
    pub amount: Micros,
    pub memo: Value,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerHistory {
    pub balance: Micros,
    pub entries: Vec<LedgerEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransactionReceipt {
    pub transaction_id: i64,
    pub kind: String,
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------- receipts

/// The server's receipt-signing key, as `GET /.well-known/sahel-server-key`
/// publishes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerKeyInfo {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// The domain tag that starts every hashed receipt layout.
    pub receipt_domain: String,
}

/// One page of `GET /me/receipts`: the caller's receipts after
/// `after_seq`, the signed predecessor of each, and the balances of the
/// caller's accounts now. `next_after_seq` is set when more pages follow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiptPage {
    #[serde(flatten)]
    pub bundle: crate::receipt::ReceiptBundle,
    pub next_after_seq: Option<u64>,
}

// ---------------------------------------------------------------- money paths

/// `POST /projects/{id}/close`: end open leases, cancel unfinished items,
/// refund the unspent escrow to the buyer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CloseProject {
    pub idempotency_key: String,
}

/// The result of closing a bounty.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClosedProject {
    pub project: Project,
    pub refunded: Micros,
    pub leases_ended: u64,
    pub items_cancelled: u64,
}

/// `PUT /me/payout-address`: `0x` + 40 hex digits; mixed case must pass
/// its EIP-55 checksum; the zero address is refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetPayoutAddress {
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PayoutAddress {
    /// EIP-55 checksummed.
    pub address: String,
    pub updated_at: Timestamp,
}

/// `POST /me/withdrawals`: lock an amount until the next settlement epoch
/// pays it to the payout address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WithdrawalRequest {
    pub amount: Micros,
    pub idempotency_key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    /// Locked, waiting for the next epoch.
    Pending,
    /// Included in an epoch's Merkle tree.
    Settled,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Withdrawal {
    pub id: i64,
    pub amount: Micros,
    pub status: WithdrawalStatus,
    pub epoch: Option<i64>,
    pub address: Option<String>,
    pub transaction_id: i64,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

// ---------------------------------------------------------------- settlement

/// `POST /admin/epochs`: settle every pending withdrawal of an account with
/// a payout address and publish the new Merkle root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CloseEpoch {
    pub idempotency_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettlementEpoch {
    pub id: i64,
    /// `0x` hex root of the OpenZeppelin `StandardMerkleTree`.
    pub root: String,
    /// Sum of the leaves, decimal, in the payout token's smallest unit.
    pub total: String,
    pub decimals: u32,
    pub leaves: i64,
    /// Micro-units settled by this epoch.
    pub settled: Micros,
    /// Micro-units owed in all, cumulatively, by this epoch's tree.
    pub cumulative: Micros,
    pub created_at: Timestamp,
}

/// One address's claim in an epoch, for a cumulative Merkle distributor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettlementProof {
    pub epoch: i64,
    pub root: String,
    /// EIP-55 checksummed.
    pub address: String,
    /// Cumulative amount, decimal, in the token's smallest unit.
    pub amount: String,
    pub amount_micros: Micros,
    pub decimals: u32,
    /// `0x` hex sibling hashes from the leaf up.
    pub proof: Vec<String>,
}

// ---------------------------------------------------------------- datasets

/// `POST /projects/{id}/datasets`: publish a finished bounty's resolved
/// items as a new dataset version. At least one price must be set; a use
/// whose price is absent is not licensed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishDataset {
    #[serde(default)]
    pub title: Option<String>,
    /// Charged per record read through the records API.
    #[serde(default)]
    pub price_per_record: Option<Micros>,
    /// Charged per full export.
    #[serde(default)]
    pub price_per_export: Option<Micros>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    pub id: i64,
    pub project_id: i64,
    pub buyer_id: i64,
    pub version: i32,
    pub title: String,
    pub price_per_record: Option<Micros>,
    pub price_per_export: Option<Micros>,
    pub record_count: i64,
    /// Contributors and reviewers sharing its royalties.
    pub contributors: i64,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub seq: i64,
    pub item_id: i64,
    pub data: Value,
    pub result: Value,
}

/// What one use cost and where the money went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UseCharge {
    pub use_id: i64,
    pub amount: Micros,
    pub fee: Micros,
    pub buyer_share: Micros,
    /// Credited to the dataset's royalty pool, split among contributors.
    pub royalty_pool: Micros,
    pub transaction_id: i64,
}

/// `GET /datasets/{id}/records?page=&per_page=`: one charged page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetPage {
    pub dataset_id: i64,
    pub version: i32,
    pub page: i64,
    pub per_page: i64,
    pub total_records: i64,
    pub records: Vec<DatasetRecord>,
    /// Absent for a page past the end (nothing is charged).
    pub charge: Option<UseCharge>,
}

/// What a royalty distribution run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoyaltyRun {
    pub rounds_opened: u64,
    pub batches_paid: u64,
    pub payments: u64,
}

// ---------------------------------------------------------------- provenance

/// The key the server signs answers with for this account, when the user
/// does not sign them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustodialKey {
    pub public_key: String,
    /// False once revoked: unsigned submissions are then refused.
    pub active: bool,
}

// ---------------------------------------------------------------- errors

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g.
    /// `urn:sahel:problem:lease-expired`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ImportLineError>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub database: String,
    pub queue: String,
}

// ---------------------------------------------------------------- quality
// (gold questions, EM aggregation, reliability; see the server's
// `consensus::quality`)

/// A bounty's quality settings, as a buyer sets them on a draft
/// (`PUT /projects/{id}/quality/settings`). Setting them at all switches
/// the bounty from plurality vote to the quality engine. Every field is
/// optional; what is left out gets its default.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QualitySettingsRequest {
    /// One task in this many is a gold item (default 10; 0: no gold).
    #[serde(default)]
    pub gold_every: Option<u32>,
    /// Resolve an item once its best class has this posterior (default
    /// 0.95).
    #[serde(default)]
    pub target_confidence: Option<f64>,
    /// Answers before an item may resolve (default: the overlap; lower is
    /// dynamic overlap).
    #[serde(default)]
    pub min_answers: Option<u32>,
    /// Suspend below this accuracy (default: halfway between chance and
    /// 0.75).
    #[serde(default)]
    pub accuracy_threshold: Option<f64>,
    /// Gold answers (or their worth in checked answers) before anyone is
    /// judged (default 8).
    #[serde(default)]
    pub min_gold: Option<u32>,
    /// Gold items in the qualification exam (default 0: none).
    #[serde(default)]
    pub exam_size: Option<u32>,
    /// Share of exam answers that must be right (default 0.8).
    #[serde(default)]
    pub exam_pass_mark: Option<f64>,
    /// Answers faster than this (lease to submission) count as too fast
    /// (default 0: off).
    #[serde(default)]
    pub speed_floor_ms: Option<u64>,
    /// After a contributor answers a gold item, tell them whether they were
    /// right and the known answer (default false: it reveals the item was
    /// gold).
    #[serde(default)]
    pub gold_feedback: Option<bool>,
}

/// A bounty's quality settings in effect; anyone who can see the bounty
/// can read them (`GET /projects/{id}/quality/settings`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QualitySettings {
    pub project_id: i64,
    /// `em`: Dawid-Skene EM with gold; `vote`: the plurality vote.
    pub aggregation: String,
    pub gold_every: u32,
    pub target_confidence: f64,
    pub min_answers: u32,
    pub max_answers: u32,
    pub accuracy_threshold: f64,
    pub min_gold: u32,
    pub exam_size: u32,
    pub exam_pass_mark: f64,
    pub speed_floor_ms: u64,
    /// Contributors see the known answer after answering a gold item.
    #[serde(default)]
    pub gold_feedback: bool,
    /// How payment follows decisions, in words.
    pub payment_rule: String,
}

/// Marks an item gold (`POST /projects/{id}/gold`). Without `answer`, the
/// item's resolved result is taken as the known answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MarkGold {
    pub item_id: i64,
    #[serde(default)]
    pub answer: Option<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoldItem {
    pub item_id: i64,
    pub answer: Value,
    /// `import` or `resolved`.
    pub source: String,
}

/// One contributor's standing on a bounty, as its buyer sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContributorQuality {
    pub user_id: i64,
    pub answers: u32,
    pub gold_correct: u32,
    pub gold_total: u32,
    /// Posterior mean of the accuracy (gold and checked answers).
    pub accuracy: f64,
    /// Its lower credible bound, compared with the threshold.
    pub accuracy_lower: f64,
    /// Accuracy by the last EM estimate, if one ran.
    pub em_accuracy: Option<f64>,
    /// Share of their answers on resolved items that agree with the result.
    pub agreement: Option<f64>,
    /// `none`, `pending`, `passed` or `failed`.
    pub exam: String,
    pub signals: Vec<String>,
    pub suspended: bool,
    /// Why, in words, when suspended.
    pub suspension_reason: Option<String>,
}

/// Agreement statistics and reliability of a bounty
/// (`GET /projects/{id}/quality`, its buyer only).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QualityReport {
    pub project_id: i64,
    pub settings: QualitySettings,
    pub classes: Vec<String>,
    /// Krippendorff's alpha (nominal) over every counted answer.
    pub alpha: Option<f64>,
    /// `confusion[k][l]`: answers saying class `l` on resolved items whose
    /// result is `k`.
    pub confusion: Vec<Vec<u64>>,
    pub items_resolved: i64,
    pub answers_per_resolved_item: Option<f64>,
    pub gold_items: i64,
    pub gold_answers: i64,
    /// Answers that stopped counting because their author was suspended.
    pub discarded_answers: i64,
    /// Resolved items the latest estimate would label otherwise (their
    /// payments stand).
    pub revised_items: i64,
    pub estimations: i64,
    pub estimated_at: Option<Timestamp>,
    pub contributors: Vec<ContributorQuality>,
    /// Pairs of accounts flagged as agreeing far more than independence
    /// predicts on contested items.
    pub flagged_pairs: Vec<(i64, i64)>,
}

/// A stored file, named by the SHA-256 of its bytes (lowercase hex).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Artifact {
    pub sha256: String,
    pub size: u64,
    /// Recognised from the bytes, never taken from the uploader.
    pub media_type: String,
    pub created_at: Timestamp,
}

/// `POST /projects/{id}/exports?format=...`: a project's results written
/// to object storage, downloadable at `download` by the buyer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredExport {
    pub project_id: i64,
    pub format: String,
    pub artifact: Artifact,
    /// `/api/v1/artifacts/{sha256}`.
    pub download: String,
}

/// `POST /projects/{id}/items/from-prefix`: import every object under a
/// store prefix the server may read (`s3://bucket/prefix`, `file:///dir/`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportFromPrefix {
    pub url: String,
}

/// A bounty's upload limits (`PUT /projects/{id}/artifact-limits`); unset
/// fields fall back to the server's.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Media types (`image/png`, `audio/*`); unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Vec<String>>,
}
