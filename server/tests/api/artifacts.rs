//! Artifacts: content-addressed uploads, sniffed types, limits that leave
//! nothing behind, ranged downloads, who may read what, and items imported
//! from files, archives and store prefixes. The store tests also run
//! against a real S3 API when `SAHEL_TEST_S3_URL` is set.

use std::io::Write;

use sahel_protocol::api::{self, ArtifactLimits, Role};
use sahel_server::artifacts::entity::{artifact, item_link, uploader};
use sahel_server::projects::entity::item;
use sahel_worker::client::Client;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A PNG header of the given size (enough for sniffing and dimensions),
/// followed by `salt` so each image has its own bytes.
fn png(width: u32, height: u32, salt: &str) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend(width.to_be_bytes());
    b.extend(height.to_be_bytes());
    b.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend(salt.as_bytes());
    b
}

fn wav(salt: &str) -> Vec<u8> {
    let mut b = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\0\0\0\0".to_vec();
    b.extend(salt.as_bytes());
    b
}

struct Http {
    agent: ureq::Agent,
    base: String,
    token: String,
}

struct Got {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Http {
    fn new(app: &TestApp, token: &str) -> Http {
        Http {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            base: app.address.clone(),
            token: token.to_owned(),
        }
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Got {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut res = self.agent.run(req.body(body.to_vec()).unwrap()).unwrap();
        Got {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: res.body_mut().read_to_vec().unwrap(),
        }
    }

    fn upload(&self, bytes: &[u8], content_type: &str, query: &str) -> Got {
        self.send(
            "POST",
            &format!("/api/v1/artifacts{query}"),
            &[("content-type", content_type)],
            bytes,
        )
    }

    fn get(&self, sha: &str, headers: &[(&str, &str)]) -> Got {
        self.send("GET", &format!("/api/v1/artifacts/{sha}"), headers, b"")
    }
}

fn user(app: &TestApp, name: &str, roles: &[Role]) -> (i64, String, Client) {
    let (id, token) = app.create_user(&format!("{name}@test.sahel"), roles);
    (id, token.clone(), bearer(app, &token))
}

fn artifact_rows(app: &TestApp) -> u64 {
    app.block_on(artifact::Entity::find().count(app.db()))
        .unwrap()
}

fn uploader_rows(app: &TestApp) -> u64 {
    app.block_on(uploader::Entity::find().count(app.db()))
        .unwrap()
}

/// Every key in the artifact store (temporary upload keys included).
fn store_keys(app: &TestApp) -> Vec<String> {
    app.block_on(app.state.artifacts.list_keys()).unwrap()
}

/// Every file under the local artifacts directory, whatever object_store
/// thinks (staging files of aborted uploads included).
fn files_on_disk(app: &TestApp) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.config.artifacts_dir(), &mut out);
    out
}

fn draft(app: &TestApp, buyer: &Client) -> api::Project {
    let _ = app;
    buyer
        .create_project(&project_spec(1, 10_000, 10_000_000))
        .expect("project")
}

fn items_of(app: &TestApp, project: i64) -> Vec<item::Model> {
    app.block_on(
        item::Entity::find()
            .filter(item::Column::ProjectId.eq(project))
            .all(app.db()),
    )
    .unwrap()
}

fn links_of(app: &TestApp, sha: &str) -> u64 {
    app.block_on(
        item_link::Entity::find()
            .filter(item_link::Column::Sha256.eq(sha))
            .count(app.db()),
    )
    .unwrap()
}

/// The store checks, shared by the local and the S3 runs.
fn check_upload_dedup_and_sniffing(app: &TestApp) {
    let (_, token, _) = user(app, "uploader", &[Role::Contributor]);
    let (_, other_token, _) = user(app, "other", &[Role::Contributor]);
    let http = Http::new(app, &token);
    let bytes = png(64, 32, "the same bytes");
    // The client claims text; the bytes say PNG.
    let first = http.upload(&bytes, "text/plain", "");
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let a = first.json();
    assert_eq!(a["sha256"], sha_hex(&bytes));
    assert_eq!(a["size"], bytes.len());
    assert_eq!(a["media_type"], "image/png");
    let again = http.upload(&bytes, "image/png", "");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["sha256"], a["sha256"]);
    let by_other = Http::new(app, &other_token).upload(&bytes, "application/octet-stream", "");
    assert_eq!(by_other.status, 200);
    let objects: Vec<String> = store_keys(app)
        .into_iter()
        .filter(|k| k.contains(&sha_hex(&bytes)))
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        store_keys(app).iter().all(|k| !k.contains("tmp/")),
        "{:?}",
        store_keys(app)
    );
    assert_eq!(artifact_rows(app), 1);
    assert_eq!(uploader_rows(app), 2, "both uploaders may read their file");

    // Text that claims to be an image is stored as what it is.
    let text = b"not an image at all, just words";
    let t = http.upload(text, "image/png", "");
    assert_eq!(t.json()["media_type"], "text/plain");
    let got = http.get(&sha_hex(text), &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "text/plain");
    assert_eq!(got.body, text);
}

