//! Authentication (the auth token), CSRF protection (same-origin check plus a
//! per-session form token), and the security headers every response carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::pages;

/// The cookie holding the auth token after a successful login.
pub(crate) const TOKEN_COOKIE: &str = "iterjob_token";

/// The cookie holding the session's CSRF token (double-submit: forms echo it).
pub(crate) const CSRF_COOKIE: &str = "iterjob_csrf";

/// The form field carrying the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// Compares two secrets in constant time (for equal lengths; lengths are not secret).
pub(crate) fn secrets_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A fresh random token, hex-encoded (128 bits).
pub(crate) fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session ids the login form handed out: random, so the cookie never holds the
/// token itself; the newest [`MAX_SESSIONS`] are kept (in memory: a restart logs
/// everyone out).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

/// Sessions kept at once.
const MAX_SESSIONS: usize = 1000;

impl Sessions {
    /// A new session id.
    pub(crate) fn issue(&mut self) -> String {
        let id = format!("{}{}", random_token(), random_token());
        self.ids.insert(id.clone());
        self.order.push_back(id.clone());
        while self.order.len() > MAX_SESSIONS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        id
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// Does the request carry the auth token (bearer header) or a session the login
/// form opened?
fn authenticated(state: &AppState, headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|b| secrets_match(b, token)) {
        return true;
    }
    cookie(headers, TOKEN_COOKIE).is_some_and(|c| {
        state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(c)
    })
}

/// Wrong tokens tolerated per minute (over all clients) before the login form
/// answers 429 for the rest of that minute; the bearer header keeps working.
pub(crate) const MAX_LOGIN_FAILURES_PER_MINUTE: usize = 10;

/// True if the login form is resting after too many wrong tokens.
pub(crate) fn login_limited(state: &AppState) -> bool {
    let mut failures = state
        .login_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let minute_ago = std::time::Instant::now() - std::time::Duration::from_secs(60);
    while failures.front().is_some_and(|at| *at < minute_ago) {
        failures.pop_front();
    }
    failures.len() >= MAX_LOGIN_FAILURES_PER_MINUTE
}

/// Records a wrong token.
pub(crate) fn login_failed(state: &AppState) {
    state
        .login_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(std::time::Instant::now());
}

/// True for a loopback host name: `localhost` (and names under it), 127.0.0.0/8,
/// `::1`.
fn loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host name of a `Host` header value, without the port, lowercased.
fn host_name(value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    if value.starts_with('[') {
        // [::1]:8080
        return value
            .split_once(']')
            .map_or(value.clone(), |(ip, _)| format!("{ip}]"));
    }
    value
        .rsplit_once(':')
        .map_or(value.clone(), |(name, _)| name.to_string())
}

/// Refuses requests for a host name the dashboard does not answer to: without a
/// token, only loopback names (and [`Dashboard::allowed_hosts`](crate::Dashboard::allowed_hosts)),
/// so a page whose name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read
/// anything; with a token, any name unless the list is set.
pub(crate) async fn allowed_host(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let restricted = state.token.is_none() || !state.allowed_hosts.is_empty();
    if !restricted {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .or_else(|| request.uri().host().map(str::to_ascii_lowercase));
    // no name at all: not a browser (HTTP/1.1 browsers always send one), so not a
    // rebinding page; the token, if any, still decides
    let Some(host) = host else {
        return next.run(request).await;
    };
    if loopback_name(&host) || state.allowed_hosts.contains(&host) {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "refused: this dashboard does not answer to the name `{host}`; it answers to \
             localhost, 127.0.0.1 and [::1]{}. Open it by one of those, or name this host with \
             Dashboard::allowed_hosts (`--allowed-host`), or set an auth token\n",
            if state.allowed_hosts.is_empty() {
                String::new()
            } else {
                format!(" and {}", state.allowed_hosts.join(", "))
            }
        ),
    )
        .into_response()
}

/// Refuses requests without the auth token, when one is set. The login form is
/// open; a browser asking for a page is shown it, anything else gets a bare 401.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let open = path == "/login" || path.starts_with("/assets/");
    if open || authenticated(&state, request.headers(), token) {
        return next.run(request).await;
    }
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && request.method() == Method::GET {
        let page = pages::login(&state, None);
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this dashboard needs its auth token: send `Authorization: Bearer <token>`, or log in at /login\n",
    )
        .into_response()
}

