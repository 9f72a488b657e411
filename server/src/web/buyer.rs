//! Buyer pages: their bounties, the creation form, import and funding,
//! progress with charts, and the resolved items with their answers.
//!
//! Every page here is for the bounty's buyer only (or an admin):
//! `projects::get_owned` refuses anyone else.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use sahel_protocol::Micros;
use sahel_protocol::api::{self, ProjectStatus, Role, TaskType};
use serde::Deserialize;
use serde_json::json;

use super::charts::{self, Chart};
use super::contribute::ClassKey;
use super::error::PageError;
use super::session::SignedIn;
use super::{Ctx, multipart, path_id, render, render_status, see_other, views};
use crate::accounts::random_hex;
use crate::error::{ClientKind, Error};
use crate::ledger::{self, AccountRef};
use crate::projects::{self, NewProject, import};
use crate::queue;
use crate::state::AppState;

pub struct ProjectRow {
    pub id: i64,
    pub title: String,
    pub status: &'static str,
    pub items_total: i64,
    pub items_done: i64,
    pub budget: Micros,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct Projects {
    ctx: Ctx,
    rows: Vec<ProjectRow>,
}

pub async fn projects(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, PageError> {
    let user = s.require(Role::Buyer)?;
    let conn = &state.db.conn;
    let mine: Vec<api::Project> = projects::list(conn, &user)
        .await?
        .into_iter()
        .filter(|p| p.buyer_id == user.id)
        .collect();
    let ids: Vec<i64> = mine.iter().map(|p| p.id).collect();
    let open = views::open_items(conn, &ids).await?;
    let rows = mine
        .into_iter()
        .map(|p| ProjectRow {
            id: p.id,
            title: p.title,
            status: projects::status_str(p.status),
            items_total: p.item_count,
            items_done: match p.status {
                ProjectStatus::Draft => 0,
                _ => p.item_count - open.get(&p.id).copied().unwrap_or(0),
            },
            budget: p.budget,
        })
        .collect();
    render(
        &s.v,
        &Projects {
            ctx: s.v.ctx(),
            rows,
        },
    )
}

/// The creation form as typed: re-shown with a reason when refused.
#[derive(Deserialize)]
pub struct ProjectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    task_type: String,
    #[serde(default)]
    classes: String,
    /// Further schema fields as JSON (bounds, thresholds, file types).
    #[serde(default)]
    schema_options: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    overlap: String,
    #[serde(default)]
    reward: String,
    #[serde(default)]
    budget: String,
    #[serde(default)]
    items: String,
    /// Reviewed types only.
    #[serde(default)]
    reviews_per_answer: String,
    #[serde(default)]
    review_reward: String,
}

#[derive(Template)]
#[template(path = "project_new.html")]
struct NewProjectPage {
    ctx: Ctx,
    f: ProjectForm,
    error: Option<String>,
}

pub async fn new_form(s: SignedIn) -> Result<HttpResponse, PageError> {
    s.require(Role::Buyer)?;
    let f = ProjectForm {
        csrf: String::new(),
        title: String::new(),
        task_type: "classification".into(),
        classes: String::new(),
        schema_options: String::new(),
        instructions: String::new(),
        overlap: "3".into(),
        reward: "0.02".into(),
        budget: "6".into(),
        items: "100".into(),
        reviews_per_answer: String::new(),
        review_reward: String::new(),
    };
    render(
        &s.v,
        &NewProjectPage {
            ctx: s.v.ctx(),
            f,
            error: None,
        },
    )
}

/// The form's classes: one per line.
pub fn parse_classes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The schema the form describes: its lines are the classes (or labels,
/// for spans and boxes), and the options JSON adds or overrides fields.
/// The type's own parser validates the result.
pub fn form_schema(
    task_type: TaskType,
    lines: &str,
    options: &str,
) -> Result<serde_json::Value, Error> {
    let names = parse_classes(lines);
    let mut schema = match task_type {
        TaskType::Classification | TaskType::MultiLabel => json!({ "classes": names }),
        TaskType::TextSpans | TaskType::BoundingBoxes => json!({ "labels": names }),
        // Recordings by default; the options may name other types.
        TaskType::FileCollection => json!({
            "accept": ["audio/wav", "audio/webm", "audio/ogg", "audio/mpeg"],
            "max_bytes": 20_000_000,
        }),
        TaskType::Pairwise | TaskType::FreeText => json!({}),
    };
    if !options.trim().is_empty() {
        let extra: serde_json::Value = serde_json::from_str(options).map_err(|e| {
            Error::invalid(
                "invalid-schema",
                format!("the schema options are not JSON: {e}"),
            )
        })?;
        let Some(extra) = extra.as_object() else {
            return Err(Error::invalid(
                "invalid-schema",
                "the schema options must be a JSON object, e.g. {\"min_chars\": 20}",
            ));
        };
        for (k, v) in extra {
            schema[k] = v.clone();
        }
    }
    Ok(schema)
}

/// Turns the form into a validated project, revalidating the cost the page
/// computed: with an expected item count, the budget must cover overlap x
/// items x reward (funding checks the real count again).
fn validate(f: &ProjectForm) -> Result<NewProject, Error> {
    let bad = |code, msg: &str| Error::invalid(code, msg.to_owned());
    let task_type = TaskType::parse(f.task_type.as_str())
        .ok_or_else(|| bad("invalid-task-type", "choose a task type"))?;
    let overlap: u32 = f.overlap.trim().parse().map_err(|_| {
        bad(
            "invalid-overlap",
            "the overlap must be a whole number of answers per item",
        )
    })?;
    let reward: Micros = f.reward.parse().map_err(|_| {
        bad(
            "invalid-reward",
            "the reward must be an amount such as 0.02",
        )
    })?;
    let budget: Micros = f
        .budget
        .parse()
        .map_err(|_| bad("invalid-budget", "the budget must be an amount such as 6"))?;
    let schema = form_schema(task_type, &f.classes, &f.schema_options)?;
    // Free text and files, or any type whose options say `"review": true`.
    let reviewed =
        crate::consensus::LabelSchema::parse(task_type, &schema).is_ok_and(|s| s.is_reviewed());
    let reviews_per_answer = match f.reviews_per_answer.trim() {
        "" => None,
        _ if !reviewed => None,
        n => Some(n.parse::<u32>().map_err(|_| {
            bad(
                "invalid-reviews-per-answer",
                "the reviews per answer must be a whole number",
            )
        })?),
    };
    let review_reward: Option<Micros> = match f.review_reward.trim() {
        "" => None,
        _ if !reviewed => None,
        r => Some(r.parse().map_err(|_| {
            bad(
                "invalid-review-reward",
                "the reward per review must be an amount such as 0.005",
            )
        })?),
    };
    let new = NewProject::try_from(api::CreateProject {
        title: f.title.clone(),
        instructions: f.instructions.replace("\r\n", "\n"),
        task_type,
        schema,
        overlap,
        reward,
        budget,
        priority: 0,
        reviews_per_answer,
        review_reward,
        gold_review_every: None,
    })?;
    if !f.items.trim().is_empty() {
        let items: i64 = f
            .items
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                bad(
                    "invalid-items",
                    "the number of items must be a whole number",
                )
            })?;
        let reviews = (reviewed && new.review_reward.0 > 0)
            .then_some((new.review_reward, new.reviews_per_answer));
        let cost = crate::projects::cost(reward, overlap, items, reviews)
            .ok_or_else(|| bad("budget-too-small", "overlap x items x reward is too large"))?;
        if budget < cost {
            let reviews = match reviews {
                Some((r, k)) => format!(
                    " + {k} review(s) x {} answers x {items} items x {r}",
                    crate::consensus::max_answers_for(overlap)
                ),
                None => String::new(),
            };
            return Err(Error::invalid(
                "budget-too-small",
                format!(
                    "the budget {budget} does not cover overlap {overlap} x {items} items x reward {reward}{reviews} = {cost}"
                ),
            ));
        }
    }
    Ok(new)
}

