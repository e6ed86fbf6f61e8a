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

/// Does the request carry the auth token (bearer header or login cookie)?
fn authenticated(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|b| secrets_match(b, token)) {
        return true;
    }
    cookie(headers, TOKEN_COOKIE).is_some_and(|c| secrets_match(c, &token_cookie_value(token)))
}

/// The login cookie's value for `token`: hex, so any token fits in a cookie.
pub(crate) fn token_cookie_value(token: &str) -> String {
    token.bytes().map(|b| format!("{b:02x}")).collect()
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
    if open || authenticated(request.headers(), token) {
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

/// Why a mutating request was refused as cross-site.
fn cross_site(headers: &HeaderMap) -> Option<String> {
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
        // behind a proxy that rewrites Host, the original host (a browser cannot set
        // this header on a cross-site form post)
        let forwarded = header_value("x-forwarded-host");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        let ours = |h: &str| !h.is_empty() && origin_host.eq_ignore_ascii_case(h);
        if origin == "null" || !(ours(host) || ours(forwarded)) {
            return Some(format!(
                "the request's Origin ({origin}) is not this dashboard ({host})"
            ));
        }
    }
    None
}

/// Refuses mutating requests (anything but GET/HEAD) that come from another site.
/// The per-session form token is checked by each form handler (it is in the body).
pub(crate) async fn same_origin(request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(why) = cross_site(request.headers())
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

/// A `Set-Cookie` value for a dashboard cookie: HttpOnly, SameSite=Strict.
pub(crate) fn set_cookie(state: &AppState, name: &str, value: &str) -> HeaderValue {
    let path = if state.base.is_empty() {
        "/"
    } else {
        &state.base
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict"
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
            cross_site(&h),
            None,
            "no Origin, no Sec-Fetch-Site: token decides"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert_eq!(cross_site(&h), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h).unwrap().contains("evil.example"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h).is_some());
        // behind a proxy that rewrites Host, the forwarded host counts
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://jobs.example.com"),
        );
        assert!(cross_site(&h).is_some());
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("jobs.example.com"),
        );
        assert_eq!(cross_site(&h), None);
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h).unwrap().contains("cross-site"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(cross_site(&h), None);
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
