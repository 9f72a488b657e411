//! `sahel`: the power labeler's client. One clap command enum, one match;
//! everything goes over HTTP through `sahel_worker::client`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sahel_protocol::api::{self, Role};
use sahel_protocol::signing::public_key_hex;
use sahel_worker::batch;
use sahel_worker::client::{Auth, Client};
use sahel_worker::home::{Home, Profile};
use serde_json::json;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Exit codes: 0 success; 1 the command failed (one line on stderr says
/// what, why and what to do); 2 bad usage; 3 `push` finished but some lines
/// were refused, expired or invalid (the report says which).
#[derive(Parser)]
#[command(name = "sahel", version, about = "Label data for Sahel bounties from the terminal", after_help = EXIT_CODES)]
struct Cli {
    /// Server URL (default: the profile's, else http://127.0.0.1:8080).
    #[arg(long, env = "SAHEL_SERVER", global = true)]
    server: Option<String>,
    /// Profile: a server, an account and a key.
    #[arg(long, env = "SAHEL_PROFILE", global = true, default_value = "default")]
    profile: String,
    /// One directory for profiles and journals (default: XDG config and data dirs).
    #[arg(long, env = "SAHEL_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure (one line on stderr), 2 bad usage, \
3 push finished with refused, expired or invalid lines.";

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
    /// Create this profile's ed25519 key (file mode 0600).
    Keygen {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
        /// Encrypt the key file with a passphrase (SAHEL_KEY_PASSPHRASE or a prompt).
        #[arg(long)]
        passphrase: bool,
    },
    /// Create an account and link this profile's key to it. The password
    /// comes from SAHEL_PASSWORD or a prompt.
    Register {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Roles to ask for (repeatable).
        #[arg(long, value_enum, default_value = "contributor")]
        role: Vec<RoleArg>,
    },
    /// Log in to an existing account and link this profile's key to it.
    Login {
        #[arg(long)]
        email: String,
    },
    /// List the bounties you can work on.
    Projects {
        #[arg(long)]
        json: bool,
    },
    /// Label tasks interactively: the number of a class, `s` skip,
    /// `i` instructions, `q` quit.
    Work {
        #[arg(long)]
        project: i64,
    },
    /// Lease a batch of tasks into a JSON-lines file to answer offline.
    Pull {
        #[arg(long)]
        project: i64,
        /// How many tasks to lease.
        #[arg(long, default_value_t = 100)]
        n: u32,
        /// The file to write (refused if it exists, unless --force).
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        force: bool,
        /// Also fetch every image, audio or file the tasks reference into
        /// this directory (named by SHA-256, verified, skipped when already
        /// there); each task line gets their paths under "local_files".
        #[arg(long, value_name = "DIR")]
        download_artifacts: Option<PathBuf>,
    },
    /// Upload a file (e.g. a recording for a file-collection answer) and
    /// print its SHA-256, the reference an answer carries.
    Upload {
        file: PathBuf,
        /// Check the file against this bounty's limits and accepted types.
        #[arg(long)]
        project: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Submit the answers in a pulled file; rerunning it submits only what
    /// the server has not acknowledged.
    Push {
        file: PathBuf,
        /// Answers per request (1 to 100).
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Your open leases and when they expire.
    Leases {
        #[arg(long)]
        json: bool,
    },
    /// Extend leases to a full lease period from now.
    Renew {
        /// Lease ids (default: all your open leases).
        leases: Vec<i64>,
    },
    /// Give leases back so others can take the items.
    Release {
        /// Lease ids (default: all your open leases).
        leases: Vec<i64>,
    },
    /// Your balance.
    Balance {
        #[arg(long)]
        json: bool,
    },
    /// Your balance and ledger history.
    Earnings {
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
        /// Multi-label answers: the label column holds classes separated
        /// by `|` (empty: none); each class is aggregated on its own, and
        /// the output is `item,labels,confidence`.
        #[arg(long)]
        multi_label: bool,
        /// No summary on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Manage the keys linked to your account.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// List the profiles on this machine.
    Profiles {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `sahel completions bash > ~/.local/share/bash-completion/completions/sahel`).
    Completions { shell: clap_complete::Shell },
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

#[derive(Subcommand)]
enum KeysAction {
    /// The keys linked to your account.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a new key, link it, revoke the old one, and switch to it.
    Rotate {
        /// Encrypt the new key file with a passphrase.
        #[arg(long)]
        passphrase: bool,
    },
    /// Revoke a key by id (see `keys list`).
    Revoke { id: i64 },
}

struct Ctx {
    home: Home,
    server: String,
}

fn passphrase(confirm: bool) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SAHEL_KEY_PASSPHRASE") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("key passphrase: ")
        .context("reading the passphrase (or set SAHEL_KEY_PASSPHRASE)")?;
    if confirm && rpassword::prompt_password("again: ")? != p {
        bail!("the passphrases differ");
    }
    Ok(p)
}

fn password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SAHEL_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password("password: ").context("reading the password (or set SAHEL_PASSWORD)")
}

impl Ctx {
    fn signed_client(&self) -> anyhow::Result<Client> {
        let key = self.home.load_key(|| passphrase(false))?;
        Ok(Client::new(&self.server, Auth::Key(key)).with_retries(5))
    }

    /// Links the key to the account behind a log-in unless it already is,
    /// and saves the profile.
    fn link_and_save(&self, login: api::LoginResponse) -> anyhow::Result<()> {
        let key = self.home.load_key(|| passphrase(false))?;
        let bearer = Client::new(&self.server, Auth::Bearer(login.token)).with_retries(3);
        let pk = public_key_hex(&key.verifying_key());
        let me = bearer.me()?;
        if !me
            .keys
            .iter()
            .any(|k| k.public_key == pk && k.revoked_at.is_none())
        {
            bearer.link_key(
                login.user.id,
                &key,
                Some(format!("sahel CLI ({})", self.home.profile)),
            )?;
        }
        self.home.save_profile(&Profile {
            server: self.server.clone(),
            email: login.user.email.clone(),
            user_id: login.user.id,
            public_key: pk,
        })?;
        println!(
            "signed in as {} (user {}); profile {:?} uses this key",
            login.user.email, login.user.id, self.home.profile
        );
        Ok(())
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn time_left(t: sahel_protocol::Timestamp) -> String {
    let secs = (t.millis() - sahel_protocol::Timestamp::now().millis()) / 1000;
    if secs <= 0 {
        "expired".into()
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The leases named, or every open one when none are.
fn lease_ids(client: &Client, given: Vec<i64>) -> anyhow::Result<Vec<i64>> {
    if !given.is_empty() {
        return Ok(given);
    }
    Ok(client
        .my_leases()?
        .into_iter()
        .map(|l| l.lease_id)
        .collect())
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let home = Home::new(cli.home, &cli.profile)?;
    let profile = home.load_profile()?;
    let server = cli
        .server
        .or_else(|| profile.as_ref().map(|p| p.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let ctx = Ctx { home, server };
    match cli.command {
        Command::Keygen {
            force,
            passphrase: sealed,
        } => {
            let key = Home::generate()?;
            let pass = if sealed {
                Some(passphrase(true)?)
            } else {
                None
            };
            ctx.home.save_key(&key, pass.as_deref(), force)?;
            println!(
                "wrote {}{} (public key {})",
                ctx.home.key_path().display(),
                if sealed { ", encrypted" } else { "" },
                public_key_hex(&key.verifying_key())
            );
        }
        Command::Register { email, name, role } => {
            ctx.home
                .load_key(|| passphrase(false))
                .context("create a key first with `sahel keygen`")?;
            let anon = Client::new(&ctx.server, Auth::None);
            let req = api::RegisterRequest {
                email,
                password: password()?,
                display_name: name,
                roles: role.into_iter().map(Role::from).collect(),
            };
            ctx.link_and_save(anon.register(&req)?)?;
        }
        Command::Login { email } => {
            let anon = Client::new(&ctx.server, Auth::None).with_retries(3);
            let req = api::LoginRequest {
                email,
                password: password()?,
                token_label: Some("sahel CLI".into()),
            };
            ctx.link_and_save(anon.login(&req)?)?;
        }
        Command::Projects { json } => {
            let projects = ctx.signed_client()?.projects()?;
            if json {
                print_json(&projects)?;
            } else if projects.is_empty() {
                println!("no open bounties right now");
            } else {
                println!(
                    "{:>5}  {:<10}  {:<15}  {:>10}  {:>7}  title",
                    "id", "status", "type", "reward", "items"
                );
                for p in projects {
                    let status = format!("{:?}", p.status).to_lowercase();
                    println!(
                        "{:>5}  {:<10}  {:<15}  {:>10}  {:>7}  {}",
                        p.id,
                        status,
                        p.task_type.as_str(),
                        p.reward.to_string(),
                        p.item_count,
                        p.title
                    );
                }
            }
        }
        Command::Work { project } => {
            let key = ctx.home.load_key(|| passphrase(false))?;
            let client = Client::new(&ctx.server, Auth::Key(key.clone())).with_retries(5);
            sahel_worker::work::run(&client, &key, project)?
        }
        Command::Pull {
            project,
            n,
            output,
            force,
            download_artifacts,
        } => {
            let client = ctx.signed_client()?;
            let bar = progress(n as u64, "tasks leased");
            let got = batch::pull_with_artifacts(
                &client,
                project,
                n,
                &output,
                force,
                download_artifacts.as_deref(),
                &bar,
            )?;
            bar.finish_and_clear();
            println!(
                "leased {} task(s) into {}; fill in each \"answer\", then `sahel push {}`",
                got.tasks,
                output.display(),
                output.display()
            );
            if let Some(dir) = &download_artifacts {
                println!(
                    "artifacts in {}: {} downloaded, {} already there",
                    dir.display(),
                    got.downloaded,
                    got.already_there
                );
            }
        }
        Command::Upload {
            file,
            project,
            json,
        } => {
            let client = ctx.signed_client()?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let a = client.upload_artifact(&bytes, project)?;
            if json {
                print_json(&a)?;
            } else {
                println!("{}", a.sha256);
                eprintln!("{} bytes, {}", a.size, a.media_type);
            }
        }
        Command::Push {
            file,
            batch_size,
            json,
        } => {
            let key = ctx.home.load_key(|| passphrase(false))?;
            let client = Client::new(&ctx.server, Auth::Key(key.clone())).with_retries(5);
            let journal = batch::journal_path(&ctx.home.journal_dir(), &ctx.server, &file)?;
            let bar = progress(0, "answers");
            let report = batch::push(&client, &key, &file, &journal, batch_size, &bar)?;
            bar.finish_and_clear();
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{} answer(s): {} recorded now, {} already recorded, {} expired, {} refused; {} invalid line(s)",
                    report.lines,
                    report.recorded,
                    report.already_recorded,
                    report.expired.len(),
                    report.refused.len(),
                    report.invalid.len()
                );
                for (kind, list) in [
                    ("expired", &report.expired),
                    ("refused", &report.refused),
                    ("invalid", &report.invalid),
                ] {
                    for p in list {
                        println!("  line {}: {kind}: {}", p.line, p.reason);
                    }
                }
            }
            return Ok(if report.all_recorded() { 0 } else { 3 });
        }
        Command::Leases { json } => {
            let leases = ctx.signed_client()?.my_leases()?;
            if json {
                print_json(&leases)?;
            } else if leases.is_empty() {
                println!("no open leases");
            } else {
                println!(
                    "{:>8}  {:>7}  {:>8}  expires in",
                    "lease", "project", "item"
                );
                for l in leases {
                    println!(
                        "{:>8}  {:>7}  {:>8}  {}",
                        l.lease_id,
                        l.project_id,
                        l.item_id,
                        time_left(l.expires_at)
                    );
                }
            }
        }
        Command::Renew { leases } => {
            let client = ctx.signed_client()?;
            for id in lease_ids(&client, leases)? {
                let l = client.renew(id)?;
                println!("lease {id} now expires in {}", time_left(l.expires_at));
            }
        }
        Command::Release { leases } => {
            let client = ctx.signed_client()?;
            let ids = lease_ids(&client, leases)?;
            for id in &ids {
                client.release(*id)?;
            }
            println!("released {} lease(s)", ids.len());
        }
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
        Command::Earnings { json } => {
            let h = ctx.signed_client()?.ledger()?;
            if json {
                print_json(&h)?;
            } else {
                println!("balance: {}", h.balance);
                for e in &h.entries {
                    println!(
                        "{}  {:>14}  {:<12}  {}",
                        e.created_at,
                        e.amount.to_string(),
                        e.kind,
                        e.memo
                    );
                }
            }
        }
        Command::Aggregate {
            answers,
            gold,
            out,
            multi_label,
            quiet,
        } => sahel_worker::aggregate::run(
            &answers,
            gold.as_deref(),
            out.as_deref(),
            multi_label,
            quiet,
        )?,
        Command::Keys { action } => keys(&ctx, action)?,
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

        Command::Profiles { json } => {
            let list = ctx.home.profiles()?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(n, p)| json!({ "name": n, "profile": p }))
                    .collect();
                print_json(&v)?;
            } else {
                for (name, p) in list {
                    let mark = if name == ctx.home.profile { "*" } else { " " };
                    match p {
                        Some(p) => println!("{mark} {name}: {} on {}", p.email, p.server),
                        None => println!("{mark} {name}: key only (not signed in)"),
                    }
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sahel", &mut std::io::stdout());
        }
    }
    Ok(0)
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

fn keys(ctx: &Ctx, action: KeysAction) -> anyhow::Result<()> {
    let client = ctx.signed_client()?;
    match action {
        KeysAction::List { json } => {
            let me = client.me()?;
            let mine = ctx.home.load_profile()?.map(|p| p.public_key);
            if json {
                return print_json(&me.keys);
            }
            for k in me.keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let here = if mine.as_deref() == Some(k.public_key.as_str()) {
                    " (this profile)"
                } else {
                    ""
                };
                println!(
                    "{:>5}  {state:<7}  {}  {}{here}",
                    k.id,
                    k.public_key,
                    k.label.unwrap_or_default()
                );
            }
        }
        KeysAction::Rotate { passphrase: sealed } => {
            let me = client.me()?;
            let old_pk = ctx
                .home
                .load_profile()?
                .map(|p| p.public_key)
                .context("sign in first (`sahel login`)")?;
            let old = me
                .keys
                .iter()
                .find(|k| k.public_key == old_pk && k.revoked_at.is_none())
                .context("this profile's key is not active")?;
            let new = Home::generate()?;
            // Link the new key while the old one still signs, then revoke
            // the old one with the new: at no point is the account keyless.
            client.link_key(
                me.user.id,
                &new,
                Some(format!("sahel CLI ({})", ctx.home.profile)),
            )?;
            let with_new = client.with_auth(Auth::Key(new.clone()));
            with_new.revoke_key(old.id)?;
            let pass = if sealed {
                Some(passphrase(true)?)
            } else {
                None
            };
            ctx.home.save_key(&new, pass.as_deref(), true)?;
            let mut p = ctx.home.load_profile()?.context("profile vanished")?;
            p.public_key = public_key_hex(&new.verifying_key());
            ctx.home.save_profile(&p)?;
            println!(
                "rotated: new key {} is active, key {} is revoked",
                p.public_key, old.id
            );
        }
        KeysAction::Revoke { id } => {
            client.revoke_key(id)?;
            println!("key {id} revoked");
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}