pub async fn create(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<ProjectForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let user = s.require(Role::Buyer)?;
    let f = form.into_inner();
    let new = match validate(&f) {
        Ok(n) => n,
        Err(e) if e.client_kind() == Some(ClientKind::Invalid) => {
            let status = actix_web::ResponseError::status_code(&e);
            let error = Some(e.to_problem().detail);
            return render_status(
                &s.v,
                status,
                &NewProjectPage {
                    ctx: s.v.ctx(),
                    f,
                    error,
                },
            );
        }
        Err(e) => return Err(e.into()),
    };
    let p = projects::create(&state.db, &user, new).await?;
    Ok(see_other(&format!("/projects/{}", p.row.id)))
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    ctx: Ctx,
    id: i64,
    title: String,
    status: &'static str,
    is_draft: bool,
    classes: Vec<ClassKey>,
    overlap: i32,
    reward: Micros,
    budget: Micros,
    items: i64,
    cost: Micros,
    balance: Micros,
    can_fund: bool,
    fund_problem: Option<String>,
    fund_key: String,
    imported: Option<u64>,
    skipped: Option<u64>,
    can_publish: bool,
    datasets: Vec<DatasetRow>,
    published: Option<i32>,
}

pub struct DatasetRow {
    pub id: i64,
    pub version: i32,
    pub title: String,
    pub records: i64,
    pub contributors: i64,
    pub price_per_record: String,
    pub price_per_export: String,
    pub when: String,
}