fn check_ranges_and_etags(app: &TestApp) {
    let (_, token, _) = user(app, "ranger", &[Role::Contributor]);
    let http = Http::new(app, &token);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let sha = http.upload(&bytes, "application/octet-stream", "").json()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let full = http.get(&sha, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, bytes);
    assert_eq!(full.header("etag"), format!("\"{sha}\""));
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert_eq!(full.header("content-type"), "application/octet-stream");

    // Other people's bytes never run as a page of this site: a sandbox
    // policy always, and documents download instead of rendering.
    assert!(
        full.header("content-security-policy")
            .starts_with("sandbox")
    );
    assert!(full.header("content-disposition").starts_with("attachment"));
    let page = http.upload(
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        "image/png",
        "",
    );
    let page_sha = page.json()["sha256"].as_str().unwrap().to_owned();
    let served = http.get(&page_sha, &[]);
    assert_eq!(served.header("content-type"), "text/html");
    assert!(
        served
            .header("content-disposition")
            .starts_with("attachment")
    );
    assert!(served.header("content-security-policy").contains("sandbox"));

    let cached = http.get(&sha, &[("if-none-match", &format!("\"{sha}\""))]);
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    let part = http.get(&sha, &[("range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), "bytes 10-19/1000");
    assert_eq!(part.body, bytes[10..20]);
    let tail = http.get(&sha, &[("range", "bytes=-5")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, bytes[995..]);

    let bad = http.get(&sha, &[("range", "bytes=1000-")]);
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), "bytes */1000");
    assert_eq!(
        bad.json()["type"],
        "urn:sahel:problem:range-not-satisfiable"
    );
}

fn check_refusals_leave_nothing(app: &TestApp) {
    // The app runs with max_artifact_bytes = 4096.
    let (_, token, buyer) = user(app, "limited", &[Role::Buyer]);
    let http = Http::new(app, &token);
    let rows_before = artifact_rows(app);
    let keys_before = store_keys(app);
    let big = vec![7u8; 20_000];
    let r = http.upload(&big, "application/octet-stream", "");
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["type"], "urn:sahel:problem:artifact-too-large");

    // A bounty that accepts only images refuses text, whatever it claims.
    let p = draft(app, &buyer);
    buyer
        .set_artifact_limits(
            p.id,
            &ArtifactLimits {
                max_bytes: Some(2000),
                accept: Some(vec!["image/*".into()]),
            },
        )
        .unwrap();
    let r = http.upload(b"plain words", "image/png", &format!("?project={}", p.id));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["type"],
        "urn:sahel:problem:media-type-not-accepted"
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("text/plain"));
    let r = http.upload(
        &png(1, 1, &"x".repeat(3000)),
        "image/png",
        &format!("?project={}", p.id),
    );
    assert_eq!(r.status, 413);
    assert_eq!(artifact_rows(app), rows_before);
    assert_eq!(
        store_keys(app),
        keys_before,
        "a refused upload left an object"
    );
}

fn spawn_limited() -> TestApp {
    TestApp::spawn(|c| c.max_artifact_bytes = 4096)
}

