//! The object store behind artifacts, and the streaming upload.
//!
//! Objects live under `sha256/<hex>`. An upload is written to a temporary
//! key while it is hashed, counted and sniffed; only when every limit has
//! passed is it moved to its content address (or dropped, when those bytes
//! are already stored). Any refusal or error aborts the temporary upload,
//! so nothing of a refused upload stays behind.

use std::ops::Range;
use std::sync::Arc;

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart, parse_url_opts,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bytes looked at to recognise a file's type.
const SNIFF_BYTES: usize = 8192;
/// Parts of a multipart upload; S3 needs at least 5 MiB per part.
const PART_BYTES: usize = 5 << 20;

/// What an upload may be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    /// Accepted media types (`image/png`, `audio/*`); empty: any.
    pub accept: Vec<String>,
}

impl Limits {
    pub fn accepts(&self, media_type: &str) -> bool {
        self.accept.is_empty()
            || self
                .accept
                .iter()
                .any(|a| media_type_matches(a, media_type))
    }

    /// The stricter of two sets of limits.
    pub fn and(mut self, other: &Limits) -> Limits {
        self.max_bytes = self.max_bytes.min(other.max_bytes);
        if self.accept.is_empty() {
            self.accept = other.accept.clone();
        } else if !other.accept.is_empty() {
            let mine = std::mem::take(&mut self.accept);
            self.accept = mine
                .into_iter()
                .filter(|a| {
                    other
                        .accept
                        .iter()
                        .any(|o| media_type_matches(o, a) || media_type_matches(a, o))
                })
                .collect();
            if self.accept.is_empty() {
                // Nothing satisfies both: accept nothing rather than anything.
                self.accept.push("none/none".into());
            }
        }
        self
    }
}

/// The names one format goes by: sniffing says `audio/x-wav` where a
/// schema may say `audio/wav`, and a WebM recording may be audio only.
fn canonical(media_type: &str) -> &str {
    match media_type {
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav",
        "video/webm" => "audio/webm",
        "audio/mp3" => "audio/mpeg",
        "image/jpg" => "image/jpeg",
        other => other,
    }
}

/// True when `pattern` (a type or `type/*`) covers `media_type`.
pub fn media_type_matches(pattern: &str, media_type: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    if pattern == "*/*" {
        return true;
    }
    if let Some(major) = pattern.strip_suffix("/*") {
        return media_type.split('/').next() == Some(major);
    }
    canonical(&pattern) == canonical(media_type)
}

/// The media type of a file from its first bytes, never from what the
/// client claims: a known signature, else text when it is UTF-8, else
/// `application/octet-stream`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    if head.is_empty() {
        return "application/octet-stream".into();
    }
    // A cut at the sniff window may split a UTF-8 sequence.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A stored upload: its content address, size and sniffed type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub media_type: String,
    /// False when the same bytes were stored before.
    pub new_object: bool,
    /// The first bytes (up to 8 KiB), for readers of headers.
    pub head: Vec<u8>,
}