#[derive(Deserialize)]
pub struct ImportedQuery {
    imported: Option<u64>,
    skipped: Option<u64>,
    published: Option<i32>,
}

pub async fn project(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    q: web::Query<ImportedQuery>,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let conn = &state.db.conn;
    let p = projects::get_owned(conn, &s.user(), id).await?;
    let r = &p.row;
    let cost = p.full_cost(r.item_count).unwrap_or(Micros(i64::MAX));
    let balance = ledger::balance(conn, AccountRef::User(r.buyer_id)).await?;
    let is_draft = p.status() == ProjectStatus::Draft;
    let fund_problem = if r.item_count == 0 {
        Some(
            "Import items first: funding escrows the budget for a known number of items."
                .to_owned(),
        )
    } else if r.budget < cost.0 {
        Some(format!(
            "The budget {} does not cover overlap {} x {} items x reward {} = {}.",
            Micros(r.budget),
            r.overlap,
            r.item_count,
            Micros(r.reward),
            cost
        ))
    } else if balance.0 < r.budget {
        Some(format!(
            "Your balance {} is less than the budget {}.",
            balance,
            Micros(r.budget)
        ))
    } else {
        None
    };
    render(
        &s.v,
        &ProjectPage {
            ctx: s.v.ctx(),
            id,
            title: r.title.clone(),
            status: projects::status_str(p.status()),
            is_draft,
            classes: super::contribute::class_keys(&p.schema),
            overlap: r.overlap,
            reward: Micros(r.reward),
            budget: Micros(r.budget),
            items: r.item_count,
            cost,
            balance,
            can_fund: is_draft && fund_problem.is_none(),
            fund_problem,
            fund_key: random_hex(16),
            imported: q.imported,
            skipped: q.skipped,
            can_publish: p.status().has_ended(),
            datasets: views::datasets_of(conn, id)
                .await?
                .into_iter()
                .map(|d| DatasetRow {
                    id: d.id,
                    version: d.version,
                    title: d.title,
                    records: d.record_count,
                    contributors: d.contributors,
                    price_per_record: d
                        .price_per_record
                        .map_or_else(|| "not licensed".into(), |m| Micros(m).to_string()),
                    price_per_export: d
                        .price_per_export
                        .map_or_else(|| "not licensed".into(), |m| Micros(m).to_string()),
                    when: super::when(d.created_at),
                })
                .collect(),
            published: q.published,
        },
    )
}

