//! The web UI over plain HTTP: sessions, CSRF, access to pages, escaping,
//! and the form fallbacks. The browser tests (`tests/browser/`) drive the
//! same pages in Chromium.

use std::cell::RefCell;
use std::collections::BTreeMap;

use sahel_protocol::Micros;
use sahel_protocol::api::{ProjectStatus, Role};
use sahel_server::projects::entity::project;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::helpers::*;

/// A cookie-keeping HTTP client that does not follow redirects, so tests
/// see every 303 and every Set-Cookie.
struct Browser {
    base: String,
    agent: ureq::Agent,
    cookies: RefCell<BTreeMap<String, String>>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// A hidden or text input's value by name.
    fn input(&self, name: &str) -> String {
        let pat = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&pat)
            .unwrap_or_else(|| panic!("no input {name}"));
        let rest = &self.body[at + pat.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.address.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            cookies: RefCell::new(BTreeMap::new()),
        }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.borrow().get(name).cloned()
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("accept", "text/html");
        let jar = self
            .cookies
            .borrow()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !jar.is_empty() {
            req = req.header("cookie", jar);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut res = self
            .agent
            .run(req.body(body).unwrap())
            .expect("the server answers");
        let set_cookies: Vec<String> = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            let removed = v.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0");
            let mut jar = self.cookies.borrow_mut();
            if removed {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let content_type = header("content-type").unwrap_or_default();
        let headers = res
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Page {
            status: res.status().as_u16(),
            location,
            set_cookies,
            content_type,
            headers,
            body: res.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    fn get(&self, path: &str) -> Page {
        self.request("GET", path, None, Vec::new(), &[])
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.request(
            "POST",
            path,
            Some("application/x-www-form-urlencoded"),
            form_encode(fields).into_bytes(),
            &[],
        )
    }

    fn json(&self, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Page {
        self.request(
            method,
            path,
            Some("application/json"),
            body.as_bytes().to_vec(),
            headers,
        )
    }

    /// Signs up through the form and keeps the session.
    fn sign_up(app: &TestApp, name: &str, roles: &[Role]) -> (Browser, i64) {
        let b = Browser::new(app);
        let csrf = b.get("/signup").csrf();
        let email = format!("{name}@web.sahel");
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("display_name", name),
            ("password", "correct horse battery"),
        ];
        if roles.contains(&Role::Contributor) {
            fields.push(("contributor", "on"));
        }
        if roles.contains(&Role::Buyer) {
            fields.push(("buyer", "on"));
        }
        let res = b.post("/signup", &fields);
        assert_eq!(res.status, 303, "{}", res.body);
        let id = app
            .block_on(sahel_server::accounts::find_by_email(app.db(), &email))
            .unwrap()
            .unwrap()
            .id;
        (b, id)
    }
}

fn project_count(app: &TestApp) -> u64 {
    app.block_on(project::Entity::find().count(app.db()))
        .unwrap()
}

/// A buyer (signed in through the web) with a funded bounty of `items`.
fn web_bounty(app: &TestApp, instructions: &str, items: &str) -> (Browser, i64, i64) {
    let (b, buyer_id) = Browser::sign_up(app, "buyer", &[Role::Buyer]);
    app.deposit(buyer_id, Micros::from_tokens(100).unwrap());
    let csrf = b.get("/projects/new").csrf();
    let res = b.post(
        "/projects/new",
        &[
            ("csrf", &csrf),
            ("title", "Sentiment <b>bold</b>"),
            ("task_type", "classification"),
            ("classes", "positive\nnegative\n<i>neutral</i>"),
            ("instructions", instructions),
            ("overlap", "1"),
            ("reward", "0.5"),
            ("budget", "10"),
            ("items", "3"),
        ],
    );
    assert_eq!(res.status, 303, "{}", res.body);
    let loc = res.location.unwrap();
    let id: i64 = loc.trim_start_matches("/projects/").parse().unwrap();
    let page = b.get(&loc);
    let imported = import_text(&b, id, &page.csrf(), items);
    assert_eq!(imported.status, 303, "{}", imported.body);
    let page = b.get(&loc);
    let res = b.post(
        &format!("/projects/{id}/fund"),
        &[
            ("csrf", &page.csrf()),
            ("idempotency_key", &page.input("idempotency_key")),
        ],
    );
    assert_eq!(res.status, 303, "{}", res.body);
    (b, buyer_id, id)
}

fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----sahelTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn import_text(b: &Browser, id: i64, csrf: &str, text: &str) -> Page {
    let (ct, body) = multipart(&[
        ("csrf", None, csrf.as_bytes()),
        ("file", Some(""), b""),
        ("text", None, text.as_bytes()),
        ("format", None, b"auto"),
    ]);
    b.request(
        "POST",
        &format!("/projects/{id}/import"),
        Some(&ct),
        body,
        &[],
    )
}

#[test]
fn signing_up_in_the_browser_starts_a_session_with_a_safe_cookie() {
    let app = spawn_app();
    let (b, _) = Browser::sign_up(&app, "ada", &[Role::Contributor]);
    let home = b.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Welcome, ada"), "{}", home.body);

    let fresh = Browser::new(&app);
    let csrf = fresh.get("/login").csrf();
    let res = fresh.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("email", "ada@web.sahel"),
            ("password", "correct horse battery"),
            ("next", "/earnings"),
        ],
    );
    assert_eq!(res.status, 303);
    assert_eq!(res.location.as_deref(), Some("/earnings"));
    let cookie = res
        .set_cookies
        .iter()
        .find(|c| c.starts_with("sahel_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let proxied = Browser::new(&app);
    let csrf = proxied.get("/login").csrf();
    let res = proxied.request(
        "POST",
        "/login",
        Some("application/x-www-form-urlencoded"),
        form_encode(&[
            ("csrf", &csrf),
            ("email", "ada@web.sahel"),
            ("password", "correct horse battery"),
        ])
        .into_bytes(),
        &[("x-forwarded-proto", "https")],
    );
    assert_eq!(res.status, 303);
    assert!(
        res.set_cookies
            .iter()
            .any(|c| c.starts_with("sahel_session=") && c.contains("Secure")),
        "{:?}",
        res.set_cookies
    );

    // A wrong password is shown on the form, not as a session.
    let csrf = fresh.get("/login").csrf();
    let res = fresh.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("email", "ada@web.sahel"),
            ("password", "wrong-password"),
        ],
    );
    assert_eq!(res.status, 401);
    assert!(res.body.contains("unknown email or wrong password"));
}

#[test]
fn forms_without_their_csrf_token_are_refused_with_a_page() {
    let app = spawn_app();
    // Anonymous forms: sign-up without the token creates nobody.
    let anon = Browser::new(&app);
    anon.get("/signup");
    let res = anon.post(
        "/signup",
        &[
            ("email", "mallory@web.sahel"),
            ("display_name", "m"),
            ("password", "correct horse battery"),
            ("contributor", "on"),
        ],
    );
    assert_eq!(res.status, 403);
    assert!(res.is_html());
    assert!(res.body.contains("This form has expired"), "{}", res.body);
    assert!(res.body.contains("csrf-missing"));
    assert!(
        app.block_on(sahel_server::accounts::find_by_email(
            app.db(),
            "mallory@web.sahel"
        ))
        .unwrap()
        .is_none()
    );
    // A token from another browser does not fit this one.
    let other = Browser::new(&app).get("/login").csrf();
    let res = anon.post(
        "/login",
        &[("csrf", &other), ("email", "x@y.z"), ("password", "p")],
    );
    assert_eq!(res.status, 403);
    assert!(res.body.contains("csrf-mismatch"));

    // Signed-in forms: no bounty is created, no log-out happens.
    let (b, _) = Browser::sign_up(&app, "buyer", &[Role::Buyer]);
    let fields = [
        ("title", "Forged"),
        ("task_type", "classification"),
        ("classes", "a\nb"),
        ("overlap", "1"),
        ("reward", "1"),
        ("budget", "1"),
    ];
    let res = b.post("/projects/new", &fields);
    assert_eq!(res.status, 403);
    assert!(res.body.contains("This form has expired"));
    let mut forged = fields.to_vec();
    forged.push(("csrf", &other));
    assert_eq!(b.post("/projects/new", &forged).status, 403);
    assert_eq!(project_count(&app), 0);
    assert_eq!(b.post("/logout", &[]).status, 403);
    assert_eq!(b.get("/projects").status, 200, "still signed in");

    // With the token, the same form works and log-out ends the session.
    let csrf = b.get("/projects/new").csrf();
    let mut good = fields.to_vec();
    good.push(("csrf", &csrf));
    assert_eq!(b.post("/projects/new", &good).status, 303);
    assert_eq!(project_count(&app), 1);
    let old = b.cookie("sahel_session").unwrap();
    let res = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(res.status, 303);
    assert!(b.cookie("sahel_session").is_none());
    // The old cookie is dead for pages and for the API.
    let replay = Browser::new(&app);
    replay
        .cookies
        .borrow_mut()
        .insert("sahel_session".into(), old);
    assert_eq!(replay.get("/projects").status, 303);
    assert_eq!(replay.json("GET", "/api/v1/me", "", &[]).status, 401);
}

#[test]
fn the_json_api_accepts_the_session_cookie_but_writes_need_the_csrf_header() {
    let app = spawn_app();
    let (_, _, id) = web_bounty(
        &app,
        "Read it.",
        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n",
    );
    let (c, cid) = Browser::sign_up(&app, "cora", &[Role::Contributor]);
    let me = c.json("GET", "/api/v1/me", "", &[]);
    assert_eq!(me.status, 200, "reads need no token: {}", me.body);
    assert!(me.body.contains(&format!("\"id\":{cid}")));

    let lease = format!("/api/v1/projects/{id}/leases");
    let res = c.json("POST", &lease, "{\"count\": 1}", &[]);
    assert_eq!(res.status, 403);
    assert_eq!(res.content_type, "application/problem+json");
    assert!(
        res.body.contains("urn:sahel:problem:csrf-missing"),
        "{}",
        res.body
    );
    let res = c.json(
        "POST",
        &lease,
        "{\"count\": 1}",
        &[("x-csrf-token", "0000")],
    );
    assert_eq!(res.status, 403);
    assert!(res.body.contains("csrf-mismatch"));

    let token = c.get(&format!("/bounties/{id}")).csrf();
    let res = c.json(
        "POST",
        &lease,
        "{\"count\": 1}",
        &[("x-csrf-token", &token)],
    );
    assert_eq!(res.status, 200, "{}", res.body);
    let tasks: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    let lease_id = tasks["tasks"][0]["lease_id"].as_i64().unwrap();
    let answer = format!(
        "{{\"lease_id\": {lease_id}, \"answer\": {{\"label\": \"positive\"}}, \"idempotency_key\": \"web-{lease_id}\"}}"
    );
    assert_eq!(
        c.json("POST", "/api/v1/submissions", &answer, &[]).status,
        403
    );
    let res = c.json(
        "POST",
        "/api/v1/submissions",
        &answer,
        &[("x-csrf-token", &token)],
    );
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(answers_in_db(&app, id), 1);
    assert_eq!(
        c.json("DELETE", "/api/v1/leases/1", "", &[]).status,
        403,
        "DELETE is a write too"
    );
}

#[test]
fn a_contributor_cannot_open_another_users_earnings_or_a_buyers_pages() {
    let app = spawn_app();
    let (b, buyer_id, id) = web_bounty(&app, "Read it.", "{\"text\": \"one\"}\n");
    let (c, cid) = Browser::sign_up(&app, "cora", &[Role::Contributor]);

    let res = c.get(&format!("/users/{buyer_id}/earnings"));
    assert_eq!(res.status, 403);
    assert!(res.body.contains("These earnings are not yours"));
    assert!(
        !res.body.contains("100.000000"),
        "nothing of the buyer's leaks"
    );
    assert_eq!(c.get(&format!("/users/{cid}/earnings")).status, 200);
    assert_eq!(c.get("/earnings").status, 200);
    assert_eq!(b.get(&format!("/users/{cid}/earnings")).status, 403);

    for page in ["", "/progress", "/items"] {
        let res = c.get(&format!("/projects/{id}{page}"));
        assert_eq!(res.status, 403, "/projects/{id}{page}");
        assert!(res.body.contains("This bounty belongs to someone else"));
    }
    assert_eq!(
        c.get("/projects").status,
        403,
        "the buyer list needs the buyer role"
    );
    assert_eq!(c.get("/projects/new").status, 403);
    // Drafts of others do not even exist for a contributor.
    let csrf = b.get("/projects/new").csrf();
    let res = b.post(
        "/projects/new",
        &[
            ("csrf", &csrf),
            ("title", "Secret draft"),
            ("task_type", "classification"),
            ("classes", "a\nb"),
            ("overlap", "1"),
            ("reward", "1"),
            ("budget", "1"),
        ],
    );
    let draft = res.location.unwrap();
    assert_eq!(c.get(&draft).status, 404);
    let draft_id = draft.trim_start_matches("/projects/");
    assert_eq!(c.get(&format!("/bounties/{draft_id}")).status, 404);
    // A buyer's own pages open.
    for page in ["", "/progress", "/items"] {
        assert_eq!(b.get(&format!("/projects/{id}{page}")).status, 200);
    }
    // Without a session, pages send the visitor to log in and back.
    let anon = Browser::new(&app);
    let res = anon.get(&format!("/projects/{id}/progress"));
    assert_eq!(res.status, 303);
    assert_eq!(
        res.location.as_deref(),
        Some(format!("/login?next=/projects/{id}/progress").as_str())
    );
}

#[test]
fn html_in_items_instructions_and_classes_is_shown_as_text() {
    let app = spawn_app();
    let evil = "<script>window.pwned=1</script><img src=x onerror=alert(1)>";
    let item = format!("{{\"text\": \"{}\"}}\n", evil.replace('"', "\\\""));
    let (b, _, id) = web_bounty(&app, &format!("Beware {evil}"), &item);
    let (c, _) = Browser::sign_up(&app, "cora", &[Role::Contributor]);
    let escaped =
        "&#60;script&#62;window.pwned=1&#60;/script&#62;&#60;img src=x onerror=alert(1)&#62;";
    for (who, page) in [
        (&c, format!("/bounties/{id}")),
        (&c, format!("/bounties/{id}/work")),
        (&c, "/bounties".to_owned()),
        (&b, format!("/projects/{id}")),
    ] {
        let res = who.get(&page);
        assert_eq!(res.status, 200, "{page}");
        assert!(!res.body.contains("<script>window"), "{page}: {}", res.body);
        assert!(!res.body.contains("<img src=x"), "{page}");
        assert!(!res.body.contains("<i>neutral</i>"), "{page}");
        assert!(!res.body.contains("<b>bold</b>"), "{page}");
        assert!(
            res.body.contains("Sentiment &#60;b&#62;bold&#60;/b&#62;"),
            "{page}"
        );
    }
    let work = c.get(&format!("/bounties/{id}/work"));
    assert!(work.body.contains(escaped), "{}", work.body);
    assert!(work.body.contains("&#60;i&#62;neutral&#60;/i&#62;"));
    // Answered, the item shows escaped among the resolved items too.
    let res = c.post(
        &format!("/bounties/{id}/work"),
        &[
            ("csrf", &work.csrf()),
            ("lease_id", &work.input("lease_id")),
            ("label", "<i>neutral</i>"),
        ],
    );
    assert_eq!(res.status, 303);
    let items = b.get(&format!("/projects/{id}/items"));
    assert!(items.body.contains(escaped), "{}", items.body);
    assert!(!items.body.contains("<script>window"));
    // Should anything slip through, the page forbids inline script and
    // every other origin.
    let csp = work.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
}

#[test]
fn labeling_works_without_javascript_and_skip_moves_to_another_item() {
    let app = spawn_app();
    let (buyer, _, id) = web_bounty(
        &app,
        "Read it.",
        "{\"text\": \"first\"}\n{\"text\": \"second\"}\n{\"text\": \"third\"}\n",
    );
    let (c, cid) = Browser::sign_up(&app, "cora", &[Role::Contributor]);
    let work = format!("/bounties/{id}/work");
    let page = c.get(&work);
    assert!(page.body.contains(">first</p>"), "{}", page.body);
    // Reloading resumes the same task instead of leasing another.
    let again = c.get(&work);
    assert_eq!(again.input("lease_id"), page.input("lease_id"));
    // Skip: the next task is another item, and the skipped one is free.
    let res = c.post(
        &format!("/bounties/{id}/skip"),
        &[
            ("csrf", &page.csrf()),
            ("lease_id", &page.input("lease_id")),
        ],
    );
    assert_eq!(res.status, 303);
    let page = c.get(&work);
    assert!(page.body.contains(">second</p>"), "{}", page.body);
    // Answer everything through the form.
    let mut answered = 0;
    for _ in 0..10 {
        let page = c.get(&work);
        if !page.body.contains("id=\"task\"") {
            assert!(
                page.body.contains("This bounty is complete"),
                "{}",
                page.body
            );
            break;
        }
        let res = c.post(
            &work,
            &[
                ("csrf", &page.csrf()),
                ("lease_id", &page.input("lease_id")),
                ("label", "positive"),
            ],
        );
        assert_eq!(res.status, 303, "{}", res.body);
        answered += 1;
    }
    assert_eq!(answered, 3);
    assert_eq!(answers_in_db(&app, id), 3);
    // Overlap 1: every answer is accepted and paid 0.5.
    assert_eq!(balance_of(&app, cid), Micros(1_500_000));
    let earnings = c.get("/earnings");
    assert!(
        earnings.body.contains("id=\"balance\">1.500000<"),
        "{}",
        earnings.body
    );
    // The buyer sees the bounty complete, with both charts and each answer.
    let progress = buyer.get(&format!("/projects/{id}/progress"));
    assert!(
        progress.body.contains("This bounty is complete"),
        "{}",
        progress.body
    );
    assert!(progress.body.contains("3 of 3"));
    assert!(progress.body.contains("3 of 3 items done between"));
    assert!(progress.body.contains("3 answers over "));
    let items = buyer.get(&format!("/projects/{id}/items"));
    assert!(items.body.contains("3 items finished"));
    assert_eq!(items.body.matches("class=\"resolved-item\"").count(), 3);
    // Settled items become the bounty's worked examples, first ones first.
    let bounty = c.get(&format!("/bounties/{id}"));
    assert_eq!(
        bounty
            .body
            .matches("class=\"example-answer\">positive<")
            .count(),
        3,
        "{}",
        bounty.body
    );
    assert!(bounty.body.find(">first</p>") < bounty.body.find(">second</p>"));
    assert_ledger_clean(&app);
    // No class picked: a page says so, nothing is recorded.
    let res = c.post(&work, &[("csrf", &page_csrf(&c)), ("lease_id", "1")]);
    assert_eq!(res.status, 422);
    assert!(res.body.contains("Pick a class"));
}

fn page_csrf(b: &Browser) -> String {
    b.get("/earnings").csrf()
}

#[test]
fn the_bounty_form_revalidates_the_cost_and_the_import_reports_bad_lines() {
    let app = spawn_app();
    let (b, buyer_id) = Browser::sign_up(&app, "buyer", &[Role::Buyer]);
    let csrf = b.get("/projects/new").csrf();
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("title", "Cost check"),
        ("task_type", "classification"),
        ("classes", "yes\nno"),
        ("overlap", "3"),
        ("reward", "0.1"),
        ("budget", "2.99"),
        ("items", "10"),
    ];
    let res = b.post("/projects/new", &fields);
    assert_eq!(res.status, 422);
    assert!(
        res.body
            .contains("does not cover overlap 3 x 10 items x reward 0.100000 = 3.000000"),
        "{}",
        res.body
    );
    assert!(
        res.body.contains("value=\"Cost check\""),
        "the form keeps what was typed"
    );
    assert_eq!(project_count(&app), 0);
    // A writing bounty with paid reviews also covers a review of every
    // answer an item may get: 3 x 10 x 0.1 + 2 x 5 x 10 x 0.01 = 4.
    let mut writing = fields.clone();
    writing[1] = ("title", "Paid reviews");
    writing[2] = ("task_type", "free_text");
    writing[3] = ("classes", "");
    writing[6] = ("budget", "3.999999");
    writing.push(("reviews_per_answer", "2"));
    writing.push(("review_reward", "0.01"));
    let res = b.post("/projects/new", &writing);
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(
        res.body
            .contains("reward 0.100000 + 2 review(s) x 5 answers x 10 items x 0.010000 = 4.000000"),
        "{}",
        res.body
    );
    assert_eq!(project_count(&app), 0);
    writing[6] = ("budget", "4");
    let res = b.post("/projects/new", &writing);
    assert_eq!(res.status, 303, "{}", res.body);
    let p = app
        .block_on(
            sahel_server::projects::entity::project::Entity::find()
                .filter(sahel_server::projects::entity::project::Column::Title.eq("Paid reviews"))
                .one(app.db()),
        )
        .unwrap()
        .expect("the writing bounty");
    assert_eq!((p.review_reward, p.reviews_per_answer), (10_000, 2));
    fields[6] = ("budget", "3");
    let res = b.post("/projects/new", &fields);
    assert_eq!(res.status, 303);
    let loc = res.location.unwrap();
    let id: i64 = loc.trim_start_matches("/projects/").parse().unwrap();

