//! Items from files: each uploaded file (multipart parts, the entries of a
//! zip or tar archive, the objects under a store prefix) becomes an
//! artifact and an item referencing it: `{"image", "width", "height",
//! "name"}` for images (dimensions read from the header), `{"audio",
//! "name"}` for audio, `{"file", "name"}` otherwise.
//!
//! All or nothing: a refused file (limit, type, unreadable archive)
//! refuses the import, and what this import stored anew is deleted again,
//! objects and rows, so a refused import leaves nothing behind.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use sahel_protocol::api::ImportReport;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::entity;
use super::store::{self, ArtifactStore, Limits, Stored};
use crate::accounts::AuthUser;
use crate::error::{Error, Result};
use crate::state::AppState;

/// Files one import may hold.
pub const MAX_FILES: usize = 100_000;
/// Bytes read to find an image's dimensions when the sniffed head is not
/// enough (JPEG metadata can precede the frame header).
const DIMENSION_PROBE: u64 = 512 << 10;

type ByteStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, String>>>>;

/// One file of an import, stored.
struct Imported {
    name: String,
    stored: Stored,
}

/// Collects the stored files of one import, and undoes them on refusal.
struct Batch<'a> {
    state: &'a AppState,
    user: &'a AuthUser,
    limits: Limits,
    files: Vec<Imported>,
}

impl<'a> Batch<'a> {
    async fn add<S, E>(&mut self, name: &str, body: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if self.files.len() >= MAX_FILES {
            return Err(Error::too_large(
                "too-many-files",
                format!("one import holds at most {MAX_FILES} files"),
            ));
        }
        let stored = self
            .state
            .artifacts
            .put_stream(body, &self.limits)
            .await
            .map_err(|e| name_file(e, name))?;
        self.files.push(Imported {
            name: name.to_owned(),
            stored,
        });
        Ok(())
    }

    /// Removes what this import stored anew: objects nobody had before.
    async fn undo(&self) {
        for f in &self.files {
            if f.stored.new_object {
                let _ = self.state.artifacts.delete(&f.stored.sha256).await;
            }
        }
    }

    /// Removes the rows this import added (after its items were refused),
    /// unless something else uses the artifact meanwhile.
    async fn undo_rows(&self) {
        let new: BTreeSet<&str> = self
            .files
            .iter()
            .filter(|f| f.stored.new_object)
            .map(|f| f.stored.sha256.as_str())
            .collect();
        for sha in new {
            let r: Result<()> = async {
                let tx = self.state.db.write().await?;
                let links = entity::item_link::Entity::find()
                    .filter(entity::item_link::Column::Sha256.eq(sha))
                    .one(&*tx)
                    .await?;
                let others = entity::uploader::Entity::find()
                    .filter(entity::uploader::Column::Sha256.eq(sha))
                    .filter(entity::uploader::Column::UserId.ne(self.user.id))
                    .one(&*tx)
                    .await?;
                if links.is_none() && others.is_none() {
                    entity::uploader::Entity::delete_many()
                        .filter(entity::uploader::Column::Sha256.eq(sha))
                        .exec(&*tx)
                        .await?;
                    entity::artifact::Entity::delete_by_id(sha.to_owned())
                        .exec(&*tx)
                        .await?;
                    tx.commit().await?;
                    let _ = self.state.artifacts.delete(sha).await;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, artifact = sha, "undoing a refused import failed");
            }
        }
    }

    /// Records the artifacts, builds one item per file and imports them
    /// into the draft; undoes everything on failure.
    async fn finish(self, project_id: i64) -> Result<ImportReport> {
        if self.files.is_empty() {
            return Err(Error::invalid("import-empty", "the upload holds no files"));
        }
        let mut items = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let r = super::record_upload(
                &self.state.db,
                &self.state.artifacts,
                self.user.id,
                &f.stored,
            )
            .await;
            if let Err(e) = r {
                self.undo().await;
                self.undo_rows().await;
                return Err(e);
            }
            match item_for(&self.state.artifacts, f).await {
                Ok(v) => items.push(v),
                Err(e) => {
                    self.undo_rows().await;
                    return Err(e);
                }
            }
        }
        match crate::projects::import::import_values(&self.state.db, self.user, project_id, items)
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => {
                self.undo_rows().await;
                Err(e)
            }
        }
    }
}

