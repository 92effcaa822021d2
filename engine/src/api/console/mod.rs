//! The web console: server-rendered pages at `/console/…` (and `/`, which leads
//! there) on the API's listener, for the people the API's principals name.
//!
//! - **Login** takes a principal's token once and gives a session cookie (a random
//!   id, `HttpOnly`, `SameSite=Strict`, `Secure` behind TLS, path `/console`); the
//!   session maps to that principal in memory, with an expiry (`session`).
//! - **Roles are the API's.** Every console route goes through [`need`] like an API
//!   route: a form posted to `/console/<x>` needs what `/api/v1/<x>` needs, so a
//!   viewer's session cannot act, whatever it sends. Forms do what the API's
//!   handlers do by calling those handlers (`actions`), as the session's caller.
//! - **Forms** carry the session's CSRF token and are refused without it, or when
//!   the browser says they come from another site (`Origin`, `Sec-Fetch-Site`).
//! - **Headers**: a strict Content-Security-Policy (no inline script or style: the
//!   script is `/console/app.js`), `X-Frame-Options: DENY`, `no-store` on pages.
//! - Everything it serves is in the binary (`assets/`, `include_str!`).
//!
//! `pages` renders what the API reads (the alert service, the store, `ops`),
//! `graph` a runbook's steps as a layered SVG coloured by the journal, `plot` a
//! detector's record, `html` the shell and escaping.

mod actions;
mod graph;
mod html;
mod pages;
mod plot;
mod session;

pub use session::Sessions;

use super::limit::Principal;
use super::principals::{Need, allows, need, well_formed};
use super::{Api, ApiError};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use html::{Nav, esc, page};
use session::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SESSION_COOKIE: &str = "vigil_session";
const LOGIN_COOKIE: &str = "vigil_login";
/// A console form is small; anything larger is not one of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long a form's action is waited for before the browser is sent to watch it
/// (an approval continues the execution, which may take long).
const ACTION_WAIT: Duration = Duration::from_secs(3);

/// What every console answer carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Whether the console answers this path (the API's guard hands it over).
pub(super) fn owns(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// Answers a request for a console page (the API router's fallback hands them over,
/// after its guard: the console's routes are not API operations).
pub(super) async fn serve(api: Arc<Api>, req: Request) -> Response {
    // One function routes every console page, by hand: an axum router would
    // instantiate its machinery for each handler, which costs the binary far more
    // than these few lines.
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    let uri = req.uri().clone();
    let segs: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(path_segment)
        .collect();
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (read, seg.as_slice()) {
        (true, [""] | ["console"] | ["console", ""]) => return see_other("/console/incidents"),
        (true, ["console", "app.css"]) => {
            return asset(
                &uri,
                html::APP_CSS,
                "text/css; charset=utf-8",
                &html::CSS_VERSION,
            );
        }
        (true, ["console", "app.js"]) => {
            return asset(
                &uri,
                html::APP_JS,
                "text/javascript; charset=utf-8",
                &html::JS_VERSION,
            );
        }
        (true, ["console", "login"]) => return login_page(&api, &req),
        (false, ["console", "login"]) => return login(&api, &req),
        (false, ["console", "logout"]) => return logout(&api, &req),
        _ => {}
    }
    // Everything else has a session: the guard let it through.
    let Some(s) = req.extensions().get::<Session>().cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "Log in first", "no session", None);
    };
    let form = Extension(req.extensions().get::<Form>().cloned().unwrap_or_default());
    let (st, ss) = (State(api), Extension(s.clone()));
    let id = |x: &str| Path(x.to_string());
    match (read, seg.as_slice()) {
        (true, ["console", "incidents"]) => pages::incidents(st, ss, uri).await,
        (true, ["console", "incidents", x]) => pages::incident(st, ss, id(x)).await,
        (false, ["console", "incidents", x, "acknowledge"]) => {
            actions::acknowledge(st, ss, form, id(x)).await
        }
        (true, ["console", "executions"]) => pages::executions(st, ss).await,
        (true, ["console", "executions", x]) => pages::execution(st, ss, id(x)).await,
        (true, ["console", "executions", x, "state"]) => {
            pages::execution_state(st, ss, id(x), uri).await
        }
        (false, ["console", "executions", x, "approve"]) => {
            actions::approve(st, ss, form, id(x)).await
        }
        (false, ["console", "executions", x, "reject"]) => {
            actions::reject(st, ss, form, id(x)).await
        }
        (true, ["console", "approvals"]) => pages::approvals(st, ss).await,
        (true, ["console", "automation"]) => pages::automation(st, ss, uri).await,
        (false, ["console", "pause"]) => actions::pause(st, ss, form).await,
        (false, ["console", "resume"]) => actions::resume(st, ss, form).await,
        (true, ["console", "silences"]) => pages::silences(st, ss).await,
        (false, ["console", "silences"]) => actions::add_silence(st, ss, form).await,
        (false, ["console", "silences", "preview"]) => actions::preview_silence(st, ss, form).await,
        (false, ["console", "silences", x, "expire"]) => {
            actions::expire_silence(st, ss, id(x)).await
        }
        (true, ["console", "detectors"]) => pages::detectors(st, ss).await,
        (true, ["console", "detectors", x]) => pages::detector(st, ss, id(x)).await,
        _ => problem(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!(
                "the console has no page {} {}",
                if read { "GET" } else { "POST" },
                uri.path()
            ),
            Some(&s),
        ),
    }
}