async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, PageError> {
    let mut buf = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Error::bad_request(
                "unreadable-body",
                format!("the upload could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::too_large(
                "body-too-large",
                format!("the upload exceeds the {limit}-byte limit"),
            )
            .into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The import form: a file (multipart) or pasted text, JSONL or CSV.
pub async fn import(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let user = s.user();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        Error::bad_request(
            "bad-form",
            "the import form must be sent as multipart/form-data",
        )
    })?;
    // The body is read whole (within the import limit) before the token in
    // it can be checked; nothing is written before that check.
    let body = read_limited(payload, state.config.max_import_bytes).await?;
    let parts = multipart::parse(&body, &boundary)
        .map_err(|e| Error::bad_request("bad-form", format!("the form could not be read: {e}")))?;
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let text = |name: &str| {
        field(name)
            .map(|p| String::from_utf8_lossy(p.data).into_owned())
            .unwrap_or_default()
    };
    s.v.check_form(&text("csrf"))?;
    let file = field("file").filter(|p| !p.data.is_empty());
    let (bytes, filename): (&[u8], &str) = match file {
        Some(f) => (f.data, f.filename.as_deref().unwrap_or_default()),
        None => (field("text").map_or(&[][..], |p| p.data), ""),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            Error::invalid("import-empty", "choose a file or paste items to import").into(),
        );
    }
    let format = match text("format").as_str() {
        "" | "auto" => guess_format(filename, bytes),
        other => import::Format::parse(other)?,
    };
    let partial = field("partial").is_some();
    let report = import::import(&state.db, &user, id, format, partial, bytes).await?;
    let skipped = report.errors.iter().filter(|e| e.line > 0).count();
    Ok(see_other(&format!(
        "/projects/{id}?imported={}&skipped={skipped}",
        report.imported
    )))
}

/// CSV by its file name, or by text that does not start like JSON.
pub fn guess_format(filename: &str, bytes: &[u8]) -> import::Format {
    let lower = filename.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        return import::Format::Csv;
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return import::Format::LabelStudio;
    }
    if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") || lower.ends_with(".json") {
        return import::Format::Jsonl;
    }
    match first {
        Some(b'{') => import::Format::Jsonl,
        _ => import::Format::Csv,
    }
}

#[derive(Deserialize)]
pub struct FundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn fund(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<FundForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    let p = projects::fund(&state.db, &s.user(), id, &form.idempotency_key).await?;
    queue::load_project(&state, p.row.id).await?;
    Ok(see_other(&format!("/projects/{id}/progress")))
}

#[derive(Template)]
#[template(path = "progress.html")]
struct ProgressPage {
    ctx: Ctx,
    id: i64,
    title: String,
    status: &'static str,
    complete: bool,
    percent: i64,
    p: api::Progress,
    charts: Vec<Chart>,
    can_pause: bool,
    can_resume: bool,
    can_close: bool,
    close_key: String,
    exports: Vec<ExportLink>,
    q: QualityView,
    notice: Option<&'static str>,
}

/// A download of the bounty's results. Each format is one entry, so a new
/// export format is one more push in [`exports`].
pub struct ExportLink {
    pub id: &'static str,
    pub label: &'static str,
    pub href: String,
    pub note: &'static str,
}

/// The downloads a bounty's buyer can take (free: their own results):
/// every format that can express the bounty's type.
pub fn exports(project: i64, task_type: &str) -> Vec<ExportLink> {
    use crate::datasets::export::ExportFormat;
    [
        (
            ExportFormat::Jsonl,
            "export-jsonl",
            "Results as JSONL",
            "one line per resolved item, with every answer and its signature",
        ),
        (
            ExportFormat::Csv,
            "export-csv",
            "Results as CSV",
            "one row per resolved item: its fields, the result, the agreement",
        ),
        (
            ExportFormat::LabelStudio,
            "export-label-studio",
            "Label Studio JSON",
            "open the results in Label Studio",
        ),
        (
            ExportFormat::Coco,
            "export-coco",
            "COCO",
            "the merged boxes, for detection training",
        ),
    ]
    .into_iter()
    .filter(|(f, ..)| f.check(task_type).is_ok())
    .map(|(f, id, label, note)| ExportLink {
        id,
        label,
        href: format!("/api/v1/projects/{project}/export?format={}", f.as_str()),
        note,
    })
    .collect()
}

pub struct AccuracyRow {
    pub name: String,
    pub answers: i64,
    pub accuracy: String,
    pub agreement: String,
    pub gold: String,
    pub standing: String,
}

pub struct ConfusionRow {
    pub class: String,
    pub cells: Vec<u64>,
}