fn name_file(e: Error, name: &str) -> Error {
    match e {
        Error::Client(mut c) => {
            c.detail = format!("{name}: {}", c.detail);
            Error::Client(c)
        }
        other => other,
    }
}

/// The item for one stored file.
async fn item_for(artifacts: &ArtifactStore, f: &Imported) -> Result<Value> {
    let t = f.stored.media_type.as_str();
    let sha = &f.stored.sha256;
    if t.starts_with("image/") {
        let dims = match imagesize::blob_size(&f.stored.head) {
            Ok(d) => Some(d),
            Err(_) => {
                let probe = f.stored.size.min(DIMENSION_PROBE);
                let mut s = artifacts.get(sha, Some(0..probe)).await?;
                let mut buf = Vec::with_capacity(probe as usize);
                while let Some(c) = s.next().await {
                    buf.extend_from_slice(&c.map_err(|e| anyhow::anyhow!("reading {sha}: {e}"))?);
                }
                imagesize::blob_size(&buf).ok()
            }
        };
        // A format whose header we cannot measure is still an image;
        // only task types that need the size (boxes) will refuse it.
        return Ok(match dims {
            Some(d) => json!({"image": sha, "width": d.width, "height": d.height, "name": f.name}),
            None => json!({"image": sha, "name": f.name}),
        });
    }
    if t.starts_with("audio/") {
        return Ok(json!({"audio": sha, "name": f.name}));
    }
    Ok(json!({"file": sha, "name": f.name}))
}

/// Names to leave out of archives and prefixes: directories and the
/// metadata files archivers and desktops add.
fn skipped(name: &str) -> bool {
    name.is_empty()
        || name.ends_with('/')
        || name.starts_with("__MACOSX/")
        || name.rsplit('/').next().is_some_and(|b| b.starts_with('.'))
}

/// Items from a multipart upload (one part per file) or from one zip or
/// tar archive (recognised from its bytes).
pub async fn import_files(
    state: &AppState,
    user: &AuthUser,
    project_id: i64,
    headers: &actix_web::http::header::HeaderMap,
    body: ByteStream,
) -> Result<ImportReport> {
    let p = crate::projects::get_owned(&state.db.conn, user, project_id).await?;
    if p.status() != sahel_protocol::api::ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "items can only be imported before the project is funded",
        ));
    }
    let limits = super::limits_for(
        &state.db.conn,
        state.config.max_artifact_bytes,
        user,
        Some(&p),
    )
    .await?;
    let mut batch = Batch {
        state,
        user,
        limits,
        files: Vec::new(),
    };
    let multipart = headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let collected = if multipart {
        from_multipart(&mut batch, headers, body).await
    } else {
        from_archive(&mut batch, body).await
    };
    if let Err(e) = collected {
        batch.undo().await;
        return Err(e);
    }
    batch.finish(project_id).await
}

async fn from_multipart(
    batch: &mut Batch<'_>,
    headers: &actix_web::http::header::HeaderMap,
    body: ByteStream,
) -> Result<()> {
    let payload =
        body.map(|r| r.map_err(|e| actix_web::error::PayloadError::Io(std::io::Error::other(e))));
    let mut parts = actix_multipart::Multipart::new(headers, payload);
    let mut n = 0;
    while let Some(field) = parts.next().await {
        let field = field.map_err(|e| {
            Error::bad_request(
                "bad-multipart",
                format!("the multipart body is malformed: {e}"),
            )
        })?;
        n += 1;
        let name = field
            .content_disposition()
            .and_then(|d| d.get_filename().or(d.get_name()))
            .map(base_name)
            .unwrap_or_else(|| format!("file-{n}"));
        let stream = field.map(|r| r.map_err(|e| e.to_string()));
        batch.add(&name, Box::pin(stream)).await?;
    }
    Ok(())
}

/// The last path segment of a client-supplied name.
fn base_name(name: &str) -> String {
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned()
}

/// A temporary file that is removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Clone, Copy)]
enum Archive {
    Zip,
    Tar,
}

fn archive_kind(head: &[u8]) -> Option<Archive> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(Archive::Zip);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Some(Archive::Tar);
    }
    None
}

