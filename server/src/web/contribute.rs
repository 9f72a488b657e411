//! Contributor pages: open bounties, a bounty's instructions, the labeling
//! page, and earnings.
//!
//! The labeling page works as a plain form (one task per page load, the
//! answer posted back here) and, with `label.js`, as a single page that
//! answers and leases through the JSON API with the session cookie, keeps
//! the next task fetched ahead, and never reloads.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, ProjectStatus, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::PageError;
use super::session::SignedIn;
use super::{Ctx, path_id, render, see_other, views, when};
use crate::accounts::PendingNonce;
use crate::consensus::LabelSchema;
use crate::db::now_ms;
use crate::error::{ClientKind, Error};
use crate::ledger::{self, AccountRef};
use crate::projects::{self, Project};
use crate::queue;
use crate::state::AppState;

pub struct BountyRow {
    pub id: i64,
    pub title: String,
    pub task_type: &'static str,
    pub reward: Micros,
    pub overlap: u32,
    pub items_left: i64,
    pub items_total: i64,
    /// The visitor's reliability estimate here, in percent, once the
    /// quality engine has one.
    pub reliability: Option<String>,
}

#[derive(Template)]
#[template(path = "bounties.html")]
struct Bounties {
    ctx: Ctx,
    rows: Vec<BountyRow>,
}

