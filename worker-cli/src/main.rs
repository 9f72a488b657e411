//! `sahel`: the power labeler's client. One clap command enum, one match;
//! everything goes over HTTP through `sahel_worker::client`.
//!
//! Exit codes: 0 success, 1 the command failed (one line on stderr says
//! what and why), 2 bad usage.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sahel_protocol::api::{self, Role};
use sahel_protocol::signing::public_key_hex;
use sahel_worker::client::{Auth, Client};
use sahel_worker::home::{Home, Profile, default_dir};
use serde_json::json;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Parser)]
#[command(
    name = "sahel",
    version,
    about = "Label data for Sahel bounties from the terminal"
)]
struct Cli {
    /// Server URL (default: the profile's, else http://127.0.0.1:8080).
    #[arg(long, env = "SAHEL_SERVER", global = true)]
    server: Option<String>,
    /// Directory holding the key and profile.
    #[arg(long, env = "SAHEL_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Contributor,
    Buyer,
    Reviewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Contributor => Role::Contributor,
            RoleArg::Buyer => Role::Buyer,
            RoleArg::Reviewer => Role::Reviewer,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the ed25519 key this CLI signs requests with (file mode 0600).
    Keygen {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
    /// Create an account and link this CLI's key to it. The password comes
    /// from SAHEL_PASSWORD or a prompt.
    Register {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Roles to ask for (repeatable).
        #[arg(long, value_enum, default_value = "contributor")]
        role: Vec<RoleArg>,
    },
    /// Log in to an existing account and link this CLI's key to it.
    Login {
        #[arg(long)]
        email: String,
    },
    /// List the bounties you can work on.
    Projects {
        #[arg(long)]
        json: bool,
    },
    /// Label a project's tasks interactively: type the number of a class,
    /// `s` to skip, `q` to quit.
    Work {
        #[arg(long)]
        project: i64,
    },
    /// Show your balance.
    Balance {
        #[arg(long)]
        json: bool,
    },
    /// Aggregate crowd labels from elsewhere, offline, with the server's
    /// engine (Dawid-Skene EM): CSV `item,worker,label` (and optionally
    /// gold `item,label`) in, CSV `item,label,confidence` out.
    Aggregate {
        /// The answers CSV (`-` for stdin).
        #[arg(long)]
        answers: PathBuf,
        /// Known answers to seed the estimate with.
        #[arg(long)]
        gold: Option<PathBuf>,
        /// Where to write the labels (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No summary on stderr.
        #[arg(long)]
        quiet: bool,
    },
}

struct Ctx {
    home: Home,
    server: String,
}

impl Ctx {
    fn signed_client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server, Auth::Key(self.home.load_key()?)))
    }
}

fn password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SAHEL_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password("password: ").context("reading the password (or set SAHEL_PASSWORD)")
}

