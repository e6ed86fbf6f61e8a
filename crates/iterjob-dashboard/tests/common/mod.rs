//! Shared helpers: job kinds to register, a router over a store, requests.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, Registry, Store};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

/// Counts to `up_to`, sleeping `sleep_ms` per item.
pub struct Count;

/// Parameters of [`Count`].
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    /// Counts from 0 up to this, exclusive.
    pub up_to: i64,
    /// Milliseconds to sleep per item.
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for Count {
    const KIND: &'static str = "count";
    const DESCRIPTION: &'static str = "Counts to a number, sleeping a while per item.";
    type Params = CountParams;
    type Cursor = i64;
    type Item = i64;

    fn params_schema() -> Option<serde_json::Value> {
        iterjob::params_schema::<CountParams>()
    }

    fn enumerate(
        &self,
        p: &CountParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.up_to, cursor))
    }

    async fn process(&self, ctx: &JobContext<CountParams>, _n: i64) -> Result<(), JobError> {
        if ctx.params.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.sleep_ms)).await;
        }
        Ok(())
    }

    async fn total(&self, p: &CountParams) -> Result<Option<u64>, JobError> {
        Ok(Some(p.up_to.max(0) as u64))
    }
}

/// Reads the CSV file named by `path`.
pub struct ImportCsv;

/// Parameters of [`ImportCsv`].
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The CSV file to read.
    pub path: String,
    /// Read the rows, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Job for ImportCsv {
    const KIND: &'static str = "import_csv";
    type Params = ImportParams;

    fn params_schema() -> Option<serde_json::Value> {
        iterjob::params_schema::<ImportParams>()
    }
    type Cursor = enumerator::FileCursor;
    type Item = csv::StringRecord;

    fn enumerate(
        &self,
        p: &ImportParams,
        cursor: Option<enumerator::FileCursor>,
    ) -> Result<impl Enumerator<csv::StringRecord, enumerator::FileCursor>, JobError> {
        Ok(enumerator::csv_records(
            &p.path,
            enumerator::FileRange::default(),
            cursor,
            true,
        ))
    }

    async fn process(
        &self,
        _ctx: &JobContext<ImportParams>,
        _row: csv::StringRecord,
    ) -> Result<(), JobError> {
        Ok(())
    }
}

pub fn registry() -> Registry {
    Registry::new().with(Count).with(ImportCsv)
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read the body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(router: &Router, uri: &str) -> Reply {
    send(
        router,
        Request::get(uri)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// A CSRF token the tests use as both cookie and form field.
pub const CSRF: &str = "0123456789abcdef0123456789abcdef";

/// A same-origin form POST, as the dashboard's own page sends it.
pub fn form_post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, format!("iterjob_csrf={CSRF}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A multipart body with text fields and an optional file.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----iterjobtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn multipart_post(content_type: &str, body: Vec<u8>) -> Request<Body> {
    multipart_post_to("/enqueue", content_type, body)
}

pub fn multipart_post_to(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .header(header::COOKIE, format!("iterjob_csrf={CSRF}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

pub fn shared<S: Store>(store: S) -> Arc<dyn Store> {
    Arc::new(store)
}