/// A path segment, percent-decoded (`+` is itself in a path).
fn path_segment(s: &str) -> String {
    decode(s.replace('+', "%2B").as_bytes())
}

/// A posted form's fields, read by the guard (which checks its CSRF token).
#[derive(Clone, Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// `application/x-www-form-urlencoded`, as browsers send it.
    pub fn parse(body: &[u8]) -> Form {
        Form(
            body.split(|&b| b == b'&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let mut it = kv.splitn(2, |&b| b == b'=');
                    let k = decode(it.next().unwrap_or_default());
                    let v = decode(it.next().unwrap_or_default());
                    (k, v)
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The field, trimmed; empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_string()
    }
}

fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The session's id as the request's cookie carries it (for logout).
#[derive(Clone, Debug)]
struct SessionId(String);

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (directly, or as a proxy in front says).
fn over_tls(req: &Request) -> bool {
    let h = req.headers();
    req.uri().scheme_str() == Some("https")
        || h.get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
        || h.get(header::FORWARDED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"))
}

fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a form comes from one of our own pages, as far as the browser tells:
/// `Sec-Fetch-Site` other than `same-origin` (or `none`, typed by the user), or an
/// `Origin` that is not this host, is another site's.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"))
    {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            !host.is_empty()
                && (origin == format!("http://{host}") || origin == format!("https://{host}"))
        }
    }
}

/// A whole page for a refusal or an error.
fn problem(code: StatusCode, title: &str, detail: &str, session: Option<&Session>) -> Response {
    let body = format!(
        "<h1>{}</h1><div class=\"panel error\" role=\"alert\"><p>{}</p></div><p><a href=\"/console/incidents\">Back to the console</a></p>",
        esc(title),
        esc(detail)
    );
    (
        code,
        html_type(),
        page(title, Nav::None, session, "", &body),
    )
        .into_response()
}

fn html_type() -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    )]
}

/// `303 See Other` to `to`.
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Where a login may send the browser back to: one of our pages, nothing else.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/console/")
        && !next.starts_with("/console/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next } else { "/console/incidents" }
}

/// The console's part of the API's guard: who the session is, whether its form is
/// ours, whether its role may do what the route does; then the security headers
/// on whatever is answered.
pub(super) async fn guard(api: Arc<Api>, peer: SocketAddr, req: Request, next: Next) -> Response {
    let asset = matches!(req.uri().path(), "/console/app.css" | "/console/app.js");
    let mut resp = guarded(&api, peer, req, next).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !asset || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    api.svc().metrics().http("console", resp.status().as_u16());
    resp
}