pub struct QualityView {
    pub engine: bool,
    pub alpha: String,
    pub gold_items: i64,
    pub gold_answers: i64,
    pub discarded: i64,
    pub rows: Vec<AccuracyRow>,
    /// The accuracy chart (one; a list so the chart template can be
    /// included in a loop as on the rest of the page).
    pub chart: Vec<Chart>,
    pub classes: Vec<String>,
    pub confusion: Vec<ConfusionRow>,
}

fn percent(f: f64) -> String {
    super::contribute::percent(f)
}

async fn quality_view(
    state: &AppState,
    user: &crate::accounts::AuthUser,
    id: i64,
) -> Result<QualityView, PageError> {
    let conn = &state.db.conn;
    let r = crate::consensus::quality::report::report(conn, user, id).await?;
    let engine = r.settings.aggregation == "em";
    let mut accuracy: Vec<(i64, f64)> = Vec::new();
    let mut rows = Vec::new();
    let by_user = views::answers_by_user(conn, id).await?;
    let ids: Vec<i64> = by_user.iter().map(|u| u.0).collect();
    let names = views::names(conn, &ids).await?;
    let name = |u: i64| {
        names
            .get(&u)
            .cloned()
            .unwrap_or_else(|| format!("user {u}"))
    };
    if !r.contributors.is_empty() {
        for c in &r.contributors {
            accuracy.push((c.user_id, c.accuracy));
            rows.push(AccuracyRow {
                name: name(c.user_id),
                answers: i64::from(c.answers),
                accuracy: format!(
                    "{} (at least {})",
                    percent(c.accuracy),
                    percent(c.accuracy_lower)
                ),
                agreement: c.agreement.map(percent).unwrap_or_default(),
                gold: format!("{} of {}", c.gold_correct, c.gold_total),
                standing: if c.suspended {
                    format!(
                        "suspended: {}",
                        c.suspension_reason.as_deref().unwrap_or("quality")
                    )
                } else if c.exam == "failed" {
                    "exam failed".into()
                } else {
                    "active".into()
                },
            });
        }
    } else {
        // Plain vote: accuracy is agreement with the decided results.
        for (u, acc, rej, pending) in &by_user {
            let decided = acc + rej;
            let a = (decided > 0).then(|| *acc as f64 / decided as f64);
            if let Some(a) = a {
                accuracy.push((*u, a));
            }
            rows.push(AccuracyRow {
                name: name(*u),
                answers: acc + rej + pending,
                accuracy: a.map(percent).unwrap_or_default(),
                agreement: a.map(percent).unwrap_or_default(),
                gold: String::new(),
                standing: "active".into(),
            });
        }
    }
    let chart = charts::contributor_accuracy(
        &accuracy
            .iter()
            .map(|(u, a)| (name(*u), *a))
            .collect::<Vec<_>>(),
    );
    Ok(QualityView {
        engine,
        alpha: r.alpha.map_or_else(
            || "not enough overlapping answers yet".into(),
            |a| format!("{a:.3}"),
        ),
        gold_items: r.gold_items,
        gold_answers: r.gold_answers,
        discarded: r.discarded_answers,
        rows,
        chart: vec![chart],
        confusion: r
            .classes
            .iter()
            .zip(&r.confusion)
            .map(|(c, cells)| ConfusionRow {
                class: c.clone(),
                cells: cells.clone(),
            })
            .collect(),
        classes: r.classes,
    })
}

#[derive(Deserialize)]
pub struct ProgressQuery {
    done: Option<String>,
}

