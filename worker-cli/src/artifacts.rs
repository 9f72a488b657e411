//! Artifacts on the labeler's disk: `sahel pull --download-artifacts DIR`
//! fetches every file the pulled tasks reference, and `sahel upload` sends
//! one (its hash goes into a file-collection answer).
//!
//! Files are named `<sha256>.<ext>`. One already in the directory is kept
//! only if its bytes still hash to its name; a download is written to a
//! `.part` file, checked against the hash it was asked for, then renamed,
//! so the directory never holds a file whose name lies about its bytes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Client;

/// The item fields that hold artifact references (docs/task-types.md).
pub const ITEM_FIELDS: [&str; 3] = ["image", "audio", "file"];

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `field -> hash` for every artifact an item references.
pub fn item_refs(data: &Value) -> BTreeMap<String, String> {
    ITEM_FIELDS
        .iter()
        .filter_map(|f| {
            data.get(*f)
                .and_then(Value::as_str)
                .filter(|s| is_sha256_hex(s))
                .map(|s| ((*f).to_owned(), s.to_owned()))
        })
        .collect()
}

/// A file extension for a media type, so other tools open the file.
pub fn extension(media_type: &str) -> &'static str {
    match media_type.split(';').next().unwrap_or("").trim() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/tiff" => "tif",
        "image/svg+xml" => "svg",
        "audio/x-wav" | "audio/wav" => "wav",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/x-flac" | "audio/flac" => "flac",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "video/webm" | "audio/webm" => "webm",
        "video/mp4" => "mp4",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "text/plain" => "txt",
        "application/json" => "json",
        _ => "bin",
    }
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A file in `dir` already holding these bytes, if there is one.
fn existing(dir: &Path, sha: &str) -> anyhow::Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = name.split('.').next().unwrap_or("");
        if stem == sha && !name.ends_with(".part") && path.is_file() {
            if sha256_file(&path)? == sha {
                return Ok(Some(path));
            }
            // A damaged copy: fetch it again.
            fs::remove_file(&path)?;
        }
    }
    Ok(None)
}

/// Writes a stream to a file while hashing it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What fetching one artifact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Downloaded,
    AlreadyThere,
}

/// Makes sure `dir` holds the artifact `sha`, verified; returns its path.
pub fn fetch(client: &Client, dir: &Path, sha: &str) -> anyhow::Result<(PathBuf, Fetched)> {
    if !is_sha256_hex(sha) {
        bail!("{sha:?} is not an artifact hash");
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some(p) = existing(dir, sha)? {
        return Ok((p, Fetched::AlreadyThere));
    }
    let part = dir.join(format!("{sha}.part"));
    let file = File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let mut w = HashingWriter {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
    };
    let got = client.download_artifact(sha, &mut w);
    let (_, media_type) = match got {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e).with_context(|| format!("downloading artifact {sha}"));
        }
    };
    w.flush()?;
    let actual = hex::encode(w.hash.finalize());
    if actual != sha {
        let _ = fs::remove_file(&part);
        bail!("artifact {sha} arrived with different bytes (SHA-256 {actual}); nothing kept");
    }
    let path = dir.join(format!("{sha}.{}", extension(&media_type)));
    fs::rename(&part, &path)?;
    Ok((path, Fetched::Downloaded))
}