    // One bad line refuses the whole file, with the line named.
    let page = b.get(&loc);
    let (ct, body) = multipart(&[
        ("csrf", None, page.csrf().as_bytes()),
        ("file", Some("items.csv"), b"text\nfine\ntoo,many\n"),
        ("format", None, b"auto"),
    ]);
    let res = b.request(
        "POST",
        &format!("/projects/{id}/import"),
        Some(&ct),
        body,
        &[],
    );
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("The file was not imported"));
    assert!(res.body.contains("Line "), "{}", res.body);
    // Without its token the upload is refused before anything is read.
    let (ct, body) = multipart(&[("file", Some("items.jsonl"), b"{\"text\": \"a\"}\n")]);
    let res = b.request(
        "POST",
        &format!("/projects/{id}/import"),
        Some(&ct),
        body,
        &[],
    );
    assert_eq!(res.status, 403);
    // A good file imports; funding moves the budget to escrow.
    let (ct, body) = multipart(&[
        ("csrf", None, page.csrf().as_bytes()),
        ("file", Some("items.csv"), b"text\nfine\n\"with, comma\"\n"),
    ]);
    let res = b.request(
        "POST",
        &format!("/projects/{id}/import"),
        Some(&ct),
        body,
        &[],
    );
    assert_eq!(res.status, 303, "{}", res.body);
    let page = b.get(res.location.as_deref().unwrap());
    assert!(page.body.contains("Imported 2 items"), "{}", page.body);
    // Funding needs balance: the page says why the button is off.
    assert!(
        page.body.contains("is less than the budget"),
        "{}",
        page.body
    );
    app.deposit(buyer_id, Micros::from_tokens(5).unwrap());
    let page = b.get(&loc);
    let key = page.input("idempotency_key");
    let fund = [("csrf", page.csrf()), ("idempotency_key", key)];
    let fund: Vec<(&str, &str)> = fund.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post(&format!("/projects/{id}/fund"), &fund).status, 303);
    // A double click posts the same key: nothing moves twice.
    assert_eq!(b.post(&format!("/projects/{id}/fund"), &fund).status, 303);
    assert_eq!(balance_of(&app, buyer_id), Micros(2_000_000));
    assert_eq!(escrow_of(&app, id), Micros(3_000_000));
    let p = b.get(&format!("/projects/{id}/progress"));
    assert!(p.body.contains("<svg"), "{}", p.body);
    assert!(p.body.contains("0 of 2"), "{}", p.body);
    assert_eq!(
        app.block_on(sahel_server::projects::get(app.db(), id))
            .unwrap()
            .status(),
        ProjectStatus::Open
    );
    assert_ledger_clean(&app);
}