pub async fn bounties(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, PageError> {
    let conn = &state.db.conn;
    let open: Vec<api::Project> = projects::list(conn, &s.user())
        .await?
        .into_iter()
        .filter(|p| p.status == ProjectStatus::Open)
        .collect();
    let ids: Vec<i64> = open.iter().map(|p| p.id).collect();
    let left = views::open_items(conn, &ids).await?;
    let mine = views::reliability(conn, s.user().id, &ids).await?;
    let rows = open
        .into_iter()
        .map(|p| BountyRow {
            reliability: mine.get(&p.id).map(|a| percent(*a)),
            id: p.id,
            title: p.title,
            task_type: p.task_type.as_str(),
            reward: p.reward,
            overlap: p.overlap,
            items_left: left.get(&p.id).copied().unwrap_or(0),
            items_total: p.item_count,
        })
        .collect();
    render(
        &s.v,
        &Bounties {
            ctx: s.v.ctx(),
            rows,
        },
    )
}

/// A class and the key that picks it on the labeling page (1-9, then 0).
pub struct ClassKey {
    pub key: String,
    pub name: String,
}

pub fn class_keys(schema: &LabelSchema) -> Vec<ClassKey> {
    schema
        .classes()
        .iter()
        .enumerate()
        .map(|(i, c)| ClassKey {
            key: match i {
                0..=8 => (i + 1).to_string(),
                9 => "0".to_owned(),
                _ => String::new(),
            },
            name: c.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "bounty.html")]
struct Bounty {
    ctx: Ctx,
    id: i64,
    title: String,
    instructions: String,
    task_type: &'static str,
    classes: Vec<ClassKey>,
    reward: Micros,
    overlap: u32,
    items_left: i64,
    items_total: i64,
    status: &'static str,
    can_work: bool,
    is_owner: bool,
    /// Answers of this type are reviewed by contributors.
    reviewed: bool,
    /// Paid per review (reviewed types).
    review_reward: Micros,
    /// Settled items shown as worked examples: (item, result).
    examples: Vec<(String, String)>,
}

pub async fn bounty(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let conn = &state.db.conn;
    let p = projects::get_visible(conn, &s.user(), id).await?;
    let left = views::open_items(conn, &[id]).await?;
    let r = &p.row;
    render(
        &s.v,
        &Bounty {
            ctx: s.v.ctx(),
            id,
            title: r.title.clone(),
            instructions: r.instructions.clone(),
            task_type: p.schema.task_type().as_str(),
            classes: class_keys(&p.schema),
            reward: Micros(r.reward),
            overlap: r.overlap as u32,
            items_left: left.get(&id).copied().unwrap_or(0),
            items_total: r.item_count,
            status: projects::status_str(p.status()),
            can_work: p.status() == ProjectStatus::Open && s.user().roles.has(Role::Contributor),
            is_owner: r.buyer_id == s.user().id,
            reviewed: p.schema.is_reviewed(),
            examples: views::examples(conn, id).await?,
            review_reward: Micros(r.review_reward),
        },
    )
}

pub struct TaskView {
    pub lease_id: i64,
    pub text: String,
    /// The item's data as JSON, for the page's script to render.
    pub data_json: String,
    pub expires_at: i64,
    /// When the lease ends, for the page without script.
    pub expires_label: String,
}

#[derive(Template)]
#[template(path = "work.html")]
struct Work {
    ctx: Ctx,
    id: i64,
    title: String,
    instructions: String,
    task_type: &'static str,
    schema_json: String,
    classes: Vec<ClassKey>,
    task: Option<TaskView>,
    reward: Micros,
    completed: bool,
    paused: bool,
}

fn task_view(t: &api::Task) -> TaskView {
    TaskView {
        lease_id: t.lease_id,
        text: match t.data.get("text") {
            Some(Value::String(s)) => s.clone(),
            _ => t.data.to_string(),
        },
        data_json: t.data.to_string(),
        expires_at: t.expires_at.millis(),
        expires_label: when(t.expires_at.millis()),
    }
}

async fn open_project(state: &AppState, s: &SignedIn, id: i64) -> Result<Project, PageError> {
    let user = s.require(Role::Contributor)?;
    let p = projects::get_visible(&state.db.conn, &user, id).await?;
    if p.status() == ProjectStatus::Draft {
        return Err(Error::conflict("project-not-open", "this bounty is not funded yet").into());
    }
    Ok(p)
}

/// The labeling page, with one task: the one the contributor already
/// holds here, or a newly leased one.
pub async fn work(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let p = open_project(&state, &s, id).await?;
    let user = s.user();
    let task = match p.status() {
        ProjectStatus::Open => match views::held_task(&state.db.conn, &p, user.id, now_ms()).await?
        {
            Some(t) => Some(t),
            None => queue::lease(&state, &user, &mut PendingNonce::default(), id, 1)
                .await?
                .into_iter()
                .next(),
        },
        // Paused: no new task. Leases taken before the pause may still be
        // answered (the script keeps showing the one it holds), but a
        // fresh page starts none.
        _ => None,
    };
    render(
        &s.v,
        &Work {
            paused: p.status() == ProjectStatus::Paused,
            ctx: s.v.ctx(),
            id,
            title: p.row.title.clone(),
            instructions: p.row.instructions.clone(),
            task_type: p.schema.task_type().as_str(),
            schema_json: p.schema.to_json().to_string(),
            classes: class_keys(&p.schema),
            task: task.as_ref().map(task_view),
            reward: Micros(p.row.reward),
            completed: p.status() == ProjectStatus::Completed,
        },
    )
}

#[derive(Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lease_id: String,
    label: Option<String>,
}

fn lease_id(raw: &str) -> Result<i64, PageError> {
    raw.trim().parse().map_err(|_| {
        Error::bad_request("bad-form", "the form lost its task; reload the page").into()
    })
}

/// The form fallback of the labeling page: answers one task and moves on.
/// Uses the same idempotency key as the script, so a form post and a
/// script post of one lease count once.
pub async fn work_submit(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<AnswerForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    let user = s.require(Role::Contributor)?;
    let lease_id = lease_id(&form.lease_id)?;
    let Some(label) = form.label.as_deref().filter(|l| !l.is_empty()) else {
        return Err(Error::invalid("no-class", "pick a class before sending the answer").into());
    };
    let submitted = queue::submit(
        &state,
        &user,
        &mut PendingNonce::default(),
        api::SubmitAnswer {
            lease_id,
            answer: json!({ "label": label }),
            idempotency_key: format!("web-{lease_id}"),
            // The account's custodial key signs for the browser.
            signature: None,
        },
    )
    .await;
    match submitted {
        Ok(_) => {}
        // The task went away under the contributor (expired, released,
        // already complete): nothing to fix, take the next one.
        Err(e)
            if matches!(
                e.client_kind(),
                Some(ClientKind::Gone | ClientKind::Conflict)
            ) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&format!("/bounties/{id}/work")))
}

#[derive(Deserialize)]
pub struct SkipForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lease_id: String,
}

/// Skips a task: the next one is leased while this one is still held (so
/// it cannot come straight back), then this one is released for others.
pub async fn work_skip(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<SkipForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    let p = open_project(&state, &s, id).await?;
    let user = s.user();
    let lease_id = lease_id(&form.lease_id)?;
    if p.status() == ProjectStatus::Open {
        queue::lease(&state, &user, &mut PendingNonce::default(), id, 1).await?;
    }
    match queue::release(&state, &user, lease_id).await {
        Ok(()) => {}
        Err(e) if e.client_kind() == Some(ClientKind::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&format!("/bounties/{id}/work")))
}

