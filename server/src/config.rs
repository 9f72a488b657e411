//! Server configuration: every setting is a flag with a matching environment
//! variable (the flag wins). Tests build a [`Config`] value directly.
//!
//! | flag | variable | default | meaning |
//! |---|---|---|---|
//! | `--bind` | `SAHEL_BIND` | `127.0.0.1:8080` | address to listen on (port 0 picks a free one) |
//! | `--data-dir` | `SAHEL_DATA_DIR` | `./data` | SQLite file and local artifacts live here |
//! | `--database-url` | `DATABASE_URL` | `sqlite://<data-dir>/sahel.db` | `postgres://...` for PostgreSQL |
//! | `--redis-url` | `REDIS_URL` | unset: in-process queue | `redis://host:6379` shares the queue between replicas |
//! | `--redis-prefix` | `SAHEL_REDIS_PREFIX` | `sahel` | key prefix, so several deployments can share a Redis |
//! | `--quality-interval-secs` | `SAHEL_QUALITY_INTERVAL_SECS` | `5` | how often the quality engine re-estimates bounties in the background (0: never; tests step it themselves) |
//! | `--demo` | `SAHEL_DEMO` | off | load the demo buyer and bounty (compiled in from `fixtures/demo`) |
//! | `--lease-secs` | `SAHEL_LEASE_SECS` | `600` | how long a task lease lasts |
//! | `--workers` | `SAHEL_WORKERS` | cores | HTTP worker threads |
//! | `--db-pool` | `SAHEL_DB_POOL` | `16` | database connections |
//! | `--max-body-bytes` | `SAHEL_MAX_BODY_BYTES` | `1048576` | JSON request body limit |
//! | `--max-import-bytes` | `SAHEL_MAX_IMPORT_BYTES` | `4294967296` | item upload limit (streamed; signed uploads are capped at 64 MiB) |
//! | `--secure-cookies` | `SAHEL_SECURE_COOKIES` | off | mark the web session cookie `Secure` even over plain HTTP (TLS terminated by a proxy that sends no `X-Forwarded-Proto`); requests over HTTPS or with `X-Forwarded-Proto: https` get it regardless |
//! | `--signing-key-file` | `SAHEL_SIGNING_KEY_FILE` | `<data-dir>/server-key` | the server's ed25519 key (hex secret), created with mode 0600 on first start; it signs every ledger receipt |
//! | `--fee-bps` | `SAHEL_FEE_BPS` | `0` | platform fee in basis points, cut from each payment to a contributor or reviewer and from each licence charge (0 to 5000) |
//! | `--royalty-buyer-share-bps` | `SAHEL_ROYALTY_BUYER_SHARE_BPS` | `2000` | share of each licence charge (after the fee) kept by the buyer who paid for the bounty (0 to 10000) |
//! | `--payout-decimals` | `SAHEL_PAYOUT_DECIMALS` | `18` | decimals of the EVM payout token; one micro-unit is 10^(decimals-6) of its smallest unit (6 to 24) |
//! | `--artifacts-url` | `ARTIFACTS_URL` | `<data-dir>/artifacts` | object store for artifacts: `s3://bucket/prefix` (credentials and endpoint from the usual `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), `gs://` and `az://` when built with the `gcp`/`azure` features, or `file:///dir` |
//! | `--max-artifact-bytes` | `SAHEL_MAX_ARTIFACT_BYTES` | `104857600` | largest file accepted (a bounty or a file-collection schema may set less) |
//! | `--import-allow` | `SAHEL_IMPORT_ALLOW` | `file://<data-dir>/imports/` | comma-separated URL prefixes that buyers may import items from (`POST /projects/{id}/items/from-prefix`): local directories as `file:///dir/`, stores as `s3://bucket/prefix` |
//! | - | `RUST_LOG` | `info` | log filter (tracing `EnvFilter` syntax) |

use std::fmt;
use std::path::PathBuf;

use clap::Args;