#[test]
fn unknown_pages_are_html_for_browsers_and_problems_for_api_clients() {
    let app = spawn_app();
    let b = Browser::new(&app);
    let res = b.get("/no/such/page");
    assert_eq!(res.status, 404);
    assert!(res.is_html());
    assert!(res.body.contains("Not found"));
    let res = b.get("/api/v1/no-such-endpoint");
    assert_eq!(
        res.content_type, "application/problem+json",
        "even for a browser"
    );
    let res = anon(&app).raw("GET", "/no/such/page", None, "").unwrap();
    assert_eq!(res.status, 404);
    assert_eq!(res.content_type, "application/problem+json");
    // Static files revalidate by ETag.
    let css = b.get("/static/sahel.css");
    assert_eq!(css.status, 200);
    assert!(css.content_type.starts_with("text/css"));
    assert_eq!(b.get("/static/nope.css").status, 404);
    let etag = css.header("etag").unwrap().to_owned();
    let res = b.request(
        "GET",
        "/static/sahel.css",
        None,
        Vec::new(),
        &[("if-none-match", &etag)],
    );
    assert_eq!(res.status, 304);
}

fn status_of(app: &TestApp, id: i64) -> String {
    app.block_on(sahel_server::projects::get(app.db(), id))
        .unwrap()
        .row
        .status
}

