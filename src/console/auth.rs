//! Sign-in with an API key, the session it opens, and CSRF protection.
//!
//! A session is a random id in an HttpOnly, SameSite=Strict cookie, mapped
//! in memory to the key's [`Caller`], the client being viewed and a CSRF
//! token. Every POST but the sign-in itself carries that token (a form
//! field, or the `x-csrf-token` header of the console's script); without
//! it the answer is 403. The key is checked again on every request, so a
//! revoked or expired key ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::Engine as _;
use chrono::Utc;
use cookie::{Cookie, SameSite};

use super::failure::{page, Failure};
use super::Console;
use crate::scheduling::api::client_id;
use crate::scheduling::domain::access::{self, Caller, Role};
use crate::scheduling::usecases::access::authenticate;

/// Name of the session cookie.
pub const COOKIE: &str = "allegro_console";

/// How long a session lasts without being used.
const IDLE: Duration = Duration::from_secs(8 * 3600);

/// A message shown once on the next page (the outcome of an action).
#[derive(Debug, Clone)]
pub struct Flash {
    /// Whether it reports a refusal.
    pub error: bool,
    /// The text.
    pub text: String,
}

/// One signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// The key that signed in.
    pub caller: Caller,
    /// The client whose data the console shows.
    pub client: String,
    /// The token every POST must carry.
    pub csrf: String,
    last_use: Mutex<Instant>,
    flash: Mutex<Option<Flash>>,
}

impl Session {
    /// Whether the key may act (operator or above): action buttons show.
    pub fn may_act(&self) -> bool {
        self.caller.may(&self.client, Role::Operator).is_ok()
    }

    /// 403 unless the key may act.
    pub fn require_operator(&self) -> Result<(), Failure> {
        self.caller
            .may(&self.client, Role::Operator)
            .map_err(|denied| Failure::forbidden(denied.to_string()))
    }

    /// Keeps a message for the next page.
    pub fn set_flash(&self, error: bool, text: impl Into<String>) {
        *self
            .flash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Flash {
            error,
            text: text.into(),
        });
    }

    /// The message kept for this page, once.
    pub fn take_flash(&self) -> Option<Flash> {
        self.flash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The signed-in sessions of this process.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Arc<Session>>>);

impl Sessions {
    fn open(&self, caller: Caller, client: String) -> (String, Arc<Session>) {
        let session = Arc::new(Session {
            caller,
            client,
            csrf: random_token(),
            last_use: Mutex::new(Instant::now()),
            flash: Mutex::new(None),
        });
        let id = random_token();
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|_, s| {
            s.last_use
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed()
                < IDLE
        });
        all.insert(id.clone(), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Arc<Session>> {
        let all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = all.get(id)?;
        let mut last = session
            .last_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= IDLE {
            return None;
        }
        *last = Instant::now();
        Some(session.clone())
    }

    fn close(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// 32 random bytes, URL-safe base64.
// Invariant: the service cannot run without the operating system's
// randomness (keys and page tokens need it too).
#[allow(clippy::expect_used)]
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// A request of a signed-in browser; others are sent to the sign-in page
/// (pages) or refused with 401 (fetches, event streams).
pub struct Signed(pub Arc<Session>);

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let session = session_id(&parts.headers).and_then(|id| console.sessions.get(&id));
        let Some(session) = session else {
            return Err(signed_out(parts));
        };
        // The key is read again: revoking it ends its sessions.
        let row = console
            .keys
            .find(&session.caller.key_id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "API key lookup failed");
                Failure::unavailable().into_response()
            })?;
        if !row.is_some_and(|row| row.is_live(Utc::now())) {
            return Err(signed_out(parts));
        }
        Ok(Signed(session))
    }
}

fn signed_out(parts: &Parts) -> Response {
    let page = parts.method == axum::http::Method::GET
        && !parts.headers.contains_key("x-console-fetch")
        && !parts.uri.path().starts_with("/live");
    if page {
        Redirect::to("/signin").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "signed out: sign in again").into_response()
    }
}

/// The fields of a POSTed form, in order (a field may repeat).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or empty.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A POST of a signed-in browser that carried its session's CSRF token;
/// 403 otherwise. `fetched` tells a script's request (answered with a short
/// text) from a plain form (answered with a redirect).
pub struct Posted {
    /// The session.
    pub session: Arc<Session>,
    /// The form.
    pub fields: Fields,
    /// Sent by the console's script rather than by a plain form.
    pub fetched: bool,
}

impl FromRequest<Console> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Signed(session) = Signed::from_request_parts(&mut parts, console).await?;
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let fetched = parts.headers.contains_key("x-console-fetch");
        let request = Request::from_parts(parts, body);
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = Fields(pairs);
        let token = header_token.unwrap_or_else(|| fields.get("csrf").to_string());
        if !constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) {
            return Err(
                Failure::forbidden("csrf: missing or wrong token; reload the page").into_response(),
            );
        }
        Ok(Posted {
            session,
            fields,
            fetched,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    error: Option<String>,
    client: String,
}

/// The sign-in page.
pub async fn signin_page() -> Response {
    page(&SigninPage {
        error: None,
        client: String::new(),
    })
}

/// Signs in with an API key and the client to view (optional for a key
/// of one client).
pub async fn signin(
    State(console): State<Console>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(fields);
    let client = fields.get("client").trim().to_string();
    match open_session(&console, fields.get("key").trim(), &client).await {
        Ok(id) => {
            let cookie = Cookie::build((COOKIE, id))
                .http_only(true)
                .same_site(SameSite::Strict)
                .path("/")
                .build();
            (
                [(header::SET_COOKIE, cookie.to_string())],
                Redirect::to("/configs"),
            )
                .into_response()
        }
        Err(error) => {
            let mut response = page(&SigninPage {
                error: Some(error),
                client,
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

async fn open_session(console: &Console, key: &str, client: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("key: required".into());
    }
    let presented = access::parse_key(key).map_err(|e| format!("key: {e}"))?;
    let row = console.keys.find(&presented.key_id).await.map_err(|e| {
        tracing::warn!(error = %e, "API key lookup failed");
        "the database is unavailable; retry later".to_string()
    })?;
    let caller =
        authenticate(&presented, row.as_ref(), Utc::now()).map_err(|e| format!("key: {e}"))?;
    let client = match (client, &caller.scope) {
        ("", access::ClientScope::Clients(list)) if list.len() == 1 => list[0].clone(),
        ("", _) => return Err("client: required: this key acts for several clients".into()),
        (client, _) => client_id(client).map_err(|e| e.to_string())?,
    };
    caller
        .may(&client, Role::Viewer)
        .map_err(|denied| format!("client: {denied}"))?;
    tracing::info!(key = %caller.name, client = %client, "console sign-in");
    let (id, _) = console.sessions.open(caller, client);
    Ok(id)
}

/// Signs out: the session ends and its cookie is cleared.
pub async fn signout(
    State(console): State<Console>,
    headers: HeaderMap,
    _posted: Posted,
) -> Response {
    if let Some(id) = session_id(&headers) {
        console.sessions.close(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/signin"),
    )
        .into_response()
}
