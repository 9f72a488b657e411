use clap::{Parser, Subcommand};
use sahel_server::config::Config;
use sahel_server::startup::Application;

/// Sahel: an open data-annotation marketplace server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Create an admin account, or grant admin to an existing one.
    /// The password is read from SAHEL_ADMIN_PASSWORD.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Admin")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sahel_server::telemetry::init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            tracing::info!(config = ?cli.config, "starting");
            let app = Application::build(cli.config).await?;
            tracing::info!(port = app.port(), "listening");
            app.run_until_stopped().await?;
        }
        Command::CreateAdmin { email, name } => {
            let password = std::env::var("SAHEL_ADMIN_PASSWORD").map_err(|_| {
                anyhow::anyhow!("set SAHEL_ADMIN_PASSWORD to the new admin's password")
            })?;
            std::fs::create_dir_all(&cli.config.data_dir)?;
            let db = sahel_server::db::Db::connect(&cli.config.database_url(), 2).await?;
            db.migrate().await?;
            let u = sahel_server::accounts::ensure_admin(&db, &email, &password, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("admin {} (id {}) is ready", u.email, u.id);
        }
    }
    Ok(())
}