#[test]
fn the_buyer_pauses_resumes_and_closes_from_the_progress_page_and_refusals_change_nothing() {
    let app = spawn_app();
    let (b, buyer_id, id) = web_bounty(
        &app,
        "Read it.",
        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n",
    );
    let (c, _) = Browser::sign_up(&app, "cleo", &[Role::Contributor]);
    let progress = format!("/projects/{id}/progress");
    let page = b.get(&progress);
    assert!(page.body.contains("id=\"pause\""), "{}", page.body);
    let csrf = page.csrf();

    // Without the form's token, or from someone else: a page that says no.
    let res = b.post(&format!("/projects/{id}/pause"), &[]);
    assert_eq!(res.status, 403);
    assert!(res.body.contains("This form has expired"));
    let other = c.get("/bounties").csrf();
    let res = c.post(&format!("/projects/{id}/pause"), &[("csrf", &other)]);
    assert_eq!(res.status, 403);
    assert!(res.body.contains("This bounty belongs to someone else"));
    assert_eq!(status_of(&app, id), "open");

    let res = b.post(&format!("/projects/{id}/pause"), &[("csrf", &csrf)]);
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(
        res.location.as_deref(),
        Some(format!("{progress}?done=paused").as_str())
    );
    assert_eq!(status_of(&app, id), "paused");
    let page = b.get(&format!("{progress}?done=paused"));
    assert!(page.body.contains("id=\"resume\"") && !page.body.contains("id=\"pause\""));
    assert!(page.body.contains("The bounty is paused"));

    // The contributor's labeling page offers nothing, and no lease is made.
    let work = c.get(&format!("/bounties/{id}/work"));
    assert_eq!(work.status, 200);
    assert!(work.body.contains("id=\"paused\""), "{}", work.body);
    assert!(!work.body.contains("id=\"task\""));
    let leases = app
        .block_on(
            sahel_server::queue::entity::lease::Entity::find()
                .filter(sahel_server::queue::entity::lease::Column::ProjectId.eq(id))
                .count(app.db()),
        )
        .unwrap();
    assert_eq!(leases, 0);

    let res = b.post(&format!("/projects/{id}/resume"), &[("csrf", &csrf)]);
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(status_of(&app, id), "open");
    assert!(
        c.get(&format!("/bounties/{id}/work"))
            .body
            .contains("id=\"task\"")
    );

    // Closing needs the ticked box; without it nothing moves.
    let escrow = escrow_of(&app, id);
    assert_eq!(escrow, Micros::from_tokens(10).unwrap());
    let key = b.get(&progress).input("idempotency_key");
    let res = b.post(
        &format!("/projects/{id}/close"),
        &[("csrf", &csrf), ("idempotency_key", &key)],
    );
    assert_eq!(res.status, 422);
    assert!(res.body.contains("Tick the box"), "{}", res.body);
    assert_eq!(status_of(&app, id), "open");
    assert_eq!(escrow_of(&app, id), escrow);
    let res = b.post(
        &format!("/projects/{id}/close"),
        &[
            ("csrf", &csrf),
            ("idempotency_key", &key),
            ("confirm", "on"),
        ],
    );
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(status_of(&app, id), "closed");
    assert_eq!(escrow_of(&app, id), Micros(0));
    assert_eq!(
        balance_of(&app, buyer_id),
        Micros::from_tokens(100).unwrap()
    );
    // A closed bounty cannot be paused: the page says why.
    let res = b.post(&format!("/projects/{id}/pause"), &[("csrf", &csrf)]);
    assert_eq!(res.status, 409);
    assert!(res.body.contains("cannot be paused"), "{}", res.body);
    assert_eq!(status_of(&app, id), "closed");
    assert_ledger_clean(&app);
}