pub async fn progress(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    q: web::Query<ProgressQuery>,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let conn = &state.db.conn;
    let p = projects::get_owned(conn, &s.user(), id).await?;
    let pr = projects::progress(conn, &p).await?;
    let start = p.row.funded_at.unwrap_or(p.row.created_at);
    let last = views::last_answer_at(conn, id).await?.unwrap_or(start);
    let end = if p.status().is_running() {
        crate::db::now_ms()
    } else {
        last
    };
    // Seconds for a young bounty, minutes after that.
    let bucket = if end - start < 2 * 3_600_000 {
        1_000
    } else {
        60_000
    };
    let done = views::items_done_by(conn, id, bucket).await?;
    let end = end.max(done.iter().map(|d| d.0 + bucket).max().unwrap_or(start));
    let finished = pr.items_resolved + pr.items_without_consensus;
    let charts = vec![
        charts::items_done(start, end, &done, pr.items_total),
        charts::answers_per_hour(&views::answers_by_hour(conn, id).await?),
    ];
    render(
        &s.v,
        &ProgressPage {
            ctx: s.v.ctx(),
            id,
            title: p.row.title.clone(),
            status: projects::status_str(p.status()),
            complete: p.status() == ProjectStatus::Completed,
            percent: (finished * 100).checked_div(pr.items_total).unwrap_or(0),
            p: pr,
            charts,
            can_pause: p.status() == ProjectStatus::Open,
            can_resume: p.status() == ProjectStatus::Paused,
            can_close: p.status().is_running(),
            close_key: random_hex(16),
            exports: exports(id, p.row.task_type.as_str()),
            q: quality_view(&state, &s.user(), id).await?,
            notice: match q.done.as_deref() {
                Some("paused") => Some(
                    "The bounty is paused: no new tasks are handed out. Tasks already taken may still be answered.",
                ),
                Some("resumed") => Some("The bounty is open again."),
                Some("closed") => Some(
                    "The bounty is closed: unfinished items are cancelled and the unspent escrow is back in your balance.",
                ),
                _ => None,
            },
        },
    )
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn pause(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    projects::pause(&state.db, &s.user(), id).await?;
    Ok(see_other(&format!("/projects/{id}/progress?done=paused")))
}

pub async fn resume(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    let p = projects::resume(&state.db, &s.user(), id).await?;
    queue::load_project(&state, p.row.id).await?;
    Ok(see_other(&format!("/projects/{id}/progress?done=resumed")))
}

#[derive(Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idempotency_key: String,
    confirm: Option<String>,
}

/// Closes the bounty for good and refunds the unspent escrow.
pub async fn close(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<CloseForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    if form.confirm.is_none() {
        return Err(Error::invalid(
            "close-not-confirmed",
            "tick the box to confirm: closing cancels every unfinished item and cannot be undone",
        )
        .into());
    }
    projects::close(&state.db, &s.user(), id, &form.idempotency_key).await?;
    // Committed: now the queue forgets the project.
    crate::queue::forget(&*state.queue, id).await;
    Ok(see_other(&format!("/projects/{id}/progress?done=closed")))
}

#[derive(Deserialize)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    price_per_record: String,
    #[serde(default)]
    price_per_export: String,
}

fn optional_price(raw: &str, what: &str) -> Result<Option<Micros>, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        Error::invalid(
            "invalid-price",
            format!("the price per {what} must be an amount such as 0.01, or empty"),
        )
    })
}

/// Publishes the finished bounty as its next dataset version.
pub async fn publish(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    form: web::Form<PublishForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    let id = path_id(&req, "id")?;
    let d = crate::datasets::publish(
        &state.db,
        &s.user(),
        id,
        api::PublishDataset {
            title: Some(form.title.clone()),
            price_per_record: optional_price(&form.price_per_record, "record")?,
            price_per_export: optional_price(&form.price_per_export, "export")?,
        },
    )
    .await?;
    Ok(see_other(&format!(
        "/projects/{id}?published={}",
        d.version
    )))
}

#[derive(Template)]
#[template(path = "items.html")]
struct ItemsPage {
    ctx: Ctx,
    id: i64,
    title: String,
    items: Vec<views::ResolvedItem>,
    total: u64,
    page: u64,
    pages: u64,
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
}