#[test]
fn uploading_the_same_bytes_twice_stores_one_object_and_one_row_typed_by_its_bytes() {
    let app = spawn_app();
    check_upload_dedup_and_sniffing(&app);
    let files: Vec<String> = files_on_disk(&app)
        .into_iter()
        .filter(|f| f.contains("/sha256/"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn downloads_stream_with_etag_ranges_and_not_modified() {
    let app = spawn_app();
    check_ranges_and_etags(&app);
}

#[test]
fn refused_uploads_leave_no_object_no_staging_file_and_no_row() {
    let app = spawn_limited();
    check_refusals_leave_nothing(&app);
    assert!(files_on_disk(&app).is_empty(), "{:?}", files_on_disk(&app));
}

#[test]
fn only_the_uploader_the_buyer_and_leaseholders_can_read_an_artifact() {
    let app = spawn_app();
    let (buyer_id, buyer_token, buyer) = user(&app, "buyer", &[Role::Buyer]);
    app.deposit(buyer_id, sahel_protocol::Micros::from_tokens(100).unwrap());
    let (_, worker_token, worker) = user(&app, "worker", &[Role::Contributor]);
    let (_, stranger_token, _) = user(&app, "stranger", &[Role::Contributor, Role::Buyer]);
    let img = png(8, 8, "private photo");
    let sha = sha_hex(&img);
    assert_eq!(buyer.upload_artifact(&img, None).unwrap().sha256, sha);

    // Someone else's upload cannot be referenced by hash.
    let theirs = png(9, 9, "stranger's photo");
    Http::new(&app, &stranger_token).upload(&theirs, "image/png", "");
    let p = buyer
        .create_project(&project_spec(1, 10_000, 10_000))
        .unwrap();
    let bad = format!("{{\"text\": \"a\", \"image\": \"{}\"}}\n", sha_hex(&theirs));
    assert_problem(
        buyer.import_items(p.id, "jsonl", bad.as_bytes()),
        422,
        "unknown-artifact",
    );
    let unknown = format!("{{\"text\": \"a\", \"image\": \"{}\"}}\n", "0".repeat(64));
    assert_problem(
        buyer.import_items(p.id, "jsonl", unknown.as_bytes()),
        422,
        "unknown-artifact",
    );
    assert!(items_of(&app, p.id).is_empty());

    let line = format!("{{\"text\": \"what is this?\", \"image\": \"{sha}\"}}\n");
    buyer.import_items(p.id, "jsonl", line.as_bytes()).unwrap();
    assert_eq!(links_of(&app, &sha), 1);
    buyer.fund(p.id, "fund").unwrap();

    let as_worker = Http::new(&app, &worker_token);
    let as_stranger = Http::new(&app, &stranger_token);
    let as_buyer = Http::new(&app, &buyer_token);
    assert_eq!(as_buyer.get(&sha, &[]).status, 200);
    let hidden = as_worker.get(&sha, &[]);
    assert_eq!(hidden.status, 404, "no lease yet");
    assert_eq!(
        hidden.json()["type"],
        "urn:sahel:problem:artifact-not-found"
    );
    // Not existing and not allowed look the same.
    let nothing = as_worker.get(&"f".repeat(64), &[]);
    assert_eq!(
        (nothing.status, nothing.json()["type"].clone()),
        (404, hidden.json()["type"].clone())
    );

    let tasks = worker.lease(p.id, 1).unwrap();
    assert_eq!(tasks.len(), 1);
    let seen = as_worker.get(&sha, &[]);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body, img);
    assert_eq!(as_stranger.get(&sha, &[]).status, 404);
    worker.release(tasks[0].lease_id).unwrap();
    assert_eq!(as_worker.get(&sha, &[]).status, 404, "the lease ended");
    assert_eq!(
        anon(&app)
            .raw("GET", &format!("/api/v1/artifacts/{sha}"), None, "")
            .unwrap()
            .status,
        401
    );
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

fn multipart_of(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sahel-test-boundary-7d1e";
    let mut body = Vec::new();
    for (name, bytes) in files {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn data_by_name(app: &TestApp, project: i64) -> std::collections::BTreeMap<String, Value> {
    items_of(app, project)
        .into_iter()
        .map(|i| {
            let v: Value = serde_json::from_str(&i.data).unwrap();
            (v["name"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[test]
fn a_zip_a_tar_or_multipart_files_become_items_with_image_dimensions() {
    let app = spawn_app();
    let (_, _, buyer) = user(&app, "importer", &[Role::Buyer]);
    let (cat, dog, clip) = (png(640, 480, "cat"), png(32, 16, "dog"), wav("clip"));
    let archive = zip_of(&[
        ("photos/cat.png", &cat),
        ("photos/dog.png", &dog),
        ("clip.wav", &clip),
        ("notes.txt", b"a note"),
        ("truncated.png", b"\x89PNG\r\n\x1a\n"),
        ("__MACOSX/photos/._cat.png", b"junk"),
    ]);
    let p = draft(&app, &buyer);
    let r = buyer
        .import_files(p.id, &archive, "application/zip")
        .unwrap();
    assert_eq!(r.imported, 5);
    let items = data_by_name(&app, p.id);
    assert_eq!(
        items["photos/cat.png"],
        json!({"image": sha_hex(&cat), "width": 640, "height": 480, "name": "photos/cat.png"})
    );
    assert_eq!(items["photos/dog.png"]["width"], 32);
    assert_eq!(items["photos/dog.png"]["height"], 16);
    assert_eq!(
        items["clip.wav"],
        json!({"audio": sha_hex(&clip), "name": "clip.wav"})
    );
    assert_eq!(
        items["notes.txt"],
        json!({"file": sha_hex(b"a note"), "name": "notes.txt"})
    );
    // An image whose size cannot be read is still an image item.
    assert_eq!(
        items["truncated.png"],
        json!({"image": sha_hex(b"\x89PNG\r\n\x1a\n"), "name": "truncated.png"})
    );
    assert_eq!(buyer.project(p.id).unwrap().item_count, 5);
    for sha in [sha_hex(&cat), sha_hex(&dog), sha_hex(&clip)] {
        assert_eq!(links_of(&app, &sha), 1);
    }

    let p2 = draft(&app, &buyer);
    let bird = png(100, 200, "bird");
    let r = buyer
        .import_files(
            p2.id,
            &tar_of(&[("./bird.png", &bird), ("cat.png", &cat)]),
            "application/x-tar",
        )
        .unwrap();
    assert_eq!(r.imported, 2);
    assert_eq!(data_by_name(&app, p2.id)["bird.png"]["height"], 200);

    let p3 = draft(&app, &buyer);
    let (ct, body) = multipart_of(&[("a.png", &png(3, 4, "a")), ("b.wav", &wav("b"))]);
    assert_eq!(buyer.import_files(p3.id, &body, &ct).unwrap().imported, 2);
    let items = data_by_name(&app, p3.id);
    assert_eq!(items["a.png"]["width"], 3);
    assert!(items["b.wav"]["audio"].is_string());
    // The same cat in two bounties is stored once.
    assert_eq!(
        store_keys(&app)
            .iter()
            .filter(|k| k.ends_with(&sha_hex(&cat)))
            .count(),
        1
    );
    assert_eq!(links_of(&app, &sha_hex(&cat)), 2);
}

#[test]
fn a_refused_import_leaves_no_items_no_rows_and_no_objects() {
    let app = spawn_limited();
    let (_, _, buyer) = user(&app, "refused", &[Role::Buyer]);
    let p = draft(&app, &buyer);
    let small = png(2, 2, "small");
    let big = vec![1u8; 10_000];
    let r = buyer.import_files(
        p.id,
        &zip_of(&[("a.png", &small), ("big.bin", &big)]),
        "application/zip",
    );
    assert_problem(r, 413, "artifact-too-large");
    buyer
        .set_artifact_limits(
            p.id,
            &ArtifactLimits {
                max_bytes: None,
                accept: Some(vec!["image/png".into()]),
            },
        )
        .unwrap();
    let r = buyer.import_files(
        p.id,
        &tar_of(&[("a.png", &small), ("n.txt", b"words")]),
        "application/x-tar",
    );
    assert_problem(r, 422, "media-type-not-accepted");
    assert_problem(
        buyer.import_files(p.id, b"neither zip nor tar", "application/octet-stream"),
        422,
        "not-an-archive",
    );
    assert!(items_of(&app, p.id).is_empty());
    assert_eq!(artifact_rows(&app), 0);
    assert_eq!(uploader_rows(&app), 0);
    assert!(store_keys(&app).is_empty(), "{:?}", store_keys(&app));
    assert!(files_on_disk(&app).is_empty(), "{:?}", files_on_disk(&app));
    let tmp = app.config.data_dir.join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn items_come_from_an_allowed_store_prefix_and_nowhere_else() {
    let app = spawn_app();
    let (_, _, buyer) = user(&app, "prefixer", &[Role::Buyer]);
    let dir = app.config.imports_dir().join("batch-1");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("one.png"), png(5, 6, "one")).unwrap();
    std::fs::write(dir.join("sub/two.wav"), wav("two")).unwrap();
    std::fs::write(dir.join(".hidden"), b"skip me").unwrap();
    let p = draft(&app, &buyer);
    let url = format!("file://{}/", std::fs::canonicalize(&dir).unwrap().display());
    let r = buyer.import_from_prefix(p.id, &url).unwrap();
    assert_eq!(r.imported, 2);
    let items = data_by_name(&app, p.id);
    assert_eq!(items["one.png"]["width"], 5);
    assert_eq!(items["sub/two.wav"]["audio"], sha_hex(&wav("two")));

    // The data directory (database, server key) is not an import source.
    let p2 = draft(&app, &buyer);
    let outside = format!(
        "file://{}/",
        std::fs::canonicalize(&app.config.data_dir)
            .unwrap()
            .display()
    );
    assert_problem(
        buyer.import_from_prefix(p2.id, &outside),
        403,
        "import-url-not-allowed",
    );
    let climb = format!("{url}../../");
    assert_problem(
        buyer.import_from_prefix(p2.id, &climb),
        403,
        "import-url-not-allowed",
    );
    assert_problem(
        buyer.import_from_prefix(p2.id, "s3://somebody-elses-bucket/data"),
        403,
        "import-url-not-allowed",
    );
    assert!(items_of(&app, p2.id).is_empty());
}

/// The same store checks against a real S3 API (moto in CI):
/// `SAHEL_TEST_S3_URL=s3://bucket` with `AWS_ENDPOINT_URL`,
/// `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_REGION` set.
#[test]
fn the_store_behaves_the_same_on_s3() {
    let Some(base) = std::env::var("SAHEL_TEST_S3_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("SAHEL_TEST_REQUIRE_S3").as_deref() != Ok("1"),
            "SAHEL_TEST_REQUIRE_S3=1 but SAHEL_TEST_S3_URL is not set"
        );
        eprintln!("skipped: set SAHEL_TEST_S3_URL (and AWS_*) to run the store tests on S3");
        return;
    };
    let url = |app_prefix: &str| format!("{}/{app_prefix}", base.trim_end_matches('/'));
    let prefix = format!("test-{}", sahel_server::accounts::random_hex(6));
    let app = TestApp::spawn(|c| c.artifacts_url = Some(url(&prefix)));
    check_upload_dedup_and_sniffing(&app);
    check_ranges_and_etags(&app);
    assert!(files_on_disk(&app).is_empty(), "S3 mode wrote local files");
    let prefix = format!("test-{}", sahel_server::accounts::random_hex(6));
    let app = TestApp::spawn(|c| {
        c.artifacts_url = Some(url(&prefix));
        c.max_artifact_bytes = 4096;
    });
    check_refusals_leave_nothing(&app);
}

/// File-collection answers (`{"artifact": sha}`) link their upload; the
/// submit path calls `link_answer` in its transaction. Driven directly
/// here on a real answer row, since file collection is another branch's
/// task type.
#[test]
fn an_answers_upload_must_be_its_authors_and_becomes_readable_by_the_buyer() {
    let app = spawn_app();
    let (buyer, p) = funded_project(&app, 1, 1);
    let (worker_id, worker_token, worker) = user(&app, "recorder", &[Role::Contributor]);
    let (_, stranger_token, _) = user(&app, "bystander", &[Role::Contributor]);
    let t = &worker.lease(p.id, 1).unwrap()[0];
    let submitted = worker.submit(&answer(t, &truth(t))).unwrap();
    let mine = wav("my recording");
    let theirs = wav("their recording");
    Http::new(&app, &worker_token).upload(&mine, "audio/wav", "");
    Http::new(&app, &stranger_token).upload(&theirs, "audio/wav", "");
    let link = |sha: &str| {
        app.block_on(sahel_server::artifacts::link_answer(
            app.db(),
            submitted.id,
            worker_id,
            &json!({ "artifact": sha }),
        ))
    };
    match link(&sha_hex(&theirs)) {
        Err(sahel_server::error::Error::Client(c)) => assert_eq!(c.code, "unknown-artifact"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    link(&sha_hex(&mine)).unwrap();
    let r = buyer
        .raw(
            "GET",
            &format!("/api/v1/artifacts/{}", sha_hex(&mine)),
            None,
            "",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, mine);
    assert_eq!(r.content_type, "audio/x-wav");
    assert_eq!(
        Http::new(&app, &stranger_token)
            .get(&sha_hex(&mine), &[])
            .status,
        404
    );
    assert_eq!(
        buyer
            .raw(
                "GET",
                &format!("/api/v1/artifacts/{}", sha_hex(&theirs)),
                None,
                ""
            )
            .unwrap()
            .status,
        404
    );
}

#[test]
fn temporary_uploads_left_by_a_crash_are_swept_and_stored_files_are_not() {
    let app = spawn_app();
    let (_, token, _) = user(&app, "sweeper", &[Role::Contributor]);
    let kept = b"a stored file".to_vec();
    Http::new(&app, &token).upload(&kept, "text/plain", "");
    let tmp = app.config.artifacts_dir().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("leftover"), b"half an upload").unwrap();
    let young = app
        .block_on(
            app.state
                .artifacts
                .sweep_temporary(std::time::Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(young, 0, "a recent upload may still be running");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let swept = app
        .block_on(
            app.state
                .artifacts
                .sweep_temporary(std::time::Duration::ZERO),
        )
        .unwrap();
    assert_eq!(swept, 1, "{:?}", store_keys(&app));
    assert!(!tmp.join("leftover").exists());
    assert_eq!(store_keys(&app).len(), 1);
    assert_eq!(Http::new(&app, &token).get(&sha_hex(&kept), &[]).body, kept);
}