/// Why a mutating request was refused as cross-site. `https`: the dashboard is
/// declared to be served over TLS.
fn cross_site(headers: &HeaderMap, trust_forwarded: bool, https: bool) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
    {
        return Some(format!(
            "the browser says this request came from another site (Sec-Fetch-Site: {site})"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let header_value = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .unwrap_or("")
        };
        let host = header_value(header::HOST.as_str());
        // behind a proxy that rewrites Host and says so (trusted only when declared:
        // a proxy passing a client's header through would let any site in)
        let (forwarded, forwarded_proto) = if trust_forwarded {
            (
                header_value("x-forwarded-host"),
                header_value("x-forwarded-proto"),
            )
        } else {
            ("", "")
        };
        let scheme = if https {
            "https"
        } else if !forwarded_proto.is_empty() {
            forwarded_proto.split(',').next().unwrap_or("").trim()
        } else {
            "http"
        };
        let (origin_scheme, origin_host) = origin.split_once("://").unwrap_or(("", ""));
        let ours = |h: &str| !h.is_empty() && origin_host.eq_ignore_ascii_case(h);
        if origin == "null" || !(ours(host) || ours(forwarded)) {
            return Some(format!(
                "the request's Origin ({origin}) is not this dashboard ({host})"
            ));
        }
        if !origin_scheme.eq_ignore_ascii_case(scheme) {
            let hint = if origin_scheme.eq_ignore_ascii_case("https") {
                " (served over HTTPS by a proxy? declare it: `--https`, \
                 `Dashboard::served_over_https(true)`)"
            } else {
                ""
            };
            return Some(format!(
                "the request's Origin ({origin}) uses {origin_scheme}, this dashboard is served \
                 over {scheme}{hint}"
            ));
        }
    }
    None
}

/// Refuses mutating requests (anything but GET/HEAD) that come from another site.
/// The per-session form token is checked by each form handler (it is in the body).
pub(crate) async fn same_origin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(why) = cross_site(request.headers(), state.trust_forwarded, state.https)
    {
        return (
            StatusCode::FORBIDDEN,
            format!("refused: {why}; actions are accepted only from the dashboard's own pages\n"),
        )
            .into_response();
    }
    next.run(request).await
}

/// Does the form's CSRF token match the session cookie?
pub(crate) fn csrf_ok(headers: &HeaderMap, form_token: Option<&str>) -> bool {
    match (cookie(headers, CSRF_COOKIE), form_token) {
        (Some(session), Some(given)) => !session.is_empty() && secrets_match(given, session),
        _ => false,
    }
}

/// The answer to a form without a valid CSRF token.
pub(crate) fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: the form's session token is missing or stale; reload the page and try again\n",
    )
        .into_response()
}

/// The session's CSRF token, and whether it is new (to be set as a cookie).
pub(crate) fn session_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(t) if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (t.to_string(), false)
        }
        _ => (random_token(), true),
    }
}

/// A `Set-Cookie` value for a dashboard cookie: HttpOnly, SameSite=Strict, and
/// Secure when the dashboard is served over HTTPS.
pub(crate) fn set_cookie(state: &AppState, name: &str, value: &str) -> HeaderValue {
    let path = if state.base.is_empty() {
        "/"
    } else {
        &state.base
    };
    let secure = if state.https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("iterjob_invalid=1"))
}

/// Adds the security headers to every response.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
             form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_match("abcdefabcdefabcdef", "abcdefabcdefabcdef"));
        assert!(!secrets_match("abcdefabcdefabcdeg", "abcdefabcdefabcdef"));
        assert!(!secrets_match("abc", "abcdefabcdefabcdef"));
        assert!(!secrets_match("", "x"));
    }

    #[test]
    fn cross_site_requests_are_named() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(
            cross_site(&h, false, false),
            None,
            "no Origin, no Sec-Fetch-Site: token decides"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert_eq!(cross_site(&h, false, false), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(
            cross_site(&h, false, false)
                .unwrap()
                .contains("evil.example")
        );
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h, false, false).is_some());
        // behind a proxy that rewrites Host, the forwarded host counts only when the
        // proxy is declared trusted
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://jobs.example.com"),
        );
        assert!(cross_site(&h, false, false).is_some());
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("jobs.example.com"),
        );
        assert!(
            cross_site(&h, false, false).is_some(),
            "not trusted by default"
        );
        // the scheme counts: the proxy must say it serves https, or it is declared
        assert!(cross_site(&h, true, false).unwrap().contains("--https"));
        assert_eq!(cross_site(&h, true, true), None);
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(cross_site(&h, true, false), None);
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(cross_site(&h, true, false).is_some());
        // a plain-http page of the same name cannot act on a dashboard served over TLS
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("jobs.example.com"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://jobs.example.com"),
        );
        assert_eq!(cross_site(&h, false, false), None);
        assert!(cross_site(&h, false, true).unwrap().contains("uses http"));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, false, false).unwrap().contains("cross-site"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(cross_site(&h, false, false), None);
    }

    #[test]
    fn host_names_and_loopback() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("LocalHost"), "localhost");
        assert_eq!(host_name("attacker.example:18096"), "attacker.example");
        for ok in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
        ] {
            assert!(loopback_name(ok), "{ok}");
        }
        for no in [
            "attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "",
            "localhost.evil",
        ] {
            assert!(!loopback_name(no), "{no}");
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; iterjob_csrf=abc; b=2"),
        );
        assert_eq!(cookie(&h, "iterjob_csrf"), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
