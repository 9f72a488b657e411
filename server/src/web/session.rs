//! Who is looking at a page, and the CSRF token their forms carry.
//!
//! A signed-in visitor has a session (cookie [`sessions::COOKIE`]) whose
//! CSRF token every form embeds. An anonymous visitor (signing up or
//! logging in) gets a random pre-session token in the `sahel_csrf` cookie
//! (SameSite=Strict) and the same value in the form: another site can
//! neither read the cookie nor make the browser send it, so it cannot post
//! a valid form (which stops "log-in CSRF" into the attacker's account).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest, HttpResponseBuilder};
use sahel_protocol::api::Role;

use super::error::PageError;
use super::{Ctx, NavUser};
use crate::accounts::sessions::{self, Session, constant_time_eq};
use crate::accounts::{AuthUser, random_hex};
use crate::error::Error;
use crate::state::AppState;

/// The anonymous visitor's CSRF cookie.
pub const ANON_COOKIE: &str = "sahel_csrf";

/// Whoever made the request, signed in or not.
pub struct Visitor {
    pub session: Option<Session>,
    anon_csrf: String,
    /// The anonymous token is new: the response must set its cookie.
    anon_new: bool,
    /// The request carried a session cookie that is no longer valid.
    stale_cookie: bool,
    secure: bool,
}

/// Cookies are `Secure` when the request came over TLS (directly or, per
/// `X-Forwarded-Proto`/`Forwarded`, through a proxy), or when configured.
fn is_secure(req: &HttpRequest, st: &AppState) -> bool {
    st.config.secure_cookies || req.connection_info().scheme() == "https"
}

pub fn state(req: &HttpRequest) -> Result<AppState, PageError> {
    req.app_data::<Data<AppState>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("AppState is not registered")).into())
}

impl Visitor {
    async fn from_req(req: HttpRequest) -> Result<Visitor, PageError> {
        let st = state(&req)?;
        let mut stale_cookie = false;
        let session = match req.cookie(sessions::COOKIE) {
            Some(c) => match sessions::authenticate(&st.db.conn, c.value()).await {
                Ok(s) => Some(s),
                Err(Error::Client(_)) => {
                    stale_cookie = true;
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let existing = req
            .cookie(ANON_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        let anon_new = existing.is_none();
        Ok(Visitor {
            session,
            anon_csrf: existing.unwrap_or_else(|| random_hex(32)),
            anon_new,
            stale_cookie,
            secure: is_secure(&req, &st),
        })
    }

    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The token this visitor's forms carry.
    pub fn csrf(&self) -> &str {
        match &self.session {
            Some(s) => &s.csrf_token,
            None => &self.anon_csrf,
        }
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            user: self.session.as_ref().map(|s| {
                let a = s.auth();
                NavUser {
                    id: s.user.id,
                    name: s.user.display_name.clone(),
                    buyer: a.roles.has(Role::Buyer),
                    contributor: a.roles.has(Role::Contributor),
                }
            }),
            csrf: self.csrf().to_owned(),
            bare: false,
        }
    }

    /// Refuses a form that does not carry this visitor's token. An empty
    /// or absent field counts as missing.
    pub fn check_form(&self, given: &str) -> Result<(), PageError> {
        let given = given.trim();
        if given.is_empty() {
            return Err(Error::forbidden(
                "csrf-missing",
                "this form was sent without its security token, so it was refused; reload the page and send it again",
            )
            .into());
        }
        match &self.session {
            Some(s) => s.check_csrf(Some(given)).map_err(PageError::from),
            None if !self.anon_new && constant_time_eq(self.anon_csrf.as_bytes(), given.as_bytes()) => {
                Ok(())
            }
            None => Err(Error::forbidden(
                "csrf-mismatch",
                "this form's security token does not match your browser's; reload the page and send it again",
            )
            .into()),
        }
    }

    /// Adds the cookies the response must carry: the anonymous token when
    /// it is new, the removal of a dead session cookie.
    pub fn set_cookies(&self, res: &mut HttpResponseBuilder) {
        if self.session.is_none() && self.anon_new {
            res.cookie(
                Cookie::build(ANON_COOKIE, self.anon_csrf.clone())
                    .path("/")
                    .http_only(true)
                    .same_site(SameSite::Strict)
                    .secure(self.secure)
                    .finish(),
            );
        }
        if self.stale_cookie {
            res.cookie(removal(self.secure));
        }
    }
}

/// The cookie that carries a new session's token.
pub fn session_cookie(token: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(sessions::COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::milliseconds(sessions::LIFETIME_MS))
        .finish()
}

/// The cookie that removes the session cookie.
pub fn removal(secure: bool) -> Cookie<'static> {
    let mut c = Cookie::build(sessions::COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish();
    c.make_removal();
    c
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, PageError>>>>;

impl FromRequest for Visitor {
    type Error = PageError;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Visitor::from_req(req.clone()))
    }
}

/// A signed-in visitor. Without a session, a page sends the visitor to log
/// in and come back.
pub struct SignedIn {
    pub v: Visitor,
    pub session: Session,
}

impl SignedIn {
    pub fn user(&self) -> AuthUser {
        self.session.auth()
    }

    /// Refuses a visitor without `role` with a page that says so.
    pub fn require(&self, role: Role) -> Result<AuthUser, PageError> {
        let u = self.user();
        u.require(role)?;
        Ok(u)
    }
}

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = BoxFut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let v = Visitor::from_req(req.clone()).await?;
            match v.session.clone() {
                Some(session) => Ok(SignedIn { v, session }),
                None => {
                    let next = if req.method() == actix_web::http::Method::GET {
                        match req.query_string() {
                            "" => req.path().to_owned(),
                            q => format!("{}?{q}", req.path()),
                        }
                    } else {
                        "/".to_owned()
                    };
                    Err(PageError::LoginRequired { next })
                }
            }
        })
    }
}

/// A safe place to go after logging in: a path on this site, never
/// another origin (`//evil.example` or `/\evil.example`).
pub fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() < 2000;
    if ok { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_log_in() {
        assert_eq!(safe_next("/bounties/3/work"), "/bounties/3/work");
        assert_eq!(safe_next("/earnings?x=1"), "/earnings?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "",
            "javascript:alert(1)",
            "/\nfoo",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