/// The artifact store: an object store and the prefix under which this
/// deployment keeps its objects.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Options for a store URL from the environment: `AWS_*` (and, when those
/// back-ends are built in, `GOOGLE_*` and `AZURE_*`) variables, as their
/// SDKs read them (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ALLOW_HTTP`, ...).
fn env_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Opens the object store a URL names (`s3://bucket/prefix`, `file:///dir`,
/// `memory:///`), with credentials from the environment.
pub fn open_url(url: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad store URL {url:?}: {e}"))?;
    if parsed.scheme() == "file" {
        // A local prefix: root the store there, so keys stay relative.
        let dir = parsed
            .to_file_path()
            .map_err(|()| anyhow::anyhow!("bad file URL {url:?}"))?;
        std::fs::create_dir_all(&dir)?;
        let fs = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
        return Ok((Arc::new(fs), Path::default()));
    }
    let (store, prefix) = parse_url_opts(&parsed, env_options())
        .map_err(|e| anyhow::anyhow!("opening the object store {url:?}: {e}"))?;
    Ok((Arc::from(store), prefix))
}

impl ArtifactStore {
    /// The store `artifacts_url` names, or the local directory.
    pub fn open(artifacts_url: Option<&str>, local_dir: &std::path::Path) -> anyhow::Result<Self> {
        let url = match artifacts_url {
            Some(u) => u.to_owned(),
            None => {
                std::fs::create_dir_all(local_dir)?;
                let abs = std::fs::canonicalize(local_dir)?;
                url::Url::from_directory_path(&abs)
                    .map_err(|()| anyhow::anyhow!("bad artifacts directory {}", abs.display()))?
                    .to_string()
            }
        };
        let (store, prefix) = open_url(&url)?;
        Ok(ArtifactStore { store, prefix, url })
    }

    fn key(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    pub fn object_key(&self, sha256: &str) -> Path {
        self.key(&format!("sha256/{sha256}"))
    }

    /// Keys currently in the store under this deployment's prefix (tests
    /// check that a refused upload left none behind).
    pub async fn list_keys(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut s = self.store.list(prefix);
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("listing the artifact store: {e}"))?;
            out.push(m.location.to_string());
        }
        out.sort();
        Ok(out)
    }

    /// Streams an upload into the store under the given limits. The
    /// `check` callback sees the sniffed type as soon as it is known (to
    /// refuse early); a refusal or error leaves no object behind.
    pub async fn put_stream<S, E>(&self, mut body: S, limits: &Limits) -> Result<Stored>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.key(&format!("tmp/{}", crate::accounts::random_hex(16)));
        let upload = self
            .store
            .put_multipart(&tmp)
            .await
            .map_err(|e| anyhow::anyhow!("starting an upload: {e}"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::new();
        let mut media_type: Option<String> = None;
        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::bad_request("unreadable-body", format!("reading the upload failed: {e}"))
                })?;
                size += chunk.len() as u64;
                if size > limits.max_bytes {
                    return Err(too_large(limits.max_bytes));
                }
                if media_type.is_none() {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    if head.len() >= SNIFF_BYTES {
                        media_type = Some(check_type(&head, limits)?);
                    }
                }
                hasher.update(&chunk);
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| anyhow::anyhow!("writing an upload: {e}"))?;
                writer.put(chunk);
            }
            if media_type.is_none() {
                media_type = Some(check_type(&head, limits)?);
            }
            if size == 0 {
                return Err(Error::invalid("empty-upload", "the upload holds no bytes"));
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting a refused upload failed");
            }
            let _ = self.store.delete(&tmp).await;
            return Err(e);
        }
        let finished = writer.finish().await;
        if let Err(e) = finished {
            let _ = self.store.delete(&tmp).await;
            return Err(anyhow::anyhow!("finishing an upload: {e}").into());
        }
        let sha256 = hex::encode(hasher.finalize());
        let key = self.object_key(&sha256);
        let new_object = match self.store.head(&key).await {
            Ok(_) => {
                // The same bytes are stored already: keep one copy.
                let _ = self.store.delete(&tmp).await;
                false
            }
            Err(object_store::Error::NotFound { .. }) => {
                // A concurrent upload of the same bytes may rename first;
                // either copy is the same content.
                if let Err(e) = self.store.rename(&tmp, &key).await {
                    let _ = self.store.delete(&tmp).await;
                    return Err(anyhow::anyhow!("storing an upload: {e}").into());
                }
                true
            }
            Err(e) => {
                let _ = self.store.delete(&tmp).await;
                return Err(anyhow::anyhow!("checking the store: {e}").into());
            }
        };
        Ok(Stored {
            sha256,
            size,
            media_type: media_type.unwrap_or_else(|| "application/octet-stream".into()),
            new_object,
            head,
        })
    }

    /// Deletes temporary upload objects older than `age` (left by a server
    /// that stopped mid-upload); returns how many.
    pub async fn sweep_temporary(&self, age: std::time::Duration) -> Result<usize> {
        let tmp = self.key("tmp");
        let cutoff = crate::db::now_ms() - age.as_millis() as i64;
        let mut old = Vec::new();
        let mut s = self.store.list(Some(&tmp));
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("listing temporary uploads: {e}"))?;
            if m.last_modified.timestamp_millis() <= cutoff {
                old.push(m.location);
            }
        }
        for p in &old {
            let _ = self.store.delete(p).await;
        }
        Ok(old.len())
    }

    /// Removes a stored object (an upload whose row could not be written).
    pub async fn delete(&self, sha256: &str) -> Result<()> {
        match self.store.delete(&self.object_key(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("deleting artifact {sha256}: {e}").into()),
        }
    }

    /// Streams an object, or a byte range of it.
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<Range<u64>>,
    ) -> Result<impl Stream<Item = std::result::Result<Bytes, object_store::Error>> + use<>> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&self.object_key(sha256), opts)
            .await
            .map_err(|e| anyhow::anyhow!("reading artifact {sha256}: {e}"))?;
        Ok(got.into_stream())
    }
}