/// Streams the archive to a temporary file (not memory), then reads its
/// entries on a blocking thread, each handed over as a stream of chunks.
async fn from_archive(batch: &mut Batch<'_>, mut body: ByteStream) -> Result<()> {
    let dir = batch.state.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let tmp = TempFile(dir.join(format!("import-{}", crate::accounts::random_hex(12))));
    let limit = batch.state.config.max_import_bytes as u64;
    let mut file = tokio::fs::File::create(&tmp.0)
        .await
        .map_err(|e| anyhow::anyhow!("creating a temporary file: {e}"))?;
    let mut total: u64 = 0;
    let mut head = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            Error::bad_request("unreadable-body", format!("reading the upload failed: {e}"))
        })?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(Error::too_large(
                "body-too-large",
                format!("the upload exceeds the {limit}-byte limit"),
            ));
        }
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| anyhow::anyhow!("writing a temporary file: {e}"))?;
    }
    file.flush().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(file);
    let Some(kind) = archive_kind(&head) else {
        return Err(Error::invalid(
            "not-an-archive",
            "send the files as multipart/form-data parts, or one zip or tar archive",
        ));
    };
    let (etx, mut erx) = mpsc::channel::<(String, mpsc::Receiver<std::io::Result<Bytes>>)>(1);
    let path = tmp.0.clone();
    let reader = tokio::task::spawn_blocking(move || read_archive(kind, &path, etx));
    let mut outcome = Ok(());
    while let Some((name, rx)) = erx.recv().await {
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
            );
        if let Err(e) = batch.add(&name, Box::pin(stream)).await {
            outcome = Err(e);
            break;
        }
    }
    // Dropping the receiver stops the reader at its next send.
    drop(erx);
    let read = reader
        .await
        .map_err(|e| anyhow::anyhow!("the archive reader failed: {e}"))?;
    outcome?;
    read.map_err(|e| Error::invalid("bad-archive", format!("the archive cannot be read: {e}")))?;
    drop(tmp);
    Ok(())
}

type EntrySender = mpsc::Sender<(String, mpsc::Receiver<std::io::Result<Bytes>>)>;

/// Sends one entry's bytes; false when the receiving side has stopped.
fn send_entry(name: String, mut r: impl Read, etx: &EntrySender) -> std::io::Result<bool> {
    let (tx, rx) = mpsc::channel(4);
    if etx.blocking_send((name, rx)).is_err() {
        return Ok(false);
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return Ok(false);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = tx.blocking_send(Err(e));
                return Err(std::io::Error::other(msg));
            }
        }
    }
}

