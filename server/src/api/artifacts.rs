//! Artifact routes: streaming upload and download, per-bounty limits, and
//! items imported from files.

use std::ops::Range;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use sahel_protocol::api::{ArtifactLimits, ImportFromPrefix};
use serde::Deserialize;

use super::extract::{Authed, AuthedUpload, Caller};
use crate::artifacts::{self, import, is_sha256_hex};
use crate::error::{Error, Result};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct UploadQuery {
    project: Option<i64>,
}

/// `POST /artifacts[?project=ID]`: the raw body, streamed into the store.
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    AuthedUpload(user, body): AuthedUpload,
    q: web::Query<UploadQuery>,
) -> Result<HttpResponse> {
    let project = match q.project {
        Some(id) => Some(crate::projects::get_visible(&state.db.conn, &user, id).await?),
        None => None,
    };
    let limits = artifacts::limits_for(
        &state.db.conn,
        state.config.max_artifact_bytes,
        &user,
        project.as_ref(),
    )
    .await?;
    // A declared length over the limit is refused before reading a byte.
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limits.max_bytes
    {
        return Err(Error::too_large(
            "artifact-too-large",
            format!(
                "the file exceeds the {}-byte limit for this upload",
                limits.max_bytes
            ),
        ));
    }
    let stored = state
        .artifacts
        .put_stream(body.into_stream(), &limits)
        .await?;
    let info = artifacts::record_upload(&state.db, &state.artifacts, user.id, &stored).await?;
    let status = if stored.new_object {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(info))
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    Part(Range<u64>),
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range. Several
/// ranges are served whole (allowed by RFC 9110); a malformed or
/// unsatisfiable one is refused.
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => None,
        (true, false) => b
            .parse::<u64>()
            .ok()
            .and_then(|n| (n > 0 && size > 0).then(|| size.saturating_sub(n)..size)),
        (false, _) => a.parse::<u64>().ok().and_then(|start| {
            let end = if b.is_empty() {
                Some(size.saturating_sub(1))
            } else {
                b.parse::<u64>().ok().map(|e| e.min(size.saturating_sub(1)))
            }?;
            (start < size && start <= end).then_some(start..end + 1)
        }),
    };
    match parsed {
        Some(r) => RangeRequest::Part(r),
        None => RangeRequest::Unsatisfiable,
    }
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// `GET /artifacts/{sha256}`: streams the bytes to those allowed to see
/// them; to anyone else it does not exist.
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(user): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let sha = path.into_inner();
    let missing = || Error::not_found("artifact-not-found", "no such artifact");
    if !is_sha256_hex(&sha) {
        return Err(missing());
    }
    let row = artifacts::find(&state.db.conn, &sha)
        .await?
        .ok_or_else(missing)?;
    if !artifacts::can_read(&state.db.conn, &user, &sha).await? {
        return Err(missing());
    }
    let etag = format!("\"{sha}\"");
    let size = row.size as u64;
    let common = |res: &mut actix_web::HttpResponseBuilder| {
        res.insert_header((header::ETAG, etag.clone()))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            // Content-addressed: these bytes never change, but only some
            // may see them.
            .insert_header((
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            // Uploads are other people's bytes: never a live page on this
            // origin. No script runs, and what a browser would render as a
            // document is downloaded instead.
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src 'self'; media-src 'self'",
            ));
    };
    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, &etag)
    {
        let mut res = HttpResponse::NotModified();
        common(&mut res);
        return Ok(res.finish());
    }
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => RangeRequest::Full,
        Some(v) => parse_range(v, size),
    };
    let (status, range) = match range {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        RangeRequest::Unsatisfiable => {
            let problem = sahel_protocol::api::Problem {
                kind: "urn:sahel:problem:range-not-satisfiable".into(),
                title: "Range Not Satisfiable".into(),
                status: 416,
                detail: format!(
                    "the artifact has {size} bytes; ask for one range inside them, like bytes=0-{}",
                    size.saturating_sub(1)
                ),
                errors: Vec::new(),
            };
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .content_type("application/problem+json")
                .body(serde_json::to_vec(&problem).unwrap_or_default()));
        }
    };
    let stream = state.artifacts.get(&sha, range.clone()).await?;
    let mut res = HttpResponse::build(status);
    common(&mut res);
    res.content_type(row.media_type.as_str());
    if !inline_safe(&row.media_type) {
        res.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{sha}\""),
        ));
    }
    let len = match &range {
        Some(r) => {
            res.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            r.end - r.start
        }
        None => size,
    };
    res.no_chunking(len);
    Ok(res.streaming(stream.map(|r| r.map_err(std::io::Error::other))))
}

/// `PUT /projects/{id}/artifact-limits` (the buyer, on a draft).
pub async fn put_limits(
    state: web::Data<AppState>,
    Authed(user, limits): Authed<ArtifactLimits>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let set = artifacts::set_project_limits(&state.db, &user, path.into_inner(), limits).await?;
    Ok(HttpResponse::Ok().json(set))
}

/// `GET /projects/{id}/artifact-limits` (anyone who sees the bounty).
pub async fn get_limits(
    state: web::Data<AppState>,
    Caller(user): Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let p = crate::projects::get_visible(&state.db.conn, &user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(artifacts::project_limits(&state.db.conn, p.row.id).await?))
}

/// `POST /projects/{id}/items/files`: multipart files or one zip/tar.
pub async fn import_files(
    state: web::Data<AppState>,
    req: HttpRequest,
    AuthedUpload(user, body): AuthedUpload,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let report = import::import_files(
        &state,
        &user,
        path.into_inner(),
        req.headers(),
        body.into_stream(),
    )
    .await?;
    Ok(HttpResponse::Created().json(report))
}

/// `POST /projects/{id}/items/from-prefix` `{"url": ...}`.
pub async fn import_prefix(
    state: web::Data<AppState>,
    Authed(user, req): Authed<ImportFromPrefix>,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    let report = import::import_prefix(&state, &user, path.into_inner(), &req.url).await?;
    Ok(HttpResponse::Created().json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Part(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), Part(95..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=x-y", 100), Unsatisfiable);
        assert_eq!(parse_range("lines=1-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
    }

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        let e = "\"abc\"";
        assert!(etag_matches("\"abc\"", e));
        assert!(etag_matches("W/\"abc\"", e));
        assert!(etag_matches("\"x\", \"abc\"", e));
        assert!(etag_matches("*", e));
        assert!(!etag_matches("\"abd\"", e));
    }
}

/// Media a browser shows inline without running anything: raster images,
/// audio and video. Everything else (HTML, SVG, XML, PDF, ...) downloads.
pub fn inline_safe(media_type: &str) -> bool {
    let t = media_type.to_ascii_lowercase();
    (t.starts_with("image/") && !t.starts_with("image/svg"))
        || t.starts_with("audio/")
        || t.starts_with("video/")
}

#[cfg(test)]
mod inline_tests {
    #[test]
    fn only_inert_media_show_inline() {
        for (t, inline) in [
            ("image/png", true),
            ("audio/x-wav", true),
            ("video/webm", true),
            ("image/svg+xml", false),
            ("text/html", false),
            ("text/xml", false),
            ("application/pdf", false),
            ("application/octet-stream", false),
        ] {
            assert_eq!(super::inline_safe(t), inline, "{t}");
        }
    }
}