/// Links the key to the account behind `token` unless it already is, and
/// saves the profile.
fn link_and_save(ctx: &Ctx, login: api::LoginResponse) -> anyhow::Result<()> {
    let key = ctx.home.load_key()?;
    let bearer = Client::new(&ctx.server, Auth::Bearer(login.token));
    let pk = public_key_hex(&key.verifying_key());
    let me = bearer.me()?;
    if !me
        .keys
        .iter()
        .any(|k| k.public_key == pk && k.revoked_at.is_none())
    {
        bearer.link_key(login.user.id, &key, Some("sahel CLI".into()))?;
    }
    ctx.home.save_profile(&Profile {
        server: ctx.server.clone(),
        email: login.user.email.clone(),
        user_id: login.user.id,
        public_key: pk,
    })?;
    println!(
        "signed in as {} (user {}); this CLI's key is linked",
        login.user.email, login.user.id
    );
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::new(cli.home.unwrap_or_else(default_dir));
    let profile = home.load_profile()?;
    let server = cli
        .server
        .or_else(|| profile.as_ref().map(|p| p.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let ctx = Ctx { home, server };
    match cli.command {
        Command::Keygen { force } => {
            let key = ctx.home.create_key(force)?;
            println!(
                "wrote {} (public key {})",
                ctx.home.key_path().display(),
                public_key_hex(&key.verifying_key())
            );
        }
        Command::Register { email, name, role } => {
            ctx.home
                .load_key()
                .context("create a key first with `sahel keygen`")?;
            let anon = Client::new(&ctx.server, Auth::None);
            let req = api::RegisterRequest {
                email,
                password: password()?,
                display_name: name,
                roles: role.into_iter().map(Role::from).collect(),
            };
            let login = anon.register(&req)?;
            link_and_save(&ctx, login)?;
        }
        Command::Login { email } => {
            let anon = Client::new(&ctx.server, Auth::None);
            let login = anon.login(&api::LoginRequest {
                email,
                password: password()?,
                token_label: Some("sahel CLI".into()),
            })?;
            link_and_save(&ctx, login)?;
        }
        Command::Projects { json } => {
            let projects = ctx.signed_client()?.projects()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&projects)?);
            } else if projects.is_empty() {
                println!("no open bounties right now");
            } else {
                println!(
                    "{:>5}  {:<10}  {:>12}  {:>6}  title",
                    "id", "status", "reward", "items"
                );
                for p in projects {
                    let status = format!("{:?}", p.status).to_lowercase();
                    println!(
                        "{:>5}  {:<10}  {:>12}  {:>6}  {}",
                        p.id,
                        status,
                        p.reward.to_string(),
                        p.item_count,
                        p.title
                    );
                }
            }
        }
        Command::Work { project } => work(&ctx, project)?,
        Command::Aggregate {
            answers,
            gold,
            out,
            quiet,
        } => sahel_worker::aggregate::run(&answers, gold.as_deref(), out.as_deref(), quiet)?,
        Command::Balance { json } => {
            let b = ctx.signed_client()?.balance()?;
            if json {
                println!(
                    "{}",
                    json!({ "user_id": b.user_id, "balance": b.balance, "balance_tokens": b.balance.to_string() })
                );
            } else {
                println!("balance: {} ({} micro-units)", b.balance, b.balance.0);
            }
        }
    }
    Ok(())
}

fn item_text(data: &serde_json::Value) -> String {
    match data.get("text").and_then(|t| t.as_str()) {
        Some(t) => t.to_owned(),
        None => serde_json::to_string_pretty(data).unwrap_or_default(),
    }
}

/// The interactive loop: one task at a time, read a choice, submit.
fn work(ctx: &Ctx, project_id: i64) -> anyhow::Result<()> {
    let client = ctx.signed_client()?;
    let project = client.project(project_id)?;
    let classes: Vec<String> = project.schema["classes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if classes.is_empty() {
        bail!(
            "project {project_id} is a {:?} task; this terminal loop labels classification tasks",
            project.task_type
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "== {} ==\n{}\nreward per accepted answer: {}\n",
        project.title, project.instructions, project.reward
    )?;
    let mut done = 0u32;
    loop {
        let Some(task) = client.lease(project_id, 1)?.into_iter().next() else {
            writeln!(
                out,
                "no more tasks for you in this project ({done} answered). Thank you!"
            )?;
            return Ok(());
        };
        writeln!(
            out,
            "--- item {} (lease expires {})",
            task.item_id, task.expires_at
        )?;
        writeln!(out, "{}\n", item_text(&task.data))?;
        for (i, c) in classes.iter().enumerate() {
            writeln!(out, "  {}) {c}", i + 1)?;
        }
        loop {
            write!(out, "choice [1-{}, s=skip, q=quit]: ", classes.len())?;
            out.flush()?;
            let line = match lines.next() {
                Some(l) => l?,
                None => "q".to_owned(),
            };
            let choice = line.trim();
            if choice.eq_ignore_ascii_case("q") {
                client.release(task.lease_id)?;
                writeln!(out, "\nbye ({done} answered)")?;
                return Ok(());
            }
            if choice.eq_ignore_ascii_case("s") {
                client.release(task.lease_id)?;
                writeln!(out, "skipped")?;
                break;
            }
            let Some(label) = choice
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| classes.get(i))
            else {
                writeln!(out, "type a number from 1 to {}", classes.len())?;
                continue;
            };
            // Keyed by the lease: resubmitting after a lost response can
            // never record a second answer.
            let sub = client.submit(&api::SubmitAnswer {
                lease_id: task.lease_id,
                answer: json!({ "label": label }),
                idempotency_key: format!("lease-{}", task.lease_id),
            })?;
            done += 1;
            writeln!(
                out,
                "submitted {label:?} (answer {}, {:?})\n",
                sub.id, sub.status
            )?;
            break;
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