async fn guarded(api: &Arc<Api>, peer: SocketAddr, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    let now = vigil_core::now_ms();
    if matches!(
        path.as_str(),
        "/" | "/console" | "/console/" | "/console/app.css" | "/console/app.js" | "/console/login"
    ) {
        if path == "/console/login" && !read {
            // Guessing tokens at the login form costs the guesser's network.
            if !api.limiter.allow(Principal::Anonymous(peer.ip())) {
                return too_many(None);
            }
            if !same_origin(req.headers()) {
                return cross_site(None);
            }
            req = match with_form(api, req).await {
                Ok(r) => r,
                Err(e) => return e,
            };
        }
        return next.run(req).await;
    }
    let found = cookie(req.headers(), SESSION_COOKIE)
        .map(str::to_string)
        .and_then(|id| api.console.get(&id, now).map(|s| (id, s)));
    let Some((id, session)) = found else {
        if read {
            let back = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            return see_other(&format!(
                "/console/login?next={}",
                html::seg(safe_next(&back))
            ));
        }
        return problem(
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "this form needs a console session; log in again and retry",
            None,
        );
    };
    if !api.limiter.allow(Principal::Token(session.index)) {
        return too_many(Some(&session));
    }
    if !read {
        if !same_origin(req.headers()) {
            return cross_site(Some(&session));
        }
        req = match with_form(api, req).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        let sent = req
            .extensions()
            .get::<Form>()
            .and_then(|f| f.get("csrf"))
            .unwrap_or_default();
        if !session::same(sent, &session.csrf) {
            return problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "the form's CSRF token is missing or is not this session's; reload the page and try again",
                Some(&session),
            );
        }
    }
    // Logging out is every session's own business; everything else needs the role
    // the API route of the same name needs.
    if path != "/console/logout" {
        let needs = need(&method, &path);
        if !allows(session.caller.role, needs) {
            return problem(
                StatusCode::FORBIDDEN,
                "Not allowed",
                &format!(
                    "`{}` has role `{}`, which may not {} ({method} {}); this needs `{}` or above",
                    session.caller.name,
                    session.caller.role.as_str(),
                    needs.as_str(),
                    path,
                    least(needs)
                ),
                Some(&session),
            );
        }
    }
    req.extensions_mut().insert(session.caller.clone());
    req.extensions_mut().insert(session);
    req.extensions_mut().insert(SessionId(id));
    // A reload waits for this request, as for the API's.
    let _held = api.gate.read().await;
    next.run(req).await
}

fn least(needs: Need) -> &'static str {
    match needs {
        Need::Read => "viewer",
        Need::Deliver => "sender",
        Need::Operate => "operator",
        Need::Administer => "admin",
    }
}

fn too_many(session: Option<&Session>) -> Response {
    let mut r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "Slow down",
        "too many requests; wait a second and try again",
        session,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn cross_site(session: Option<&Session>) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        "Refused",
        "this form was sent from another site; the console takes forms from its own pages only",
        session,
    )
}

/// Reads the request's form (small, within the body timeout) into an extension.
async fn with_form(api: &Api, req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let limit = api.cfg.body_read_timeout;
    let bytes = match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_FORM_BYTES)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "a console form is at most 64 KiB",
                None,
            ));
        }
        Err(_) => {
            return Err(problem(
                StatusCode::REQUEST_TIMEOUT,
                "Too slow",
                "the form did not arrive in time",
                None,
            ));
        }
    };
    let mut req = Request::from_parts(parts, Body::empty());
    req.extensions_mut().insert(Form::parse(&bytes));
    Ok(req)
}

fn asset(uri: &Uri, text: &'static str, kind: &'static str, version: &str) -> Response {
    // A URL naming this version may be cached for long; another is checked each time.
    let cache = if uri.query() == Some(&format!("v={version}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        text,
    )
        .into_response()
}

/// `?next=` of the login page.
#[derive(Debug, Default, serde::Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

fn login_page(api: &Api, req: &Request) -> Response {
    let now = vigil_core::now_ms();
    if cookie(req.headers(), SESSION_COOKIE).is_some_and(|id| api.console.get(id, now).is_some()) {
        return see_other("/console/incidents");
    }
    let q: LoginQuery = super::operate::query(req.uri()).unwrap_or_default();
    login_form(
        StatusCode::OK,
        safe_next(q.next.as_deref().unwrap_or_default()),
        None,
        over_tls(req),
    )
}

/// The login form, with a fresh login-CSRF value in a cookie and the form.
fn login_form(code: StatusCode, next: &str, error: Option<&str>, secure: bool) -> Response {
    let nonce = session::random_hex();
    let error = error
        .map(|e| {
            format!(
                "<div class=\"panel error\" role=\"alert\"><p>{}</p></div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in</h1>{error}<form class=\"panel\" method=\"post\" action=\"/console/login\">\
         <input type=\"hidden\" name=\"login_csrf\" value=\"{nonce}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"token\">Your API token (as for <code>VIGIL_TOKEN</code>)</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <p><button class=\"primary\" type=\"submit\">Log in</button></p>\
         <p class=\"dim small\">The token is checked once; the browser then holds a session cookie, never the token. \
         What you may do is your principal's role, as in the API.</p></form>",
        esc(next)
    );
    let mut r = (
        code,
        html_type(),
        page("Log in", Nav::None, None, "", &body),
    )
        .into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &nonce, 600, secure),
    );
    r
}

fn login(api: &Api, req: &Request) -> Response {
    let secure = over_tls(req);
    let form = req.extensions().get::<Form>().cloned().unwrap_or_default();
    let next = safe_next(form.get("next").unwrap_or_default()).to_string();
    let expected = cookie(req.headers(), LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(form.get("login_csrf").unwrap_or_default(), expected) {
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some("the login form expired or did not come from this page; try again"),
            secure,
        );
    }
    let token = form.text("token");
    if !well_formed(&token) {
        return login_form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("paste a token: visible characters without spaces"),
            secure,
        );
    }
    let now = vigil_core::now_ms();
    let principals = &api.cfg.principals;
    let index = match principals.authenticate(&token, now) {
        Ok(i) => i,
        Err(super::principals::Refused::Unknown) => {
            return login_form(
                StatusCode::FORBIDDEN,
                &next,
                Some("that token is not one of the configured tokens"),
                secure,
            );
        }
        Err(super::principals::Refused::Expired { name, .. }) => {
            return login_form(
                StatusCode::UNAUTHORIZED,
                &next,
                Some(&format!(
                    "the token of `{name}` has expired; ask an admin for a new one"
                )),
                secure,
            );
        }
    };
    let Some(caller) = principals.caller(index).cloned() else {
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some("unknown principal"),
            secure,
        );
    };
    if !allows(caller.role, Need::Read) {
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some(&format!(
                "`{}` has role `{}`, which may only deliver alerts; the console needs `viewer` or above",
                caller.name,
                caller.role.as_str()
            )),
            secure,
        );
    }
    let (id, s) = api
        .console
        .open(caller, index, principals.expires_ms(index), now);
    let mut r = see_other(&next);
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, (s.ends_ms - now) / 1000, secure),
    );
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    r
}