#[test]
fn a_contributor_sets_a_payout_address_and_withdraws_from_the_earnings_page() {
    let app = spawn_app();
    let (c, cid) = Browser::sign_up(&app, "wanda", &[Role::Contributor]);
    app.deposit(cid, Micros::from_tokens(3).unwrap());
    let page = c.get("/earnings");
    assert!(page.body.contains("id=\"no-address\""));
    let csrf = page.csrf();
    let withdrawals = || {
        app.block_on(sahel_server::ledger::payments::withdrawals(app.db(), cid))
            .unwrap()
    };

    // No address yet: refused, nothing locked.
    let res = c.post(
        "/earnings/withdrawals",
        &[("csrf", &csrf), ("amount", "1"), ("idempotency_key", "w0")],
    );
    assert_eq!(res.status, 409);
    assert!(
        res.body.contains("Set a payout address first"),
        "{}",
        res.body
    );
    // A malformed address is refused by name.
    let res = c.post(
        "/earnings/payout-address",
        &[("csrf", &csrf), ("address", "0x1234")],
    );
    assert_eq!(res.status, 422);
    assert!(res.body.contains("invalid-address"), "{}", res.body);
    assert!(
        app.block_on(sahel_server::ledger::payments::payout_address(
            app.db(),
            cid
        ))
        .unwrap()
        .is_none()
    );
    let res = c.post(
        "/earnings/payout-address",
        &[
            ("csrf", &csrf),
            ("address", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
        ],
    );
    assert_eq!(res.status, 303, "{}", res.body);
    let page = c.get(res.location.as_deref().unwrap());
    assert!(page.body.contains("Your payout address is saved."));
    // Shown with its EIP-55 checksum.
    assert!(
        page.body
            .contains("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        "{}",
        page.body
    );

    // A bad amount and an overdraft are refused and lock nothing.
    for (amount, status) in [("lots", 422), ("-1", 422), ("5", 409)] {
        let res = c.post(
            "/earnings/withdrawals",
            &[
                ("csrf", &csrf),
                ("amount", amount),
                ("idempotency_key", amount),
            ],
        );
        assert_eq!(res.status, status, "{amount}: {}", res.body);
    }
    assert!(withdrawals().is_empty());
    assert_eq!(balance_of(&app, cid), Micros::from_tokens(3).unwrap());

    // A withdrawal, posted twice (a double click): locked once.
    let key = c.get("/earnings").input("idempotency_key");
    for _ in 0..2 {
        let res = c.post(
            "/earnings/withdrawals",
            &[
                ("csrf", &csrf),
                ("amount", "1.25"),
                ("idempotency_key", &key),
            ],
        );
        assert_eq!(res.status, 303, "{}", res.body);
    }
    let w = withdrawals();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].amount, Micros(1_250_000));
    assert_eq!(balance_of(&app, cid), Micros(1_750_000));
    let page = c.get("/earnings?done=withdrawal");
    assert!(
        page.body.contains("id=\"locked\">1.250000<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"balance\">1.750000<"));
    assert!(page.body.contains("badge pending"));
    assert!(page.body.contains("Your withdrawal is requested"));
    assert_ledger_clean(&app);
}

