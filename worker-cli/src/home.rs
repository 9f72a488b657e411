//! The CLI's local state, per profile.
//!
//! A profile is a server URL, an account and a key. Profiles live in the
//! config directory (`$XDG_CONFIG_HOME/sahel`, else `~/.config/sahel`); push
//! journals live in the data directory (`$XDG_DATA_HOME/sahel`, else
//! `~/.local/share/sahel`). `SAHEL_HOME` (or `--home`) puts both in one
//! directory. The key file is created with mode 0600 before any secret byte
//! is written, and may be encrypted with a passphrase (argon2id +
//! ChaCha20-Poly1305).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home_dir() -> PathBuf {
    env_dir("HOME").unwrap_or_else(|| PathBuf::from("."))
}

/// Who this CLI acts as, on which server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub email: String,
    pub user_id: i64,
    pub public_key: String,
}

/// The key file: the secret in clear, or sealed with a passphrase.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<Sealed>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: String,
    salt: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

pub struct Home {
    config: PathBuf,
    data: PathBuf,
    pub profile: String,
}

impl Home {
    /// `home` overrides both directories; otherwise the XDG locations.
    pub fn new(home: Option<PathBuf>, profile: &str) -> anyhow::Result<Home> {
        if profile.is_empty()
            || !profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("profile names are letters, digits, - and _ (got {profile:?})");
        }
        let (config, data) = match home.or_else(|| env_dir("SAHEL_HOME")) {
            Some(h) => (h.clone(), h),
            None => (
                env_dir("XDG_CONFIG_HOME")
                    .unwrap_or_else(|| home_dir().join(".config"))
                    .join("sahel"),
                env_dir("XDG_DATA_HOME")
                    .unwrap_or_else(|| home_dir().join(".local/share"))
                    .join("sahel"),
            ),
        };
        Ok(Home {
            config,
            data,
            profile: profile.to_owned(),
        })
    }

    fn profile_dir(&self) -> PathBuf {
        self.config.join("profiles").join(&self.profile)
    }

    pub fn key_path(&self) -> PathBuf {
        self.profile_dir().join("key")
    }

    fn profile_path(&self) -> PathBuf {
        self.profile_dir().join("profile.json")
    }

    /// Where `push` keeps its journals for this profile.
    pub fn journal_dir(&self) -> PathBuf {
        self.data.join("journal").join(&self.profile)
    }

    pub fn profiles(&self) -> anyhow::Result<Vec<(String, Option<Profile>)>> {
        let dir = self.config.join("profiles");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let other = Home {
                config: self.config.clone(),
                data: self.data.clone(),
                profile: name.clone(),
            };
            out.push((name, other.load_profile()?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A fresh random key.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(SigningKey::from_bytes(&secret))
    }

    /// Writes `key` as this profile's key, sealed when a passphrase is
    /// given. Refuses to replace an existing key unless `force`.
    pub fn save_key(
        &self,
        key: &SigningKey,
        passphrase: Option<&str>,
        force: bool,
    ) -> anyhow::Result<()> {
        let path = self.key_path();
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
        fs::create_dir_all(self.profile_dir())
            .with_context(|| format!("creating {}", self.profile_dir().display()))?;
        let public_key = hex::encode(key.verifying_key().as_bytes());
        let file = match passphrase {
            None => KeyFile {
                version: 1,
                public_key,
                secret: Some(hex::encode(key.to_bytes())),
                sealed: None,
            },
            Some(p) => KeyFile {
                version: 1,
                public_key,
                secret: None,
                sealed: Some(seal(&key.to_bytes(), p)?),
            },
        };
        write_private(&path, &serde_json::to_vec_pretty(&file)?)
    }

    pub fn key_is_sealed(&self) -> anyhow::Result<bool> {
        Ok(self.read_key_file()?.sealed.is_some())
    }

    fn read_key_file(&self) -> anyhow::Result<KeyFile> {
        let path = self.key_path();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `sahel keygen` first)", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sahel key file", path.display()))
    }

    /// Loads the key; `passphrase` is asked for only if the key is sealed.
    pub fn load_key(
        &self,
        passphrase: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<SigningKey> {
        let file = self.read_key_file()?;
        let bytes: Vec<u8> = match (&file.secret, &file.sealed) {
            (Some(s), _) => hex::decode(s.trim()).context("the key file's secret is not hex")?,
            (None, Some(sealed)) => open(sealed, &passphrase()?)?,
            (None, None) => bail!("the key file holds no key"),
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the key is not 32 bytes"))?;
        let key = SigningKey::from_bytes(&bytes);
        if hex::encode(key.verifying_key().as_bytes()) != file.public_key {
            bail!("the key file is corrupt: its secret does not match its public key");
        }
        Ok(key)
    }

    pub fn save_profile(&self, p: &Profile) -> anyhow::Result<()> {
        fs::create_dir_all(self.profile_dir())?;
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

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> anyhow::Result<[u8; 32]> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    let mut out = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| anyhow::anyhow!("deriving the key: {e}"))?;
    Ok(out)
}

fn seal(secret: &[u8], passphrase: &str) -> anyhow::Result<Sealed> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let k = derive(passphrase, &salt, M_COST, T_COST, P_COST)?;
    let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&k))
        .encrypt(Nonce::from_slice(&nonce), secret)
        .map_err(|_| anyhow::anyhow!("encrypting the key failed"))?;
    Ok(Sealed {
        kdf: "argon2id".into(),
        salt: hex::encode(salt),
        m_cost: M_COST,
        t_cost: T_COST,
        p_cost: P_COST,
        cipher: "chacha20poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

fn open(s: &Sealed, passphrase: &str) -> anyhow::Result<Vec<u8>> {
    if s.kdf != "argon2id" || s.cipher != "chacha20poly1305" {
        bail!(
            "the key file uses {} / {}, which this sahel does not know",
            s.kdf,
            s.cipher
        );
    }
    let salt = hex::decode(&s.salt)?;
    let nonce = hex::decode(&s.nonce)?;
    if nonce.len() != 12 {
        bail!("the key file's nonce is malformed");
    }
    let k = derive(passphrase, &salt, s.m_cost, s.t_cost, s.p_cost)?;
    ChaCha20Poly1305::new(Key::from_slice(&k))
        .decrypt(
            Nonce::from_slice(&nonce),
            hex::decode(&s.ciphertext)?.as_slice(),
        )
        .map_err(|_| anyhow::anyhow!("wrong passphrase for the key file"))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Write a new file and rename it over the old one, so a crash never
    // leaves a half-written key.
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_passphrase() {
        let dir = std::env::temp_dir().join(format!("sahel-home-{}", std::process::id()));
        let home = Home::new(Some(dir.clone()), "t").unwrap();
        let key = Home::generate().unwrap();
        home.save_key(&key, Some("open sesame"), false).unwrap();
        assert!(home.key_is_sealed().unwrap());
        let text = fs::read_to_string(home.key_path()).unwrap();
        assert!(
            !text.contains(&hex::encode(key.to_bytes())),
            "the secret is not in the file"
        );
        let back = home.load_key(|| Ok("open sesame".into())).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        assert!(home.load_key(|| Ok("wrong".into())).is_err());
        assert!(
            home.save_key(&key, None, false).is_err(),
            "no silent overwrite"
        );
        home.save_key(&key, None, true).unwrap();
        assert!(!home.key_is_sealed().unwrap());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn profile_names_cannot_escape_the_config_directory() {
        assert!(Home::new(None, "../etc").is_err());
        assert!(Home::new(None, "").is_err());
        assert!(Home::new(None, "work-2").is_ok());
    }
}
