//! The CLI's local state: a key file (0600) and a profile, in one
//! directory: `$SAHEL_HOME`, else `$XDG_CONFIG_HOME/sahel`, else
//! `~/.config/sahel`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

pub fn default_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("SAHEL_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(x).join("sahel");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("sahel")
}

/// Who this CLI acts as, on which server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub email: String,
    pub user_id: i64,
    pub public_key: String,
}

pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(dir: PathBuf) -> Home {
        Home { dir }
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key")
    }

    fn profile_path(&self) -> PathBuf {
        self.dir.join("profile.json")
    }

    /// Writes a new key. The file is created with mode 0600 before any
    /// secret byte is written to it.
    pub fn create_key(&self, force: bool) -> anyhow::Result<SigningKey> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.key_path();
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it (the old key stops working once revoked)",
                path.display()
            );
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let key = SigningKey::from_bytes(&secret);
        write_private(&path, format!("{}\n", hex::encode(secret)).as_bytes())?;
        Ok(key)
    }

    pub fn load_key(&self) -> anyhow::Result<SigningKey> {
        let path = self.key_path();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `sahel keygen` first)", path.display()))?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not a sahel key file", path.display()))?;
        Ok(SigningKey::from_bytes(&bytes))
    }

    pub fn save_profile(&self, p: &Profile) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)?;
        fs::write(self.profile_path(), serde_json::to_vec_pretty(p)?)?;
        Ok(())
    }

    pub fn load_profile(&self) -> anyhow::Result<Option<Profile>> {
        match fs::read(self.profile_path()) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).context("reading profile.json")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes)?;
    Ok(())
}
