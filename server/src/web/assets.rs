//! The stylesheet and scripts, compiled into the binary so the server
//! needs no files at run time. Each is served with a strong ETag (a hash of
//! its bytes) and revalidated on use, so a new build is never hidden by a
//! stale cache.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::error::PageError;
use crate::error::Error;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "sahel.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../../templates/static/sahel.css"),
    },
    Asset {
        name: "sahel.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../templates/static/sahel.js"),
    },
    Asset {
        name: "label.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../templates/static/label.js"),
    },
    Asset {
        name: "review.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../templates/static/review.js"),
    },
];

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                format!(
                    "\"{}\"",
                    &hex::encode(Sha256::digest(a.body.as_bytes()))[..16]
                )
            })
            .collect()
    })
}

pub async fn serve(req: HttpRequest) -> Result<HttpResponse, PageError> {
    let name = req.match_info().get("file").unwrap_or_default();
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return Err(Error::not_found("no-asset", format!("no static file {name:?}")).into());
    };
    let tag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag.clone()))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res
        .content_type(ASSETS[i].content_type)
        .body(ASSETS[i].body))
}
