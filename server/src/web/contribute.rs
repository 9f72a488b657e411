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
    let rows = open
        .into_iter()
        .map(|p| BountyRow {
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
    match schema {
        LabelSchema::Classification { classes } => classes
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
            .collect(),
    }
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
        },
    )
}

pub struct TaskView {
    pub lease_id: i64,
    pub text: String,
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
    classes: Vec<ClassKey>,
    task: Option<TaskView>,
    reward: Micros,
    completed: bool,
}

fn task_view(t: &api::Task) -> TaskView {
    TaskView {
        lease_id: t.lease_id,
        text: match t.data.get("text") {
            Some(Value::String(s)) => s.clone(),
            _ => t.data.to_string(),
        },
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
        _ => None,
    };
    render(
        &s.v,
        &Work {
            ctx: s.v.ctx(),
            id,
            title: p.row.title.clone(),
            instructions: p.row.instructions.clone(),
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
}

#[derive(Template)]
#[template(path = "earnings.html")]
struct Earnings {
    ctx: Ctx,
    name: String,
    own: bool,
    balance: Micros,
    pending: i64,
    accepted: i64,
    rejected: i64,
    entries: Vec<EntryView>,
}

fn describe(e: &api::LedgerEntry) -> (String, Option<String>) {
    let num = |k: &str| e.memo.get(k).and_then(Value::as_i64);
    match (e.kind.as_str(), num("project_id"), num("item_id")) {
        ("pay_answers", Some(p), Some(i)) => (
            format!("Accepted answer on item {i} of bounty {p}"),
            Some(format!("/bounties/{p}")),
        ),
        ("fund", Some(p), _) => (format!("Funded bounty {p}"), Some(format!("/projects/{p}"))),
        ("deposit", _, _) => ("Deposit".to_owned(), None),
        (other, _, _) => (other.replace('_', " "), None),
    }
}

pub async fn my_earnings(
    state: web::Data<AppState>,
    s: SignedIn,
) -> Result<HttpResponse, PageError> {
    let id = s.user().id;
    earnings_of(&state, &s, id).await
}

/// Someone's earnings: only their own (admins may look at anyone's).
pub async fn earnings(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let me = s.user();
    if id != me.id && !me.roles.has(Role::Admin) {
        return Err(
            Error::forbidden("not-your-earnings", "you can only see your own earnings").into(),
        );
    }
    earnings_of(&state, &s, id).await
}

async fn earnings_of(
    state: &AppState,
    s: &SignedIn,
    user_id: i64,
) -> Result<HttpResponse, PageError> {
    let conn = &state.db.conn;
    let u = crate::accounts::get_user(conn, user_id).await?;
    let history = ledger::history(conn, AccountRef::User(user_id), 200).await?;
    let (pending, accepted, rejected) = views::answer_counts(conn, user_id).await?;
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
            }
        })
        .collect();
    render(
        &s.v,
        &Earnings {
            ctx: s.v.ctx(),
            name: u.display_name,
            own: user_id == s.user().id,
            balance: history.balance,
            pending,
            accepted,
            rejected,
            entries,
        },
    )
}