pub struct EntryView {
    pub when: String,
    pub what: String,
    pub link: Option<String>,
    pub amount: Micros,
    pub credit: bool,
    /// Its receipt's place in the chain (listed below the history).
    pub receipt: Option<i64>,
}

pub struct ReceiptView {
    pub seq: i64,
    pub transaction_id: i64,
    pub kind: String,
    pub when: String,
    pub hash: String,
    pub prev_hash: String,
    /// Empty in the moment between commit and signing.
    pub signature: String,
}

pub struct UseView {
    pub dataset_id: i64,
    pub project_id: i64,
    pub title: String,
    pub version: i32,
    pub records: i64,
    pub share: String,
    pub uses: u64,
    pub royalties: Micros,
}

pub struct WithdrawalView {
    pub id: i64,
    pub amount: Micros,
    pub status: &'static str,
    pub epoch: Option<i64>,
    pub address: String,
    pub when: String,
}

/// Ledger entries per page of the earnings history.
const ENTRIES_PER_PAGE: u64 = 25;

#[derive(Template)]
#[template(path = "earnings.html")]
struct Earnings {
    ctx: Ctx,
    name: String,
    own: bool,
    balance: Micros,
    locked: Micros,
    pending: i64,
    accepted: i64,
    rejected: i64,
    entries: Vec<EntryView>,
    page: u64,
    has_next: bool,
    /// This page's own address, for the pager (admins read others').
    here: String,
    receipts: Vec<ReceiptView>,
    server_key: String,
    uses: Vec<UseView>,
    payout_address: Option<String>,
    withdrawals: Vec<WithdrawalView>,
    withdraw_key: String,
    notice: Option<&'static str>,
}

fn describe(e: &api::LedgerEntry) -> (String, Option<String>) {
    let num = |k: &str| e.memo.get(k).and_then(Value::as_i64);
    match (e.kind.as_str(), num("project_id"), num("item_id")) {
        ("pay_answers", Some(p), Some(i)) => (
            format!("Accepted answer on item {i} of bounty {p}"),
            Some(format!("/bounties/{p}")),
        ),
        ("fund", Some(p), _) => (format!("Funded bounty {p}"), Some(format!("/projects/{p}"))),
        ("refund", Some(p), _) => (
            format!("Refund of bounty {p}"),
            Some(format!("/projects/{p}")),
        ),
        ("royalty", _, _) => match num("dataset_id") {
            Some(d) => (format!("Royalties from dataset {d}"), None),
            None => ("Royalties".to_owned(), None),
        },
        ("withdrawal", _, _) => ("Withdrawal (locked until settled)".to_owned(), None),
        ("deposit", _, _) => ("Deposit".to_owned(), None),
        (other, _, _) => (other.replace('_', " "), None),
    }
}

#[derive(Deserialize)]
pub struct EarningsQuery {
    page: Option<u64>,
    done: Option<String>,
}

pub async fn my_earnings(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<EarningsQuery>,
) -> Result<HttpResponse, PageError> {
    let id = s.user().id;
    earnings_of(&state, &s, id, &q).await
}

/// Someone's earnings: only their own (admins may look at anyone's).
pub async fn earnings(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    q: web::Query<EarningsQuery>,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let me = s.user();
    if id != me.id && !me.roles.has(Role::Admin) {
        return Err(
            Error::forbidden("not-your-earnings", "you can only see your own earnings").into(),
        );
    }
    earnings_of(&state, &s, id, &q).await
}