#[derive(Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SAHEL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Directory for the SQLite file and local artifacts.
    #[arg(long, env = "SAHEL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL; a SQLite file in the data directory when unset.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL for the shared task queue; the in-process queue when unset.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key this deployment uses.
    #[arg(long, env = "SAHEL_REDIS_PREFIX", default_value = "sahel")]
    pub redis_prefix: String,

    /// Seconds between background quality re-estimations (0: off).
    #[arg(long, env = "SAHEL_QUALITY_INTERVAL_SECS", default_value_t = 5)]
    pub quality_interval_secs: u64,

    /// Load the demo buyer and bounty.
    #[arg(long, env = "SAHEL_DEMO")]
    pub demo: bool,

    /// Lease duration in seconds.
    #[arg(long, env = "SAHEL_LEASE_SECS", default_value_t = 600)]
    pub lease_secs: u64,

    /// HTTP worker threads (default: number of cores).
    #[arg(long, env = "SAHEL_WORKERS")]
    pub workers: Option<usize>,

    /// Database connection pool size.
    #[arg(long, env = "SAHEL_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,

    /// Largest JSON request body accepted, in bytes.
    #[arg(long, env = "SAHEL_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Largest item import body accepted, in bytes.
    #[arg(long, env = "SAHEL_MAX_IMPORT_BYTES", default_value_t = 4 << 30)]
    pub max_import_bytes: usize,

    /// Always mark the web session cookie `Secure`.
    #[arg(long, env = "SAHEL_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// The server's ed25519 key file (default: `<data-dir>/server-key`).
    #[arg(long, env = "SAHEL_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Platform fee in basis points of each payment.
    #[arg(long, env = "SAHEL_FEE_BPS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=5000))]
    pub fee_bps: u32,

    /// Share of each licence charge kept by the dataset's original buyer,
    /// in basis points.
    #[arg(long, env = "SAHEL_ROYALTY_BUYER_SHARE_BPS", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub royalty_buyer_share_bps: u32,

    /// Decimals of the EVM payout token.
    #[arg(long, env = "SAHEL_PAYOUT_DECIMALS", default_value_t = 18,
          value_parser = clap::value_parser!(u32).range(6..=24))]
    pub payout_decimals: u32,

    /// Object store URL for artifacts (default: `<data-dir>/artifacts`).
    #[arg(long, env = "ARTIFACTS_URL")]
    pub artifacts_url: Option<String>,

    /// Largest artifact upload accepted, in bytes.
    #[arg(long, env = "SAHEL_MAX_ARTIFACT_BYTES", default_value_t = 100 << 20)]
    pub max_artifact_bytes: u64,

    /// URL prefixes items may be imported from (default:
    /// `file://<data-dir>/imports/`).
    #[arg(long, env = "SAHEL_IMPORT_ALLOW", value_delimiter = ',')]
    pub import_allow: Vec<String>,

    /// Seeds where gold items fall in contributors' streams, so that a
    /// simulation replays exactly. Deliberately not an option or variable:
    /// a known seed would let contributors predict gold, so only code that
    /// embeds the server (tests) can set it; the OS draws otherwise.
    #[arg(skip)]
    pub gold_seed: Option<u64>,
}

impl Config {
    /// A config for tests and embedding: everything at its default, files
    /// under `data_dir`.
    pub fn for_data_dir(data_dir: PathBuf) -> Config {
        Config {
            bind: "127.0.0.1:0".into(),
            data_dir,
            database_url: None,
            redis_url: None,
            redis_prefix: "sahel".into(),
            quality_interval_secs: 5,
            demo: false,
            lease_secs: 600,
            workers: Some(2),
            db_pool: 8,
            max_body_bytes: 1 << 20,
            max_import_bytes: 4 << 30,
            secure_cookies: false,
            signing_key_file: None,
            fee_bps: 0,
            royalty_buyer_share_bps: 2000,
            payout_decimals: 18,
            artifacts_url: None,
            max_artifact_bytes: 100 << 20,
            import_allow: Vec::new(),
            gold_seed: None,
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("server-key"))
    }

    /// Where local artifacts live when no `ARTIFACTS_URL` is set.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// The directory local imports come from by default. Never the data
    /// directory itself: it holds the database and the server's key.
    pub fn imports_dir(&self) -> PathBuf {
        self.data_dir.join("imports")
    }

    /// URL prefixes buyers may import items from.
    pub fn import_allow(&self) -> Vec<String> {
        if !self.import_allow.is_empty() {
            return self.import_allow.clone();
        }
        let dir = std::fs::canonicalize(self.imports_dir()).unwrap_or_else(|_| self.imports_dir());
        match url::Url::from_directory_path(&dir) {
            Ok(u) => vec![u.to_string()],
            Err(()) => Vec::new(),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("sahel.db").display()
            ),
        }
    }
}

/// Hides the password of the database URL: configs get logged.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url()))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("demo", &self.demo)
            .field("lease_secs", &self.lease_secs)
            .field("workers", &self.workers)
            .field("db_pool", &self.db_pool)
            .field("signing_key_file", &self.signing_key_path())
            .field("fee_bps", &self.fee_bps)
            .field("royalty_buyer_share_bps", &self.royalty_buyer_share_bps)
            .field("payout_decimals", &self.payout_decimals)
            .field(
                "artifacts_url",
                &self.artifacts_url.as_deref().map(redact_url),
            )
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("import_allow", &self.import_allow)
            .finish_non_exhaustive()
    }
}

pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host -> scheme://user:***@host
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let mut c = Config::for_data_dir("/tmp/x".into());
        c.database_url = Some("postgres://sahel:hunter2@db:5432/sahel".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://sahel:***@db:5432/sahel"),
            "{shown}"
        );
    }
}