#[test]
fn publishing_from_the_form_needs_a_finished_bounty_and_a_valid_price() {
    let app = spawn_app();
    let (b, _, id) = web_bounty(&app, "Read it.", "{\"text\": \"one\"}\n");
    let csrf = b.get(&format!("/projects/{id}")).csrf();
    let datasets = || {
        app.block_on(sahel_server::datasets::entity::dataset::Entity::find().count(app.db()))
            .unwrap()
    };
    let publish = |fields: &[(&str, &str)]| b.post(&format!("/projects/{id}/datasets"), fields);
    let res = publish(&[("csrf", &csrf), ("price_per_export", "1")]);
    assert_eq!(res.status, 409);
    assert!(res.body.contains("completed or closed"), "{}", res.body);
    let res = publish(&[("price_per_export", "1")]);
    assert_eq!(res.status, 403);
    // Label the one item, so the bounty completes.
    let (c, _) = Browser::sign_up(&app, "lena", &[Role::Contributor]);
    let work = c.get(&format!("/bounties/{id}/work"));
    let res = c.post(
        &format!("/bounties/{id}/work"),
        &[
            ("csrf", &work.csrf()),
            ("lease_id", &work.input("lease_id")),
            ("label", "positive"),
        ],
    );
    assert_eq!(res.status, 303);
    assert_eq!(status_of(&app, id), "completed");
    for (fields, code) in [
        (vec![("price_per_export", "cheap")], "invalid-price"),
        (vec![], "invalid-price"),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let res = publish(&f);
        assert_eq!(res.status, 422, "{}", res.body);
        assert!(res.body.contains(code), "{}", res.body);
    }
    assert_eq!(datasets(), 0);
    let res = publish(&[
        ("csrf", &csrf),
        ("title", ""),
        ("price_per_record", "0.01"),
        ("price_per_export", ""),
    ]);
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(
        res.location.as_deref(),
        Some(format!("/projects/{id}?published=1").as_str())
    );
    assert_eq!(datasets(), 1);
    let page = b.get(&format!("/projects/{id}?published=1"));
    assert!(page.body.contains("Published dataset version 1."));
    assert!(page.body.contains("0.010000"));
    // The contributor's earnings list the dataset their answer is in, and
    // the royalties a licensee's read paid them.
    let earnings = c.get("/earnings");
    assert!(earnings.body.contains("id=\"uses\""), "{}", earnings.body);
    assert!(earnings.body.contains("100.00%"));
    let (licensee, token) = app.create_user("licensee@web.sahel", &[Role::Buyer]);
    app.deposit(licensee, Micros::from_tokens(1).unwrap());
    let l = bearer(&app, &token);
    let set = l.datasets().unwrap();
    l.dataset_records(set[0].id, 1, 10, Some("read-1")).unwrap();
    app.block_on(sahel_server::ledger::royalty::run_until_idle(
        &app.state.db,
        100,
    ))
    .unwrap();
    // 0.01 charged: 20% to the buyer, the pool's 0.008 to the only contributor.
    let earnings = c.get("/earnings");
    let uses = &earnings.body[earnings.body.find("id=\"uses\"").unwrap()..];
    assert!(uses.contains("0.008000"), "{uses}");
    assert!(earnings.body.contains("Royalties from dataset"));
    assert_ledger_clean(&app);
}