async fn earnings_of(
    state: &AppState,
    s: &SignedIn,
    user_id: i64,
    q: &EarningsQuery,
) -> Result<HttpResponse, PageError> {
    let conn = &state.db.conn;
    let u = crate::accounts::get_user(conn, user_id).await?;
    // Receipts follow their transaction's commit by up to a second; seal
    // what is waiting so the page shows every receipt, signed.
    ledger::receipts::seal(&state.db, &state.server_key).await?;
    let page = q.page.unwrap_or(1).max(1);
    let mut history = ledger::history_page(
        conn,
        AccountRef::User(user_id),
        (page - 1).saturating_mul(ENTRIES_PER_PAGE),
        ENTRIES_PER_PAGE + 1,
    )
    .await?;
    let has_next = history.entries.len() as u64 > ENTRIES_PER_PAGE;
    history.entries.truncate(ENTRIES_PER_PAGE as usize);
    let locked = ledger::balance(conn, AccountRef::Withdrawal(user_id)).await?;
    let (pending, accepted, rejected) = views::answer_counts(conn, user_id).await?;
    let tx_ids: Vec<i64> = history.entries.iter().map(|e| e.transaction_id).collect();
    let receipts = views::receipts_for(conn, &tx_ids).await?;
    let entries = history
        .entries
        .iter()
        .map(|e| {
            let (what, link) = describe(e);
            EntryView {
                when: when(e.created_at.millis()),
                what,
                link,
                amount: Micros(e.amount.0.abs()),
                credit: e.amount.0 >= 0,
                receipt: receipts
                    .iter()
                    .find(|r| r.transaction_id == e.transaction_id)
                    .map(|r| r.seq),
            }
        })
        .collect();
    let receipts = receipts
        .into_iter()
        .map(|r| {
            let kind = history
                .entries
                .iter()
                .find(|e| e.transaction_id == r.transaction_id)
                .map(|e| e.kind.replace('_', " "))
                .unwrap_or_default();
            let at = history
                .entries
                .iter()
                .find(|e| e.transaction_id == r.transaction_id)
                .map(|e| when(e.created_at.millis()))
                .unwrap_or_default();
            ReceiptView {
                seq: r.seq,
                transaction_id: r.transaction_id,
                kind,
                when: at,
                hash: r.hash,
                prev_hash: r.prev_hash,
                signature: r.signature.unwrap_or_default(),
            }
        })
        .collect();
    let uses = views::data_uses(conn, user_id)
        .await?
        .into_iter()
        .map(|d| UseView {
            dataset_id: d.dataset_id,
            project_id: d.project_id,
            title: d.title,
            version: d.version,
            records: d.records,
            share: format!("{}.{:02}%", d.share_bps / 100, d.share_bps % 100),
            uses: d.uses,
            royalties: d.royalties,
        })
        .collect();
    let payout_address = ledger::payments::payout_address(conn, user_id)
        .await?
        .map(|a| a.address);
    let withdrawals = ledger::payments::withdrawals(conn, user_id)
        .await?
        .into_iter()
        .map(|w| WithdrawalView {
            id: w.id,
            amount: w.amount,
            status: match w.status {
                api::WithdrawalStatus::Pending => "pending",
                api::WithdrawalStatus::Settled => "settled",
            },
            epoch: w.epoch,
            address: w.address.unwrap_or_default(),
            when: when(w.created_at.millis()),
        })
        .collect();
    let notice = match q.done.as_deref() {
        Some("address") => Some("Your payout address is saved."),
        Some("withdrawal") => Some(
            "Your withdrawal is requested: the amount is locked until the next settlement pays it to your payout address.",
        ),
        _ => None,
    };
    render(
        &s.v,
        &Earnings {
            ctx: s.v.ctx(),
            name: u.display_name,
            own: user_id == s.user().id,
            balance: history.balance,
            locked,
            pending,
            accepted,
            rejected,
            entries,
            page,
            has_next,
            here: if user_id == s.user().id {
                "/earnings".to_owned()
            } else {
                format!("/users/{user_id}/earnings")
            },
            receipts,
            server_key: state.server_key.public_hex(),
            uses,
            payout_address,
            withdrawals,
            withdraw_key: crate::accounts::random_hex(16),
            notice,
        },
    )
}

#[derive(Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    address: String,
}

/// Sets the EVM address settlements pay to.
pub async fn set_payout_address(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<AddressForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let address = form.address.trim().to_owned();
    if address.is_empty() {
        return Err(Error::invalid("invalid-address", "type your payout address").into());
    }
    ledger::payments::set_payout_address(&state.db, s.user().id, api::SetPayoutAddress { address })
        .await?;
    Ok(see_other("/earnings?done=address"))
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    idempotency_key: String,
}

/// Locks an amount for the next settlement epoch.
pub async fn request_withdrawal(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<WithdrawForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let amount: Micros = form.amount.trim().parse().map_err(|_| {
        Error::invalid(
            "invalid-amount",
            "the amount must be a number of tokens such as 1.5",
        )
    })?;
    ledger::payments::request_withdrawal(
        &state.db,
        s.user().id,
        api::WithdrawalRequest {
            amount,
            idempotency_key: form.idempotency_key.clone(),
        },
    )
    .await?;
    Ok(see_other("/earnings?done=withdrawal"))
}