pub async fn items(
    state: web::Data<AppState>,
    s: SignedIn,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, PageError> {
    let id = path_id(&req, "id")?;
    let conn = &state.db.conn;
    let p = projects::get_owned(conn, &s.user(), id).await?;
    let page = q.page.unwrap_or(1).max(1);
    let (items, total) = views::resolved_items(conn, id, page - 1).await?;
    render(
        &s.v,
        &ItemsPage {
            ctx: s.v.ctx(),
            id,
            title: p.row.title.clone(),
            items,
            total,
            page,
            pages: total.div_ceil(views::ITEMS_PER_PAGE).max(1),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(overlap: &str, reward: &str, budget: &str, items: &str) -> ProjectForm {
        ProjectForm {
            csrf: String::new(),
            title: "T".into(),
            task_type: "classification".into(),
            classes: "a\r\n b \n\n c\n".into(),
            schema_options: String::new(),
            instructions: String::new(),
            overlap: overlap.into(),
            reward: reward.into(),
            budget: budget.into(),
            items: items.into(),
            reviews_per_answer: String::new(),
            review_reward: String::new(),
        }
    }

    #[test]
    fn the_form_is_revalidated_on_the_server() {
        let ok = validate(&form("3", "0.02", "6", "100")).unwrap();
        assert_eq!(ok.reward, Micros(20_000));
        assert_eq!(ok.schema.to_json(), json!({"classes": ["a", "b", "c"]}));
        let Err(short) = validate(&form("3", "0.02", "5.99", "100")) else {
            panic!("a short budget passed");
        };
        assert!(short.to_string().contains("= 6.000000"), "{short}");
        assert!(
            validate(&form("3", "0.02", "0", "")).is_ok(),
            "no estimate, no check"
        );
        for (o, r, b, i) in [
            ("x", "0.02", "6", "1"),
            ("3", "0.0000001", "6", "1"),
            ("3", "-1", "6", "1"),
            ("3", "0.02", "lots", "1"),
            ("3", "0.02", "6", "-4"),
            ("0", "0.02", "6", "1"),
        ] {
            assert!(validate(&form(o, r, b, i)).is_err(), "{o} {r} {b} {i}");
        }
    }

    /// One row per type: the lines, the options, and the schema (or the
    /// start of the refusal).
    #[test]
    fn the_form_builds_each_types_schema() {
        let cases: &[(&str, &str, &str, Result<serde_json::Value, &str>)] = &[
            (
                "multi_label",
                "cat\ndog",
                "",
                Ok(json!({"classes": ["cat", "dog"]})),
            ),
            (
                "text_spans",
                "PER\nLOC",
                "",
                Ok(json!({"labels": ["PER", "LOC"]})),
            ),
            (
                "bounding_boxes",
                "car",
                "{\"iou_threshold\": 0.6}",
                Ok(json!({"labels": ["car"], "iou_threshold": 0.6})),
            ),
            (
                "pairwise",
                "",
                "{\"allow_tie\": false}",
                Ok(json!({"allow_tie": false})),
            ),
            (
                "free_text",
                "",
                "{\"min_chars\": 20}",
                Ok(json!({"min_chars": 20})),
            ),
            (
                "file_collection",
                "",
                "{\"accept\": [\"image/png\"]}",
                Ok(json!({"accept": ["image/png"], "max_bytes": 20_000_000})),
            ),
            ("free_text", "", "[1]", Err("must be a JSON object")),
            ("free_text", "", "{oops", Err("not JSON")),
        ];
        for (t, lines, options, want) in cases {
            let got = form_schema(TaskType::parse(t).unwrap(), lines, options);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{t}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{t}: {e}"),
                (g, w) => panic!("{t}: got {g:?}, want {w:?}"),
            }
        }
        // And the type's parser still has the last word.
        let mut f = form("3", "0.02", "6", "100");
        f.task_type = "free_text".into();
        f.schema_options = "{\"min_chars\": 50, \"max_chars\": 10}".into();
        assert!(validate(&f).is_err());
        f.schema_options = "{\"min_chars\": 5}".into();
        assert_eq!(validate(&f).unwrap().schema.task_type(), TaskType::FreeText);
    }

    #[test]
    fn the_import_format_follows_the_file_name_then_the_content() {
        assert_eq!(guess_format("a.CSV", b"{"), import::Format::Csv);
        assert_eq!(guess_format("a.jsonl", b"text"), import::Format::Jsonl);
        assert_eq!(guess_format("", b"  {\"text\":1}"), import::Format::Jsonl);
        assert_eq!(guess_format("", b"text\nhello"), import::Format::Csv);
    }
}