fn read_archive(kind: Archive, path: &FsPath, etx: EntrySender) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    match kind {
        Archive::Zip => {
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
                .map_err(std::io::Error::other)?;
            for i in 0..zip.len() {
                let entry = zip.by_index(i).map_err(std::io::Error::other)?;
                if entry.is_dir() {
                    continue;
                }
                let Some(name) = entry.enclosed_name() else {
                    continue;
                };
                let name = name.to_string_lossy().replace('\\', "/");
                if skipped(&name) {
                    continue;
                }
                if !send_entry(name, entry, &etx)? {
                    return Ok(());
                }
            }
        }
        Archive::Tar => {
            let mut tar = tar::Archive::new(std::io::BufReader::new(file));
            for entry in tar.entries()? {
                let entry = entry?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = entry
                    .path()?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_owned();
                if skipped(&name) {
                    continue;
                }
                if !send_entry(name, entry, &etx)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Is this import URL allowed? It must start with one of the configured
/// prefixes; a `file://` URL is compared after resolving `..` and links,
/// so it cannot climb out of an allowed directory.
pub fn check_import_url(allowed: &[String], url: &str) -> Result<url::Url> {
    let refuse = |why: String| Error::forbidden("import-url-not-allowed", why);
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid("invalid-url", format!("{url:?} is not a URL: {e}")))?;
    let candidate = if parsed.scheme() == "file" {
        let p = parsed
            .to_file_path()
            .map_err(|()| Error::invalid("invalid-url", format!("{url:?} is not a file path")))?;
        let real = std::fs::canonicalize(&p).map_err(|_| {
            Error::invalid(
                "prefix-unreadable",
                format!("{} does not exist", p.display()),
            )
        })?;
        let ok = allowed.iter().any(|a| {
            url::Url::parse(a)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .and_then(|d| std::fs::canonicalize(d).ok())
                .is_some_and(|d| real.starts_with(d))
        });
        if !ok {
            return Err(refuse(format!(
                "the server imports local files only from its import directories ({}); {} is outside them",
                allowed.join(", "),
                real.display()
            )));
        }
        url::Url::from_directory_path(&real)
            .or_else(|()| url::Url::from_file_path(&real))
            .map_err(|()| Error::invalid("invalid-url", "bad path"))?
    } else {
        let norm = parsed.as_str().trim_end_matches('/').to_owned() + "/";
        let ok = allowed
            .iter()
            .any(|a| norm.starts_with(&(a.trim_end_matches('/').to_owned() + "/")));
        if !ok || parsed.path().split('/').any(|s| s == "..") {
            return Err(refuse(format!(
                "the server imports only from the stores it is configured for ({}); ask its operator to add {url}",
                allowed.join(", ")
            )));
        }
        parsed
    };
    Ok(candidate)
}

/// Items from every object under a store prefix the server may read.
pub async fn import_prefix(
    state: &AppState,
    user: &AuthUser,
    project_id: i64,
    url: &str,
) -> Result<ImportReport> {
    let p = crate::projects::get_owned(&state.db.conn, user, project_id).await?;
    if p.status() != sahel_protocol::api::ProjectStatus::Draft {
        return Err(Error::conflict(
            "project-not-draft",
            "items can only be imported before the project is funded",
        ));
    }
    let url = check_import_url(&state.config.import_allow(), url)?;
    let (source, prefix) = if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|()| Error::invalid("invalid-url", "bad file URL"))?;
        if path.is_file() {
            let dir = path.parent().unwrap_or(&path).to_owned();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let (s, _) = store::open_url(
                url::Url::from_directory_path(&dir)
                    .map_err(|()| Error::invalid("invalid-url", "bad path"))?
                    .as_str(),
            )?;
            (s, object_store::path::Path::from(name.unwrap_or_default()))
        } else {
            store::open_url(url.as_str())?
        }
    } else {
        store::open_url(url.as_str())
            .map_err(|e| Error::invalid("prefix-unreadable", format!("cannot open {url}: {e:#}")))?
    };
    let limits = super::limits_for(
        &state.db.conn,
        state.config.max_artifact_bytes,
        user,
        Some(&p),
    )
    .await?;
    let mut batch = Batch {
        state,
        user,
        limits,
        files: Vec::new(),
    };
    let collected: Result<()> = async {
        let objects = store::list_prefix(&source, &prefix).await?;
        for (location, name, _) in objects {
            if skipped(&name) {
                continue;
            }
            let s = store::read_object(&source, &location).await?;
            batch.add(&name, s).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = collected {
        batch.undo().await;
        return Err(e);
    }
    batch.finish(project_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_metadata_and_directories_are_skipped() {
        assert!(skipped("__MACOSX/a.png"));
        assert!(skipped("photos/.DS_Store"));
        assert!(skipped("photos/"));
        assert!(!skipped("photos/cat.png"));
    }

    #[test]
    fn file_urls_must_stay_inside_an_allowed_directory() {
        let root =
            std::env::temp_dir().join(format!("sahel-imp-{}", crate::accounts::random_hex(4)));
        let inside = root.join("imports/batch");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(root.join("secret")).unwrap();
        let allowed = vec![
            url::Url::from_directory_path(root.join("imports"))
                .unwrap()
                .to_string(),
        ];
        let ok = url::Url::from_directory_path(&inside).unwrap().to_string();
        assert!(check_import_url(&allowed, &ok).is_ok());
        let climb = format!("{ok}../../secret/");
        assert!(check_import_url(&allowed, &climb).is_err());
        let other = url::Url::from_directory_path(root.join("secret"))
            .unwrap()
            .to_string();
        assert!(check_import_url(&allowed, &other).is_err());
        let s3 = vec!["s3://bucket/shared".to_owned()];
        assert!(check_import_url(&s3, "s3://bucket/shared/cats").is_ok());
        assert!(check_import_url(&s3, "s3://bucket/sharedother").is_err());
        assert!(check_import_url(&s3, "s3://bucket/private").is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
