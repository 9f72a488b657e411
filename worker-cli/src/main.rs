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
use sahel_protocol::provenance;
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
    /// Your signed ledger receipts.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Show or set the EVM address your withdrawals are paid to.
    PayoutAddress {
        /// `0x` + 40 hex digits (EIP-55 checked when mixed case).
        address: Option<String>,
    },
    /// Lock an amount of your balance for payout at the next settlement epoch.
    Withdraw {
        /// Token amount, e.g. 1.5.
        amount: sahel_protocol::Micros,
        /// Retrying with the same key never locks twice (default: random).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Contributors' signatures on exported answers.
    Provenance {
        #[command(subcommand)]
        command: ProvenanceCommand,
    },
    /// EVM settlement epochs: Merkle proofs and offline verification.
    Settlement {
        #[command(subcommand)]
        command: SettlementCommand,
    },
}

#[derive(Subcommand)]
enum ProvenanceCommand {
    /// Check every line of an export (JSON lines, from a project's or a
    /// dataset's export): the data matches its content hash and each
    /// accepted answer's signature verifies under its public key. Offline.
    Verify {
        export: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SettlementCommand {
    /// Your cumulative claim and Merkle proof in an epoch (default: latest).
    Proof {
        #[arg(long)]
        epoch: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Download an epoch's published file (default: latest).
    Fetch {
        #[arg(long)]
        epoch: Option<i64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute an epoch file's root from its leaves and check every proof
    /// and the total, offline. Exits 1 if anything fails.
    Verify { file: PathBuf },
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Download all your receipts (and the signed links around them) to a
    /// file, for offline verification.
    Fetch {
        #[arg(long)]
        out: PathBuf,
    },
    /// Check every receipt's hash and server signature, the chain links
    /// around them, and that each balance equals the sum of its receipts.
    /// Exits 1 if anything fails.
    Verify {
        /// Verify this saved bundle offline instead of fetching.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The server key to trust (hex); default: the server's published
        /// key (or, offline, the one in the file).
        #[arg(long)]
        server_key: Option<String>,
        #[arg(long)]
        json: bool,
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
        Command::Receipts { command } => receipts(&ctx, command)?,
        Command::PayoutAddress { address } => {
            let c = ctx.signed_client()?;
            let a = match address {
                Some(a) => c.set_payout_address(&a)?,
                None => c.payout_address()?,
            };
            println!("payout address: {}", a.address);
        }
        Command::Withdraw {
            amount,
            idempotency_key,
        } => {
            let key = idempotency_key.unwrap_or_else(|| {
                let mut b = [0u8; 12];
                getrandom::fill(&mut b).expect("the OS random source failed");
                hex::encode(b)
            });
            let w = ctx.signed_client()?.withdraw(amount, &key)?;
            println!(
                "withdrawal {} of {} locked until the next settlement epoch",
                w.id, w.amount
            );
        }
        Command::Settlement { command } => settlement(&ctx, command)?,
        Command::Provenance {
            command: ProvenanceCommand::Verify { export, json },
        } => verify_export(&export, json)?,
    }
    Ok(())
}

fn verify_export(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use sahel_protocol::provenance::{ExportRecord, verify_record};
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut records, mut signatures) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        records += 1;
        match serde_json::from_str::<ExportRecord>(line) {
            Ok(r) => match verify_record(&r) {
                Ok(n) => signatures += n,
                Err(e) => failures.push(format!("line {}: {e}", i + 1)),
            },
            Err(e) => failures.push(format!("line {}: not an export record: {e}", i + 1)),
        }
    }
    if json {
        println!(
            "{}",
            json!({ "ok": failures.is_empty(), "records": records, "signatures": signatures, "errors": failures })
        );
    } else {
        for f in &failures {
            println!("FAIL {f}");
        }
        println!("{records} records, {signatures} answer signatures verified");
    }
    if !failures.is_empty() {
        bail!("{} record(s) failed provenance checks", failures.len());
    }
    Ok(())
}

fn settlement(ctx: &Ctx, command: SettlementCommand) -> anyhow::Result<()> {
    use sahel_protocol::settlement::EpochFile;
    match command {
        SettlementCommand::Proof { epoch, json } => {
            let p = ctx.signed_client()?.settlement_proof(epoch)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!("epoch {}  root {}", p.epoch, p.root);
                println!(
                    "address {}  cumulative {} ({} units at {} decimals)",
                    p.address, p.amount_micros, p.amount, p.decimals
                );
                for h in &p.proof {
                    println!("  {h}");
                }
            }
        }
        SettlementCommand::Fetch { epoch, out } => {
            let f = ctx.signed_client()?.epoch_file(epoch)?;
            std::fs::write(&out, serde_json::to_vec_pretty(&f)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "saved epoch {} ({} claims, root {}) to {}",
                f.epoch,
                f.claims.len(),
                f.merkle_root,
                out.display()
            );
        }
        SettlementCommand::Verify { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let f: EpochFile = serde_json::from_slice(&bytes).context("not an epoch file")?;
            let n = f
                .verify()
                .map_err(|e| anyhow::anyhow!("epoch {}: {e}", f.epoch))?;
            println!(
                "epoch {}: root {} recomputed from {n} leaves; every proof and the total ({}) check out",
                f.epoch, f.merkle_root, f.token_total
            );
        }
    }
    Ok(())
}

fn receipts(ctx: &Ctx, command: ReceiptsCommand) -> anyhow::Result<()> {
    use sahel_protocol::receipt::{ReceiptBundle, verify_bundle};
    match command {
        ReceiptsCommand::Fetch { out } => {
            let bundle = ctx.signed_client()?.all_receipts()?;
            std::fs::write(&out, serde_json::to_vec(&bundle)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "saved {} receipts to {}",
                bundle.receipts.len(),
                out.display()
            );
        }
        ReceiptsCommand::Verify {
            file,
            server_key,
            json,
        } => {
            let (bundle, published): (ReceiptBundle, Option<String>) = match &file {
                Some(f) => {
                    let bytes =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    (
                        serde_json::from_slice(&bytes).context("not a receipts file")?,
                        None,
                    )
                }
                None => {
                    let c = ctx.signed_client()?;
                    let key = c.server_key()?.public_key;
                    (c.all_receipts()?, Some(key))
                }
            };
            let trusted = server_key
                .or(published)
                .unwrap_or_else(|| bundle.server_key.clone());
            if !trusted.eq_ignore_ascii_case(&bundle.server_key) {
                bail!(
                    "the receipts claim server key {} but the trusted key is {trusted}",
                    bundle.server_key
                );
            }
            let key = sahel_protocol::signing::parse_public_key(&trusted)
                .map_err(|e| anyhow::anyhow!("server key: {e}"))?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let report = verify_bundle(&bundle, &key, threads);
            let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
            if json {
                println!(
                    "{}",
                    json!({
                        "ok": errors.is_empty(),
                        "receipts": report.receipts,
                        "links_checked": report.links_checked,
                        "server_key": trusted,
                        "balances": bundle.balances,
                        "errors": errors,
                    })
                );
            } else {
                for e in &errors {
                    println!("FAIL {e}");
                }
                for b in &bundle.balances {
                    println!("balance {}:{} = {}", b.account, b.owner, b.amount);
                }
                println!(
                    "{} receipts, {} chain links checked against server key {trusted}",
                    report.receipts, report.links_checked
                );
            }
            if !errors.is_empty() {
                bail!("{} problem(s) found in your receipts", errors.len());
            }
            if !json {
                println!("all receipts verify");
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
    let key = ctx.home.load_key()?;
    let project = client.project(project_id)?;
    let guidelines = provenance::guideline_version(&project.instructions, &project.schema);
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
            // never record a second answer. Signed: this CLI's key vouches
            // for the answer to this exact item under these guidelines.
            let answer = json!({ "label": label });
            let signature = provenance::sign_answer(
                &key,
                &provenance::item_content_hash(&task.data),
                &guidelines,
                &answer,
            );
            let sub = client.submit(&api::SubmitAnswer {
                lease_id: task.lease_id,
                answer,
                idempotency_key: format!("lease-{}", task.lease_id),
                signature: Some(signature),
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