#[test]
fn the_earnings_history_is_paged_with_the_receipt_of_every_entry_shown() {
    let app = spawn_app();
    let (c, cid) = Browser::sign_up(&app, "paula", &[Role::Contributor]);
    for i in 1..=30 {
        app.deposit(cid, Micros(i * 1_000));
    }
    let rows = |body: &str| body.matches("<a href=\"#receipt-").count();
    let receipts = |body: &str| body.matches("class=\"receipt\" id=\"receipt-").count();
    let first = c.get("/earnings");
    assert_eq!(rows(&first.body), 25);
    assert_eq!(receipts(&first.body), 25);
    assert!(
        first
            .body
            .contains("href=\"/earnings?page=2\" rel=\"next\"")
    );
    // Newest first: the last deposit (0.030000) leads.
    let newest = first.body.find("+0.030000").unwrap();
    assert!(newest < first.body.find("+0.006000").unwrap());
    assert!(!first.body.contains("+0.005000"));
    let second = c.get("/earnings?page=2");
    assert_eq!(rows(&second.body), 5);
    assert_eq!(receipts(&second.body), 5);
    assert!(second.body.contains("+0.001000"));
    assert!(!second.body.contains("rel=\"next\""));
    // Every receipt shown is the database's, signed.
    let all = app
        .block_on(sahel_server::ledger::entity::receipt::Entity::find().all(app.db()))
        .unwrap();
    for r in &all {
        let page = if second.body.contains(&r.hash) {
            &second
        } else {
            &first
        };
        assert!(page.body.contains(&r.hash), "receipt {} is shown", r.seq);
        let sig = r
            .signature
            .as_deref()
            .expect("signed before the page read it");
        assert!(page.body.contains(sig));
    }
    assert_eq!(all.len(), 30);
    assert_eq!(c.get("/earnings?page=9").status, 200);
}