/// A fraction as a whole percentage.
pub fn percent(f: f64) -> String {
    format!("{}%", (f.clamp(0.0, 1.0) * 100.0).round() as i64)
}

pub struct QualityRow {
    pub project_id: i64,
    pub title: String,
    pub engine: bool,
    pub reliability: String,
    pub lower: String,
    pub accepted: i64,
    pub rejected: i64,
    pub pending: i64,
    pub gold_total: i32,
    pub gold_correct: i32,
    /// `active`, `suspended`, `exam failed`.
    pub standing: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "quality.html")]
struct QualityPage {
    ctx: Ctx,
    rows: Vec<QualityRow>,
    /// Across every bounty: gold right, gold answered, and the estimate
    /// from them (empty before any gold answer).
    overall: Option<(i32, i32, String, String)>,
    reviews: Vec<ReviewRow>,
}

/// A review of one of the contributor's answers: how they learn why an
/// answer was rejected.
pub struct ReviewRow {
    pub project_id: i64,
    pub answer_id: i64,
    pub accepted: bool,
    pub reason: String,
    pub when: String,
}

/// The contributor's standing on every bounty they worked on.
pub async fn my_quality(
    state: web::Data<AppState>,
    s: SignedIn,
) -> Result<HttpResponse, PageError> {
    let user = s.require(Role::Contributor)?;
    let rows: Vec<QualityRow> = views::my_quality(&state.db.conn, user.id)
        .await?
        .into_iter()
        .map(|q| {
            let st = q.standing.as_ref();
            QualityRow {
                project_id: q.project_id,
                title: q.title,
                engine: st.is_some(),
                reliability: st
                    .filter(|r| views::has_estimate(r))
                    .map(|r| percent(r.accuracy_mean))
                    .unwrap_or_default(),
                lower: st.map(|r| percent(r.accuracy_lower)).unwrap_or_default(),
                accepted: q.accepted,
                rejected: q.rejected,
                pending: q.pending,
                gold_total: st.map_or(0, |r| r.gold_total),
                gold_correct: st.map_or(0, |r| r.gold_correct),
                standing: match st {
                    Some(r) if r.suspended_at.is_some() => "suspended",
                    Some(r) if r.exam == "failed" => "exam failed",
                    _ => "active",
                },
                reason: st
                    .and_then(|r| r.suspension_reason.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    render(
        &s.v,
        &QualityPage {
            ctx: s.v.ctx(),
            overall: overall_reliability(&rows),
            rows,
            reviews: crate::consensus::review::reviews_of_author(&state.db.conn, user.id, 50)
                .await?
                .into_iter()
                .map(|r| ReviewRow {
                    project_id: r.project_id,
                    answer_id: r.answer_id,
                    accepted: r.verdict == api::Verdict::Accept,
                    reason: r.reason.unwrap_or_default(),
                    when: when(r.created_at.millis()),
                })
                .collect(),
        },
    )
}

#[derive(Template)]
#[template(path = "review.html")]
struct Review {
    ctx: Ctx,
    id: i64,
    title: String,
    instructions: String,
}

/// The review queue of a bounty: the page's script leases one answer at a
/// time through the API; the server checks who may review what.
pub async fn review(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let p = open_project(&state, &s, id).await?;
    render(
        &s.v,
        &Review {
            ctx: s.v.ctx(),
            id,
            title: p.row.title.clone(),
            instructions: p.row.instructions.clone(),
        },
    )
}

/// Overall reliability: every bounty's gold answers pooled into one Beta
/// posterior, under the default rule's prior (the benefit of the doubt a
/// newcomer gets), as mean and lower credible bound in percent.
fn overall_reliability(rows: &[QualityRow]) -> Option<(i32, i32, String, String)> {
    let (right, total) = rows.iter().fold((0, 0), |(r, t), q| {
        (r + q.gold_correct.max(0), t + q.gold_total.max(0))
    });
    if total == 0 {
        return None;
    }
    let e = sahel_quality::reliability::SuspensionRule::for_classes(2).estimate(
        sahel_quality::reliability::GoldRecord {
            correct: right as u32,
            total: total as u32,
        },
    );
    Some((right, total, percent(e.mean), percent(e.lower)))
}
