//! The home page, sign-up, log-in and log-out.

use actix_web::{HttpResponse, ResponseError, web};
use askama::Template;
use sahel_protocol::api::{self, Role};
use serde::Deserialize;

use super::error::PageError;
use super::session::{SignedIn, Visitor, removal, safe_next, session_cookie};
use super::{Ctx, render, render_status};
use crate::accounts::{self, NewUser, sessions};
use crate::error::{ClientKind, Error};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    ctx: Ctx,
}

pub async fn home(v: Visitor) -> Result<HttpResponse, PageError> {
    render(&v, &Home { ctx: v.ctx() })
}

#[derive(Template)]
#[template(path = "signup.html")]
struct Signup {
    ctx: Ctx,
    email: String,
    display_name: String,
    contributor: bool,
    buyer: bool,
    error: Option<String>,
}

pub async fn signup_form(v: Visitor) -> Result<HttpResponse, PageError> {
    render(
        &v,
        &Signup {
            ctx: v.ctx(),
            email: String::new(),
            display_name: String::new(),
            contributor: true,
            buyer: false,
            error: None,
        },
    )
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    contributor: Option<String>,
    buyer: Option<String>,
}

pub async fn signup(
    state: web::Data<AppState>,
    v: Visitor,
    form: web::Form<SignupForm>,
) -> Result<HttpResponse, PageError> {
    v.check_form(&form.csrf)?;
    let f = form.into_inner();
    let mut roles = Vec::new();
    if f.contributor.is_some() {
        roles.push(Role::Contributor);
    }
    if f.buyer.is_some() {
        roles.push(Role::Buyer);
    }
    let again = |v: &Visitor, f: &SignupForm, e: &Error| {
        render_status(
            v,
            e.status_code(),
            &Signup {
                ctx: v.ctx(),
                email: f.email.clone(),
                display_name: f.display_name.clone(),
                contributor: f.contributor.is_some(),
                buyer: f.buyer.is_some(),
                error: Some(message(e)),
            },
        )
    };
    if roles.is_empty() {
        let e = Error::invalid(
            "no-role",
            "choose at least one: label data, or post bounties",
        );
        return again(&v, &f, &e);
    }
    let req = api::RegisterRequest {
        email: f.email.clone(),
        password: f.password.clone(),
        display_name: f.display_name.clone(),
        roles: roles.clone(),
    };
    let created = match NewUser::from_request(req) {
        Ok(new) => accounts::create_user(&state.db, new).await,
        Err(e) => Err(e),
    };
    let u = match created {
        Ok(u) => u,
        Err(e) if is_form_error(&e) => return again(&v, &f, &e),
        Err(e) => return Err(e.into()),
    };
    let s = sessions::start(&state.db, u).await?;
    let to = if roles.contains(&Role::Buyer) && !roles.contains(&Role::Contributor) {
        "/projects/new"
    } else {
        "/bounties"
    };
    Ok(HttpResponse::SeeOther()
        .cookie(session_cookie(&s.token, v.secure()))
        .insert_header(("location", to))
        .finish())
}

/// Refusals a person fixes in the form itself (shown next to it, with
/// what they typed kept), as opposed to an error page.
fn is_form_error(e: &Error) -> bool {
    matches!(
        e.client_kind(),
        Some(ClientKind::Invalid | ClientKind::Conflict | ClientKind::Unauthorized)
    )
}

fn message(e: &Error) -> String {
    match e {
        Error::Client(c) => c.detail.clone(),
        Error::Unexpected(_) => "something went wrong on our side".into(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    ctx: Ctx,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_form(v: Visitor, q: web::Query<NextQuery>) -> Result<HttpResponse, PageError> {
    let next = safe_next(q.next.as_deref().unwrap_or("/")).to_owned();
    render(
        &v,
        &Login {
            ctx: v.ctx(),
            email: String::new(),
            next,
            error: None,
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    state: web::Data<AppState>,
    v: Visitor,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    v.check_form(&form.csrf)?;
    let next = safe_next(&form.next).to_owned();
    let s = match sessions::log_in(&state.db, &form.email, &form.password).await {
        Ok(s) => s,
        Err(e) if is_form_error(&e) => {
            return render_status(
                &v,
                e.status_code(),
                &Login {
                    ctx: v.ctx(),
                    email: form.email.clone(),
                    next,
                    error: Some(message(&e)),
                },
            );
        }
        Err(e) => return Err(e.into()),
    };
    // A previous session in this browser ends with the new log-in.
    if let Some(old) = &v.session {
        sessions::end(&state.db, old.id).await?;
    }
    Ok(HttpResponse::SeeOther()
        .cookie(session_cookie(&s.token, v.secure()))
        .insert_header(("location", next))
        .finish())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    s.v.check_form(&form.csrf)?;
    sessions::end(&state.db, s.session.id).await?;
    Ok(HttpResponse::SeeOther()
        .cookie(removal(s.v.secure()))
        .insert_header(("location", "/"))
        .finish())
}