fn logout(api: &Api, req: &Request) -> Response {
    if let Some(SessionId(id)) = req.extensions().get::<SessionId>() {
        api.console.close(id);
    }
    let mut r = see_other("/console/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, over_tls(req)),
    );
    r
}

/// An API handler's answer to come (boxed: one `act` for every handler).
type Action = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + 'static>,
>;

/// Does what an API handler does, as the session's caller, and answers the browser:
/// back to `back` when it was done (or is still going after [`ACTION_WAIT`]: the
/// page shows it live), else the API's refusal as a page, with its status.
async fn act(session: &Session, back: &str, handler: Action) -> Response {
    let task = tokio::spawn(handler);
    let resp = match tokio::time::timeout(ACTION_WAIT, task).await {
        Err(_) => return see_other(back),
        Ok(Err(e)) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed",
                &e.to_string(),
                Some(session),
            );
        }
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(e))) => e.into_response(),
    };
    if resp.status().is_success() {
        return see_other(back);
    }
    refused_page(resp, Some(session)).await
}

/// An API error answer (JSON `{error, detail}`) as a page with the same status.
async fn refused_page(resp: Response, session: Option<&Session>) -> Response {
    let code = resp.status();
    let (error, detail) = error_of(resp).await;
    let title = match error.as_str() {
        "forbidden" | "not_an_approver" => "Not allowed",
        "conflict" => "Not now",
        "not_found" => "Not found",
        _ => "Refused",
    };
    problem(code, title, &detail, session)
}

/// The `error` and `detail` of an API error answer.
async fn error_of(resp: Response) -> (String, String) {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (
        v["error"].as_str().unwrap_or_default().to_string(),
        v["detail"]
            .as_str()
            .unwrap_or("the request was refused")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_as_browsers_encode_them() {
        let f = Form::parse(
            b"csrf=ab12&comment=looks+good%21+%E2%9C%93&matchers=service%3Ddb%0Aa%3D%7Eb&bad=%zz%",
        );
        assert_eq!(f.get("csrf"), Some("ab12"));
        assert_eq!(f.get("comment"), Some("looks good! ✓"));
        assert_eq!(f.get("matchers"), Some("service=db\na=~b"));
        assert_eq!(f.get("bad"), Some("%zz%"));
        assert_eq!(f.get("none"), None);
    }

    #[test]
    fn only_our_own_pages_post_forms_and_logins_return_only_to_the_console() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9797"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9797"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        assert_eq!(safe_next("/console/approvals"), "/console/approvals");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console//x",
            "/api/v1/pause",
            "/console/login",
            "",
        ] {
            assert_eq!(safe_next(bad), "/console/incidents", "{bad}");
        }
    }
}