fn too_large(max: u64) -> Error {
    Error::too_large(
        "artifact-too-large",
        format!("the file exceeds the {max}-byte limit for this upload"),
    )
}

fn check_type(head: &[u8], limits: &Limits) -> Result<String> {
    let t = sniff(head);
    if !limits.accepts(&t) {
        return Err(Error::invalid(
            "media-type-not-accepted",
            format!(
                "the file is {t} (recognised from its bytes), which this upload does not accept; accepted: {}",
                limits.accept.join(", ")
            ),
        ));
    }
    Ok(t)
}

/// Reads every object under a prefix of another store, for imports:
/// `(relative name, size)` pairs.
pub async fn list_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> Result<Vec<(Path, String, u64)>> {
    let mut out = Vec::new();
    let p = (!prefix.as_ref().is_empty()).then_some(prefix);
    let mut s = store.list(p);
    while let Some(m) = s.next().await {
        let m = m.map_err(|e| {
            Error::invalid(
                "prefix-unreadable",
                format!("the server cannot list that prefix: {e}"),
            )
        })?;
        let name = m
            .location
            .as_ref()
            .strip_prefix(prefix.as_ref())
            .unwrap_or(m.location.as_ref())
            .trim_start_matches('/')
            .to_owned();
        out.push((m.location, name, m.size));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Streams one object of another store.
pub async fn read_object(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
) -> Result<impl Stream<Item = std::result::Result<Bytes, object_store::Error>> + use<>> {
    let got = store.get(location).await.map_err(|e| {
        Error::invalid(
            "prefix-unreadable",
            format!("the server cannot read {location}: {e}"),
        )
    })?;
    Ok(got.into_stream())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_reads_bytes_not_names() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png), "image/png");
        assert_eq!(sniff(b"hello, world"), "text/plain");
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), "application/octet-stream");
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend([0; 16]);
        assert!(
            media_type_matches("audio/wav", &sniff(&wav)),
            "{}",
            sniff(&wav)
        );
    }

    #[test]
    fn accept_lists_match_types_aliases_and_wildcards() {
        let l = Limits {
            max_bytes: 10,
            accept: vec!["audio/wav".into(), "image/*".into()],
        };
        assert!(l.accepts("audio/x-wav"));
        assert!(l.accepts("image/png"));
        assert!(!l.accepts("text/plain"));
        assert!(Limits::default().accepts("anything/at-all"));
        let both = l.and(&Limits {
            max_bytes: 5,
            accept: vec!["image/png".into()],
        });
        assert_eq!(both.max_bytes, 5);
        assert!(both.accepts("image/png"));
        assert!(!both.accepts("audio/wav"));
    }

    #[test]
    fn hex_hashes_are_64_lowercase_hex_digits() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
