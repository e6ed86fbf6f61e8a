//! Every page and action of the dashboard, through its router, against real stores
//! (in memory, and SQLite where the history matters), including the security rules.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use iterjob::store::{ClaimRequest, NewJob, Outcome, Progress};
use iterjob::{InterruptReason, JobId, JobState, MemoryStore, Store};
use iterjob_dashboard::{Dashboard, Error};
use serde_json::json;
use tower::ServiceExt;

const XSS: &str = "<script>alert('xss')</script>";
const XSS_IMG: &str = "\"><img src=x onerror=alert(1)>";

async fn claim(store: &dyn Store, kind: &str) -> iterjob::store::Claimed {
    store
        .job_claim(&ClaimRequest {
            worker_id: "test-worker".into(),
            queues: vec!["default".into(), XSS_IMG.into()],
            kinds: vec![kind.into()],
            limit: 1,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("claim")
        .pop()
        .unwrap_or_else(|| panic!("a job of kind {kind} to claim"))
}

fn dashboard(store: Arc<dyn Store>) -> axum::Router {
    Dashboard::new(store).registry(registry()).router()
}

fn assert_inert(body: &str) {
    assert!(
        !body.contains("<script>alert"),
        "a script payload rendered live:\n{body}"
    );
    assert!(
        !body.contains("<img src=x"),
        "an img payload rendered live:\n{body}"
    );
    assert!(
        !body.contains("onerror=alert(1)>"),
        "an attribute payload rendered live"
    );
}

#[tokio::test]
async fn overview_shows_counts_running_jobs_and_security_headers() {
    let store = shared(MemoryStore::new());
    for _ in 0..3 {
        store
            .job_insert(&NewJob::new("count", json!({"up_to": 10})))
            .await
            .unwrap();
    }
    let run = claim(&*store, "count").await;
    store
        .job_checkpoint(
            run.job.id,
            run.token,
            &Progress {
                cursor: Some(json!(4)),
                items_done: 4,
                items_total: Some(10),
                running_ms: 2000,
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let router = dashboard(store);
    let reply = get(&router, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body.contains(r#"data-count="queued">2<"#),
        "{}",
        reply.body
    );
    assert!(reply.body.contains(r#"data-count="running">1<"#));
    assert!(
        reply.body.contains("4 / 10 (40.0%)"),
        "progress of the running job"
    );
    assert!(reply.body.contains(r#"<progress value="4" max="10">"#));
    let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
    // a session token is issued, and the forms carry the same one
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = cookie
        .strip_prefix("iterjob_csrf=")
        .and_then(|c| c.split(';').next())
        .unwrap();
    assert!(
        reply
            .body
            .contains(&format!(r#"name="csrf" value="{token}""#))
    );
    // the assets are served, with a script that never writes HTML
    let js = get(&router, "/assets/app.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(!js.body.contains("innerHTML") && !js.body.contains("eval("));
    assert_eq!(get(&router, "/assets/app.css").await.status, StatusCode::OK);
}

#[tokio::test]
async fn job_list_filters_and_pages_by_keyset() {
    let store = shared(MemoryStore::new());
    let mut jobs = Vec::new();
    for i in 0..120 {
        let kind = if i % 2 == 0 { "count" } else { "import_csv" };
        let queue = if i % 3 == 0 { "bulk" } else { "default" };
        jobs.push(NewJob::new(kind, json!({"up_to": i})).queue(queue));
    }
    let ids = store.job_insert_many(&jobs).await.unwrap();
    store.job_pause(ids[0]).await.unwrap();
    let router = dashboard(store);

    let page1 = get(&router, "/jobs").await;
    assert_eq!(page1.status, StatusCode::OK);
    assert_eq!(page1.body.matches("<td data-label=\"Job\">").count(), 50);
    assert!(page1.body.contains(">#120<") && page1.body.contains(">#71<"));
    assert!(!page1.body.contains(">#70<"));
    assert!(
        page1.body.contains(r#"href="/jobs?before=71""#),
        "older link by keyset"
    );
    let page2 = get(&router, "/jobs?before=71").await;
    assert!(page2.body.contains(">#70<") && page2.body.contains(">#21<"));
    assert!(page2.body.contains("« newest"));
    let page3 = get(&router, "/jobs?before=21").await;
    assert_eq!(page3.body.matches("<td data-label=\"Job\">").count(), 20);
    assert!(
        !page3.body.contains("older »"),
        "the last page has no older link"
    );

    let filtered = get(&router, "/jobs?kind=import_csv&queue=bulk").await;
    let rows = filtered.body.matches("<td data-label=\"Job\">").count();
    assert_eq!(rows, 20, "odd i divisible by 3: 20 of 120");
    assert!(!filtered.body.contains("<code>count</code>"));
    let paused = get(&router, "/jobs?state=paused").await;
    assert_eq!(paused.body.matches("<td data-label=\"Job\">").count(), 1);
    assert!(paused.body.contains(r#"<option value="paused" selected>"#));
    let filtered_next = get(&router, "/jobs?state=queued&kind=count").await;
    assert!(
        filtered_next
            .body
            .contains("/jobs?state=queued&amp;kind=count&amp;before="),
        "the older link keeps the filters"
    );

    for (uri, says) in [
        ("/jobs?state=exploded", "unknown job state `exploded`"),
        ("/jobs?before=abc", "`before` must be a job id"),
        ("/jobs?before=-3", "`before` must be a job id"),
    ] {
        let reply = get(&router, uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.body.contains(says), "{uri}: {}", reply.body);
    }
    let long = "k".repeat(201);
    let reply = get(&router, &format!("/jobs?kind={long}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("longer than 200 characters"));
    // a filter is a bound value, never SQL
    let reply = get(&router, "/jobs?kind=x%27%20OR%201%3D1%20--").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("No job matches."));
}

#[tokio::test]
async fn job_page_shows_params_cursor_history_and_error_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared(
        iterjob_sqlite::SqliteStore::connect(dir.path().join("jobs.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    let id = store
        .job_insert(&NewJob::new("count", json!({"up_to": 100, "sleep_ms": 0})))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    let at = |n: u64| Progress {
        cursor: Some(json!(n)),
        items_done: n,
        items_total: Some(100),
        running_ms: n * 10,
    };
    store
        .job_release(
            id,
            run.token,
            Some(&at(30)),
            &Outcome::Interrupted {
                reason: InterruptReason::TimeSlice,
                run_at: 0,
                error: None,
            },
        )
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    store
        .job_release(
            id,
            run.token,
            Some(&at(42)),
            &Outcome::Retry {
                error: "syncing item 42: upstream timed out: connection reset by peer (attempt 1 of 10)".into(),
                run_at: 0,
            },
        )
        .await
        .unwrap();
    store.job_pause(id).await.unwrap();
    let router = dashboard(Arc::clone(&store));
    let reply = get(&router, &format!("/jobs/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert!(
        body.contains("&quot;up_to&quot;: 100"),
        "parameters, pretty JSON"
    );
    assert!(
        body.contains("<h2>Cursor</h2><pre class=\"json\">42</pre>"),
        "cursor"
    );
    assert!(body.contains("42 / 100 (42.0%)"));
    assert!(
        body.contains("interrupted (time_slice)"),
        "history: interruption with its reason"
    );
    assert!(body.contains("error, will retry"));
    assert!(body.contains("paused by operator"));
    assert!(
        body.contains("<code class=\"cursor\">30</code>"),
        "the cursor at the interruption"
    );
    // the error's cause chain, outermost first
    assert!(body.contains("<li>syncing item 42</li>"), "{body}");
    assert!(body.contains("caused by </span>upstream timed out</li>"));
    assert!(body.contains("caused by </span>connection reset by peer (attempt 1 of 10)</li>"));
    assert!(body.contains("Attempts</th><td>1 of 10"));
    // a paused job offers resume and cancel, not pause or retry
    assert!(body.contains(r#"data-action="resume" data-job-action="1"><input"#));
    assert!(body.contains(r#"data-action="pause" data-job-action="1" hidden>"#));

    let missing = get(&router, "/jobs/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("job 999 not found") || missing.body.contains("999"));
    let bad = get(&router, "/jobs/abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("`abc` is not a job id"));
}

#[tokio::test]
async fn payloads_from_jobs_render_inert_everywhere() {
    let store = shared(MemoryStore::new());
    let id = store
        .job_insert(
            &NewJob::new(XSS_IMG, json!({"name": XSS, "note": XSS_IMG}))
                .queue(XSS_IMG)
                .unique_key(XSS),
        )
        .await
        .unwrap();
    let run = claim(&*store, XSS_IMG).await;
    store
        .job_release(
            id,
            run.token,
            Some(&Progress {
                cursor: Some(json!({"after": XSS})),
                items_done: 1,
                items_total: None,
                running_ms: 5,
            }),
            &Outcome::Failed {
                error: format!("fatal error (no retry): {XSS}: {XSS_IMG}"),
            },
        )
        .await
        .unwrap();
    let router = dashboard(store);
    for uri in [
        "/".to_string(),
        "/jobs".to_string(),
        format!("/jobs/{id}"),
        "/jobs?state=failed".to_string(),
    ] {
        let reply = get(&router, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert_inert(&reply.body);
        assert!(
            reply.body.contains("&lt;img src=x onerror=alert(1)&gt;")
                || reply.body.contains("&lt;script&gt;"),
            "{uri} shows the payload as text"
        );
    }
    let page = get(&router, &format!("/jobs/{id}")).await.body;
    assert!(
        page.contains("&lt;script&gt;alert('xss')&lt;/script&gt;"),
        "in the error chain"
    );
    assert!(
        page.contains("&quot;after&quot;: &quot;&lt;script&gt;"),
        "in the cursor"
    );
    // a filter value echoed back into the page is escaped too
    let reply = get(
        &router,
        "/jobs?kind=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    )
    .await;
    assert_inert(&reply.body);
    assert!(
        reply
            .body
            .contains("value=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\"")
    );
}

#[tokio::test]
async fn actions_pause_resume_cancel_retry_with_the_session_token() {
    let store = shared(MemoryStore::new());
    let id = store
        .job_insert(&NewJob::new("count", json!({"up_to": 5})))
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let body = format!("csrf={CSRF}");
    let act = |action: &str| form_post(&format!("/jobs/{id}/{action}"), &body);

    for (action, state) in [
        ("pause", JobState::Paused),
        ("resume", JobState::Queued),
        ("cancel", JobState::Cancelled),
        ("retry", JobState::Queued),
    ] {
        let reply = send(&router, act(action)).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{action}: {}",
            reply.body
        );
        assert_eq!(reply.location(), format!("/jobs/{id}"));
        assert_eq!(
            store.job_get(id).await.unwrap().unwrap().state,
            state,
            "after {action}"
        );
    }
    let history = store.job_events(id, 10).await.unwrap();
    assert_eq!(history.len(), 4, "each action is in the job's history");

    // an action the state does not allow is a conflict, named
    let reply = send(&router, act("resume")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.body.contains("only paused jobs can be resumed"),
        "{}",
        reply.body
    );
    let reply = send(&router, act("explode")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(&router, form_post("/jobs/77/pause", &body)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // delete: refused while the job may run (with what to do), shown once it may
    let page = get(&router, &format!("/jobs/{id}")).await;
    assert!(
        page.body
            .contains(r#"data-action="delete" data-job-action"#)
            && page.body.contains("hidden"),
        "the delete button is there, hidden while the job is queued"
    );
    let reply = send(&router, act("delete")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.body.contains("cancel or pause it first"),
        "{}",
        reply.body
    );
    store.job_cancel(id).await.unwrap();
    let reply = send(&router, act("delete")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/jobs");
    assert!(store.job_get(id).await.unwrap().is_none(), "deleted");
    assert!(store.job_events(id, 10).await.unwrap().is_empty());
    let reply = send(&router, act("delete")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queues_page_lists_queues_and_pauses_and_resumes_them() {
    let store = shared(MemoryStore::new());
    store
        .job_insert_many(&[
            NewJob::new("count", json!({"up_to": 1})),
            NewJob::new("count", json!({"up_to": 2})).queue("bulk <b>"),
        ])
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let page = get(&router, "/queues").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_inert(&page.body);
    assert!(page.body.contains("bulk &lt;b&gt;"), "{}", page.body);
    assert!(
        page.body.contains(r#"href="/jobs?queue=bulk%20%3Cb%3E""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(">active<"));

    let post = |action: &str| {
        form_post(
            "/queues",
            &format!("csrf={CSRF}&queue=bulk%20%3Cb%3E&action={action}"),
        )
    };
    let reply = send(&router, post("pause")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/queues");
    let pauses = store.queue_pauses().await.unwrap();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].queue, "bulk <b>");
    assert_eq!(pauses[0].mode, iterjob::store::QueuePauseMode::Interrupt);
    let page = get(&router, "/queues").await;
    assert!(page.body.contains("(1 held)"), "{}", page.body);
    assert!(page.body.contains(r#"value="resume""#));

    send(&router, post("pause_let_run")).await;
    assert_eq!(
        store.queue_pauses().await.unwrap()[0].mode,
        iterjob::store::QueuePauseMode::LetRun
    );
    let reply = send(&router, post("resume")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(store.queue_pauses().await.unwrap().is_empty());

    let reply = send(&router, post("explode")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(
        &router,
        form_post("/queues", &format!("csrf={CSRF}&queue=&action=pause")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("queue name must not be empty"),
        "{}",
        reply.body
    );
    // without the session token: refused, nothing paused
    let reply = send(
        &router,
        form_post(
            "/queues",
            "csrf=ffffffffffffffffffffffffffffffff&queue=default&action=pause",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(store.queue_pauses().await.unwrap().is_empty());
}

#[tokio::test]
async fn queues_page_lists_the_schedules_with_their_last_job() {
    let store = shared(MemoryStore::new());
    let registry = registry().schedule(
        iterjob::schedule::Schedule::new("nightly <b>", "0 3 * * *", "count", json!({"up_to": 2}))
            .unwrap()
            .timezone("Europe/Berlin")
            .unwrap(),
    );
    let router = Dashboard::new(Arc::clone(&store))
        .registry(registry)
        .router();
    let page = get(&router, "/queues").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_inert(&page.body);
    assert!(page.body.contains("<h2>Schedules</h2>"), "{}", page.body);
    assert!(page.body.contains("nightly &lt;b&gt;"));
    assert!(page.body.contains("<code>0 3 * * *</code>"));
    assert!(page.body.contains("Europe/Berlin"));
    assert!(page.body.contains("not seen by a worker yet"));
    let outcome = store
        .schedule_tick(&iterjob::store::ScheduleTick {
            name: "nightly <b>".into(),
            previous: None,
            tick: iterjob::store::now_millis(),
            job: Some(NewJob::new("count", json!({"up_to": 2}))),
            skip_if_running: true,
        })
        .await
        .unwrap();
    assert_eq!(outcome, iterjob::store::TickOutcome::Enqueued(1));
    let page = get(&router, "/queues").await;
    assert!(page.body.contains(r#"href="/jobs/1""#), "{}", page.body);
    // without schedules, no section
    let page = get(&dashboard(store), "/queues").await;
    assert!(!page.body.contains("Schedules"));
}

#[tokio::test]
async fn cross_site_and_tokenless_posts_are_refused() {
    let store = shared(MemoryStore::new());
    let id = store
        .job_insert(&NewJob::new("count", json!({"up_to": 5})))
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let uri = format!("/jobs/{id}/cancel");
    let good = format!("csrf={CSRF}");

    // a page on another site posting the form
    let mut request = form_post(&uri, &good);
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let reply = send(&router, request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("another site"), "{}", reply.body);

    // Origin alone, from another host
    let mut request = form_post(&uri, &good);
    request.headers_mut().remove("sec-fetch-site");
    request
        .headers_mut()
        .insert(header::ORIGIN, "http://127.0.0.1:9999".parse().unwrap());
    let reply = send(&router, request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("is not this dashboard"));

    // same origin but no form token, a wrong one, or no session cookie
    for (body, cookie) in [
        ("".to_string(), true),
        ("csrf=ffffffffffffffffffffffffffffffff".to_string(), true),
        (good.clone(), false),
    ] {
        let mut request = form_post(&uri, &body);
        if !cookie {
            request.headers_mut().remove(header::COOKIE);
        }
        let reply = send(&router, request).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "body {body:?}, cookie {cookie}"
        );
        assert!(reply.body.contains("session token"));
    }
    assert_eq!(
        store.job_get(id).await.unwrap().unwrap().state,
        JobState::Queued,
        "no refused request changed the job"
    );
    // a GET never acts
    let reply = get(&router, &uri).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);

    // bodies are bounded
    let huge = format!("csrf={CSRF}&pad={}", "x".repeat(100 * 1024));
    let reply = send(&router, form_post(&uri, &huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn enqueue_validates_parameters_before_storing() {
    let store = shared(MemoryStore::new());
    let router = dashboard(Arc::clone(&store));
    let form = get(&router, "/enqueue").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains(r#"<option value="count">"#));

    let (ct, body) = multipart(
        &[
            ("csrf", CSRF),
            ("kind", "count"),
            ("params", r#"{"up_to": 1000}"#),
            ("queue", "bulk"),
            ("priority", "5"),
        ],
        None,
    );
    let reply = send(&router, multipart_post(&ct, body)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/jobs/1");
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(
        (job.kind.as_str(), job.queue.as_str(), job.priority),
        ("count", "bulk", 5)
    );
    assert_eq!(job.params, json!({"up_to": 1000}));

    for (fields, says) in [
        (
            vec![("kind", "count"), ("params", r#"{"up_to": "lots"}"#)],
            "field `up_to`: invalid type: string",
        ),
        (
            vec![
                ("kind", "count"),
                ("params", r#"{"up_to": 1, "drop": "table"}"#),
            ],
            "unknown field `drop`",
        ),
        (
            vec![("kind", "count"), ("params", "{not json")],
            "not valid JSON",
        ),
        (
            vec![("kind", "nope"), ("params", "{}")],
            "unknown job kind `nope`",
        ),
        (
            vec![
                ("kind", "count"),
                ("params", r#"{"up_to": 1}"#),
                ("priority", "high"),
            ],
            "the priority must be an integer",
        ),
        (vec![("kind", "count"), ("params", XSS)], "not valid JSON"),
    ] {
        let mut all = vec![("csrf", CSRF)];
        all.extend(fields.iter().copied());
        let (ct, body) = multipart(&all, None);
        let reply = send(&router, multipart_post(&ct, body)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(reply.body.contains(says), "{fields:?}: {}", reply.body);
        assert_inert(&reply.body);
    }
    assert_eq!(
        store.job_list(&Default::default()).await.unwrap().len(),
        1,
        "nothing invalid was stored"
    );

    // without the session token
    let (ct, body) = multipart(&[("kind", "count"), ("params", r#"{"up_to": 1}"#)], None);
    let reply = send(&router, multipart_post(&ct, body)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // a dashboard without a registry cannot enqueue, and says why
    let bare = Dashboard::new(Arc::clone(&store)).router();
    let reply = get(&bare, "/enqueue").await;
    assert!(reply.body.contains("knows no job kinds"));
}

#[tokio::test]
async fn csv_kinds_take_an_uploaded_file() {
    let store = shared(MemoryStore::new());
    let uploads = tempfile::tempdir().unwrap();
    let router = Dashboard::new(Arc::clone(&store))
        .registry(registry())
        .csv_upload("import_csv", "path", uploads.path())
        .max_upload_bytes(64 * 1024)
        .router();
    let csv = b"id,name\n1,Ada\n2,\"Grace, Hopper\"\n";
    let (ct, body) = multipart(
        &[
            ("csrf", CSRF),
            ("kind", "import_csv"),
            ("params", r#"{"dry_run": true}"#),
        ],
        Some(("people.csv", csv)),
    );
    let reply = send(&router, multipart_post(&ct, body)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let job = store.job_get(1).await.unwrap().unwrap();
    let path = job.params["path"]
        .as_str()
        .expect("the path parameter is set");
    assert!(path.starts_with(uploads.path().to_str().unwrap()), "{path}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        csv,
        "the upload is stored as sent"
    );
    assert_eq!(job.params["dry_run"], json!(true));

    for (fields, file, says) in [
        (
            vec![("kind", "import_csv"), ("params", "{}")],
            Some(("bad.csv", b"a,b\n1,2,3\n".as_slice())),
            "is not a valid CSV file",
        ),
        (
            vec![("kind", "import_csv"), ("params", "{}")],
            None,
            "reads a CSV file: choose one to upload",
        ),
        (
            vec![("kind", "count"), ("params", r#"{"up_to": 3}"#)],
            Some(("x.csv", b"a\n1\n".as_slice())),
            "does not read a CSV file",
        ),
    ] {
        let mut all = vec![("csrf", CSRF)];
        all.extend(fields.iter().copied());
        let (ct, body) = multipart(&all, file);
        let reply = send(&router, multipart_post(&ct, body)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{says}");
        assert!(reply.body.contains(says), "{says}: {}", reply.body);
    }
    // too large an upload is refused before it is read whole
    let big = vec![b'a'; 80 * 1024];
    let (ct, body) = multipart(
        &[("csrf", CSRF), ("kind", "import_csv"), ("params", "{}")],
        Some(("big.csv", &big)),
    );
    let reply = send(&router, multipart_post(&ct, body)).await;
    assert!(
        reply.status == StatusCode::PAYLOAD_TOO_LARGE || reply.status == StatusCode::BAD_REQUEST,
        "{}",
        reply.status
    );
    assert_eq!(store.job_list(&Default::default()).await.unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(uploads.path()).unwrap().count(),
        1,
        "refused files are not kept"
    );
}

#[tokio::test]
async fn a_token_guards_every_route() {
    let token = "s3cret-token-0123456789";
    let store = shared(MemoryStore::new());
    let router = Dashboard::new(store).token(token).router();

    let reply = get(&router, "/").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.body.contains("Auth token"),
        "a browser is shown the login form"
    );
    let reply = send(
        &router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    let wrong = Request::get("/metrics")
        .header(header::AUTHORIZATION, "Bearer s3cret-token-0123456780")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, wrong).await.status, StatusCode::UNAUTHORIZED);
    let right = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, right).await.status, StatusCode::OK);

    let reply = send(&router, form_post("/login", "token=guess")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = send(&router, form_post("/login", &format!("token={token}"))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let cookie = reply.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains(token),
        "the cookie does not hold the token in clear"
    );
    let session = cookie.split(';').next().unwrap();
    let reply = send(
        &router,
        Request::get("/jobs")
            .header(header::COOKIE, session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the login cookie opens the pages"
    );
}

#[tokio::test]
async fn binding_beyond_loopback_needs_a_token() {
    let store = shared(MemoryStore::new());
    let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = Dashboard::new(Arc::clone(&store))
        .serve(public, iterjob::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenRequired { .. }), "{err}");
    assert!(err.to_string().contains("without an auth token"), "{err}");
    let err = Dashboard::new(Arc::clone(&store))
        .token("short")
        .check_bind(public)
        .unwrap_err();
    assert!(matches!(err, Error::WeakToken { len: 5, .. }), "{err}");
    let v6: SocketAddr = "[::]:0".parse().unwrap();
    assert!(Dashboard::new(Arc::clone(&store)).check_bind(v6).is_err());
    Dashboard::new(Arc::clone(&store))
        .token("a-long-enough-token-123")
        .check_bind(public)
        .expect("a token allows any address");

    // loopback binds without one, on a free port, and serves
    let (listener, router) = Dashboard::new(store)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("loopback needs no token");
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    drop(router);
}

#[tokio::test]
async fn metrics_report_jobs_by_state() {
    let store = shared(MemoryStore::new());
    store
        .job_insert_many(&[
            NewJob::new("count", json!({"up_to": 1})),
            NewJob::new("count", json!({"up_to": 2})),
        ])
        .await
        .unwrap();
    store.job_cancel(1).await.unwrap();
    let router = dashboard(store);
    let reply = get(&router, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(reply.body.contains("# TYPE iterjob_jobs gauge"));
    assert!(reply.body.contains("iterjob_jobs{state=\"queued\"} 1"));
    assert!(reply.body.contains("iterjob_jobs{state=\"cancelled\"} 1"));
    assert!(reply.body.contains("iterjob_jobs{state=\"failed\"} 0"));
}

#[tokio::test]
async fn metrics_report_each_queues_backlog() {
    let store = shared(MemoryStore::new());
    store
        .job_insert_many(&[
            NewJob::new("count", json!({"up_to": 1})),
            NewJob::new("count", json!({"up_to": 2})).queue("bulk \"x\""),
            NewJob::new("count", json!({"up_to": 3})).queue("bulk \"x\""),
        ])
        .await
        .unwrap();
    store
        .queue_pause("bulk \"x\"", iterjob::store::QueuePauseMode::Interrupt)
        .await
        .unwrap();
    let reply = get(&dashboard(store), "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert!(
        body.contains("# TYPE iterjob_queue_waiting gauge"),
        "{body}"
    );
    assert!(
        body.contains("iterjob_queue_waiting{queue=\"default\"} 1"),
        "{body}"
    );
    // the label is escaped; a paused queue's jobs are no backlog
    assert!(
        body.contains("iterjob_queue_waiting{queue=\"bulk \\\"x\\\"\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("iterjob_queue_paused{queue=\"bulk \\\"x\\\"\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("iterjob_queue_paused{queue=\"default\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("iterjob_queue_jobs{queue=\"bulk \\\"x\\\"\",state=\"queued\"} 2"),
        "{body}"
    );
    assert!(body.contains("iterjob_queue_oldest_wait_seconds{queue=\"default\"}"));
    assert!(body.contains("iterjob_queue_work_left_seconds{queue=\"default\"}"));
}

#[tokio::test]
async fn live_stream_sends_progress_as_server_sent_events() {
    let store = shared(MemoryStore::new());
    let id = store
        .job_insert(&NewJob::new("count", json!({"up_to": 10})))
        .await
        .unwrap();
    let router = Dashboard::new(Arc::clone(&store))
        .live_interval(Duration::from_millis(100))
        .router();
    let response = router
        .clone()
        .oneshot(
            Request::get(format!("/live?ids={id}&counts=1"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let read_until = |text: &str, needle: &str| text.contains(needle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !read_until(&text, "event: counts") || !read_until(&text, "event: jobs") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("events within 5 s")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains(&format!("\"id\":{id}")), "{text}");
    assert!(text.contains("\"state\":\"queued\""), "{text}");
    assert!(text.contains("\"queued\":\"1\""), "{text}");
    // a change is sent on a later tick
    store.job_pause(id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("\"state\":\"paused\"") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("the change within 5 s")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("\"can_resume\":true"));

    let bad = get(&router, "/live?ids=1,x").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("`x` is not a job id"));
}

#[tokio::test]
async fn mounted_under_a_path_links_stay_inside_it() {
    let store = shared(MemoryStore::new());
    store
        .job_insert(&NewJob::new("count", json!({"up_to": 1})))
        .await
        .unwrap();
    let jobs_admin = Dashboard::new(Arc::clone(&store))
        .registry(registry())
        .mount_path("/admin/jobs/")
        .router();
    let app = axum::Router::new().nest("/admin/jobs", jobs_admin);
    let overview = get(&app, "/admin/jobs").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview
            .body
            .contains(r#"<a class="brand" href="/admin/jobs">"#)
    );
    assert!(
        overview
            .body
            .contains(r#"href="/admin/jobs/jobs?state=queued""#)
    );
    let reply = get(&app, "/admin/jobs/jobs/1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains(r#"href="/admin/jobs/assets/app.css""#));
    assert!(reply.body.contains(r#"action="/admin/jobs/jobs/1/pause""#));
    assert!(reply.body.contains(r#"data-base="/admin/jobs""#));
    let reply = send(
        &app,
        form_post("/admin/jobs/jobs/1/pause", &format!("csrf={CSRF}")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/admin/jobs/jobs/1");
    assert_eq!(
        store.job_get(1).await.unwrap().unwrap().state,
        JobState::Paused
    );
}

#[tokio::test]
async fn a_partitioned_job_lists_its_partitions_and_a_partition_its_parent() {
    let store = shared(MemoryStore::new());
    let parent = store
        .job_insert(&NewJob::new("count", json!({"up_to": 100})).partitions(2))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    let children = store
        .job_partition(
            parent,
            run.token,
            &[json!({"up_to": 50}), json!({"up_to": 100})],
        )
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let page = get(&router, &format!("/jobs/{parent}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Partitions"), "{}", page.body);
    assert!(
        page.body.contains("2 partitions (0 from dynamic splits)"),
        "{}",
        page.body
    );
    for child in &children {
        assert!(
            page.body.contains(&format!("href=\"/jobs/{child}\"")),
            "the parent's page links partition {child}"
        );
    }
    let child = get(&router, &format!("/jobs/{}", children[0])).await;
    assert!(
        child.body.contains("One partition of job"),
        "{}",
        child.body
    );
    assert!(child.body.contains(&format!("href=\"/jobs/{parent}\"")));

    // the job list shows the partitions, unless asked for top-level jobs only
    let links = |body: &str, id: i64| body.contains(&format!("href=\"/jobs/{id}\""));
    let all = get(&router, "/jobs").await;
    assert!(links(&all.body, parent) && children.iter().all(|c| links(&all.body, *c)));
    let top = get(&router, "/jobs?top=1").await;
    assert_eq!(top.status, StatusCode::OK);
    assert!(links(&top.body, parent), "{}", top.body);
    assert!(
        children.iter().all(|c| !links(&top.body, *c)),
        "no partition in the top-level list: {}",
        top.body
    );
    assert!(
        top.body.contains(r#"name="top" value="1" checked"#),
        "{}",
        top.body
    );
    let bad = get(&router, "/jobs?top=yes").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("`top` must be 1"), "{}", bad.body);
}

/// The holes a probe from outside found (DNS rebinding, a trusted forwarded host,
/// weak tokens, unlimited login guesses, the token in the cookie, large bodies
/// before the form token): each closed, over the router's HTTP interface.
#[tokio::test]
async fn the_dashboard_refuses_what_an_attacker_tries() {
    let store = shared(MemoryStore::new());
    let host = |router: &axum::Router, name: &'static str| {
        let request = Request::get("/jobs")
            .header(header::HOST, name)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        let router = router.clone();
        async move { send(&router, request).await }
    };

    // no token: only loopback names are served (DNS rebinding gets nothing)
    let open = Dashboard::new(Arc::clone(&store)).router();
    let reply = host(&open, "attacker.example:18096").await;
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(reply.body.contains("`attacker.example`"), "{}", reply.body);
    assert!(!reply.body.contains("csrf"));
    for name in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
        assert_eq!(host(&open, name).await.status, StatusCode::OK, "{name}");
    }
    let named = Dashboard::new(Arc::clone(&store))
        .allowed_hosts(["jobs.internal"])
        .router();
    assert_eq!(
        host(&named, "jobs.internal:8080").await.status,
        StatusCode::OK
    );
    assert_eq!(
        host(&named, "attacker.example").await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    // with a token, any name reaches the token check
    let guarded = Dashboard::new(Arc::clone(&store))
        .token("s3cret-token-0123456789")
        .router();
    assert_eq!(
        host(&guarded, "jobs.example.com").await.status,
        StatusCode::UNAUTHORIZED
    );

    // X-Forwarded-Host (and -Proto) are believed only when declared
    let forwarded = |uri: &str, proto: Option<&str>| {
        let mut request = Request::post(uri)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "https://jobs.example.com")
            .header("x-forwarded-host", "jobs.example.com");
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        request
            .header(header::COOKIE, format!("iterjob_csrf={CSRF}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={CSRF}")))
            .unwrap()
    };
    let reply = send(&open, forwarded("/jobs/1/pause", Some("https"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("Origin"), "{}", reply.body);
    let behind_proxy = Dashboard::new(Arc::clone(&store))
        .trust_forwarded_headers(true)
        .router();
    let reply = send(&behind_proxy, forwarded("/jobs/1/pause", Some("https"))).await;
    assert_ne!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    // the scheme counts: an https origin at a dashboard not known to be on https is
    // refused with the hint to declare it; a plain-http page of the same name
    // cannot act on a dashboard that is
    let reply = send(&behind_proxy, forwarded("/jobs/1/pause", None)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("--https"), "{}", reply.body);
    let on_tls = Dashboard::new(Arc::clone(&store))
        .allowed_hosts(["jobs.example.com"])
        .served_over_https(true)
        .router();
    let plain_page = Request::post("/jobs/1/pause")
        .header(header::HOST, "jobs.example.com")
        .header(header::ORIGIN, "http://jobs.example.com")
        .header(header::COOKIE, format!("iterjob_csrf={CSRF}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={CSRF}")))
        .unwrap();
    let reply = send(&on_tls, plain_page).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("uses http"), "{}", reply.body);
    // and its cookies are Secure (never sent over plain http); not otherwise
    let page = |router: &axum::Router| {
        let request = Request::get("/jobs")
            .header(header::HOST, "jobs.example.com")
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();
        let router = router.clone();
        async move { send(&router, request).await }
    };
    let reply = page(&on_tls).await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let reply = get(&open, "/jobs").await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");

    // weak tokens are refused for a public address
    let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
    for weak in [
        " ".repeat(16),
        "a".repeat(32),
        "abababababababab".to_string(),
    ] {
        let err = Dashboard::new(Arc::clone(&store))
            .token(weak.clone())
            .check_bind(public)
            .unwrap_err();
        assert!(matches!(err, Error::WeakToken { .. }), "{weak:?}: {err}");
    }

    // the login cookie is a random session, not the token; guesses are limited
    let token = "s3cret-token-0123456789";
    let router = Dashboard::new(Arc::clone(&store)).token(token).router();
    let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    let forged = Request::get("/jobs")
        .header(header::COOKIE, format!("iterjob_token={hex}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, forged).await.status, StatusCode::UNAUTHORIZED);
    for _ in 0..10 {
        let reply = send(&router, form_post("/login", "token=guess-guess-guess")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = send(&router, form_post("/login", &format!("token={token}"))).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    let bearer = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, bearer).await.status, StatusCode::OK);

    // no kind takes an upload: the enqueue form is as small as any other
    let big = "x".repeat(1 << 20);
    let (content_type, body) = multipart(&[("csrf", CSRF), ("kind", "k"), ("params", &big)], None);
    let reply = send(&open, multipart_post(&content_type, body)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn throttle_switches_go_on_and_off_from_the_queues_page_and_a_throttled_job_says_why() {
    let store = shared(MemoryStore::new());
    let id = store
        .job_insert(&NewJob::new("count", json!({"up_to": 10})))
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let page = get(&router, "/queues").await;
    assert!(
        page.body.contains("No throttle switch is on"),
        "{}",
        page.body
    );

    let on = form_post(
        "/throttles",
        &format!("csrf={CSRF}&queue=&kind=count&for=10m&reason=deploy%20%3Cx%3E&action=on"),
    );
    let reply = send(&router, on).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/queues#throttles");
    let switches = store
        .throttle_switches(iterjob::store::now_millis())
        .await
        .unwrap();
    assert_eq!(switches.len(), 1);
    assert_eq!(
        (switches[0].queue.as_deref(), switches[0].kind.as_deref()),
        (None, Some("count"))
    );
    assert!(switches[0].until.is_some());
    let page = get(&router, "/queues").await;
    assert_inert(&page.body);
    assert!(
        page.body
            .contains(r#"data-throttle="kind &quot;count&quot;""#),
        "{}",
        page.body
    );
    assert!(page.body.contains("deploy &lt;x&gt;"), "{}", page.body);
    let metrics = get(&router, "/metrics").await;
    assert!(
        metrics
            .body
            .contains("iterjob_throttle_switch_since_seconds{queue=\"*\",kind=\"count\"}"),
        "{}",
        metrics.body
    );

    // a bad duration is named, nothing switched
    let reply = send(
        &router,
        form_post("/throttles", &format!("csrf={CSRF}&for=soon&action=on")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("is not a duration"), "{}", reply.body);
    // without the session token: refused
    let reply = send(
        &router,
        form_post(
            "/throttles",
            "csrf=ffffffffffffffffffffffffffffffff&kind=count&action=off",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // a job the switch sent back says why it waits
    let claimed = claim(&*store, "count").await;
    assert_eq!(claimed.job.id, id);
    store
        .job_release(
            id,
            claimed.token,
            None,
            &Outcome::Interrupted {
                reason: InterruptReason::Throttled,
                run_at: iterjob::store::now_millis() + 5_000,
                error: Some("throttled by the operator's switch since now: deploy".into()),
            },
        )
        .await
        .unwrap();
    let page = get(&router, &format!("/jobs/{id}")).await;
    assert!(page.body.contains("<h2>Throttled</h2>"), "{}", page.body);
    assert!(!page.body.contains("Last error"), "{}", page.body);

    let off = form_post(
        "/throttles",
        &format!("csrf={CSRF}&queue=&kind=count&action=off"),
    );
    let reply = send(&router, off).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(
        store
            .throttle_switches(iterjob::store::now_millis())
            .await
            .unwrap()
            .is_empty()
    );
}

/// "Running now" shows a running partitioned job once, with its partitions'
/// progress summed, not a row per partition besides.
#[tokio::test]
async fn running_now_lists_a_partitioned_job_once() {
    let store = shared(MemoryStore::new());
    let parent = store
        .job_insert(&NewJob::new("count", json!({"up_to": 90})).partitions(3))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    let children = store
        .job_partition(
            parent,
            run.token,
            &[
                json!({"up_to": 30}),
                json!({"up_to": 60}),
                json!({"up_to": 90}),
            ],
        )
        .await
        .unwrap();
    for _ in &children {
        let part = claim(&*store, "count").await;
        store
            .job_checkpoint(
                part.job.id,
                part.token,
                &Progress {
                    cursor: Some(json!(10)),
                    items_done: 10,
                    items_total: Some(30),
                    running_ms: 60_000,
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    let router = dashboard(store);
    let page = get(&router, "/").await;
    let running = page
        .body
        .split("<h2>Running now</h2>")
        .nth(1)
        .expect("the running section");
    let running = running.split("</section>").next().unwrap();
    assert!(
        running.contains(&format!("href=\"/jobs/{parent}\"")),
        "{running}"
    );
    for child in &children {
        assert!(
            !running.contains(&format!("href=\"/jobs/{child}\"")),
            "partition {child} listed besides its parent: {running}"
        );
    }
    assert!(
        running.contains("30 / 90"),
        "the summed progress: {running}"
    );
    // the cards count jobs, not rows: one running job, not four
    assert!(
        page.body
            .contains(r#"<span class="n" data-count="running">1</span>"#),
        "{}",
        page.body
    );
    // and so do the live updates
    let live = live_until(&router, "/live?counts=1", "event: counts").await;
    assert!(live.contains(r#""running":"1""#), "{live}");
}

/// A failed job's bar is red and a cancelled one's grey (their progress carries the
/// state the stylesheet colours by), and the stylesheet follows the system's dark
/// mode.
#[tokio::test]
async fn bars_are_coloured_by_state_and_the_theme_follows_the_system_or_the_switch() {
    let store = shared(MemoryStore::new());
    for _ in 0..2 {
        store
            .job_insert(&NewJob::new("count", json!({"up_to": 10})))
            .await
            .unwrap();
    }
    let failed = claim(&*store, "count").await;
    store
        .job_release(
            failed.job.id,
            failed.token,
            None,
            &Outcome::Failed {
                error: "row 7 is corrupt".into(),
            },
        )
        .await
        .unwrap();
    let cancelled = store.job_cancel(2).await.unwrap();
    let router = dashboard(store);
    let page = get(&router, &format!("/jobs/{}", failed.job.id)).await;
    assert!(
        page.body.contains(&format!(
            r#"class="progress" data-job="{}" data-state="failed""#,
            failed.job.id
        )),
        "{}",
        page.body
    );
    let page = get(&router, &format!("/jobs/{}", cancelled.id)).await;
    assert!(
        page.body.contains(r#"data-state="cancelled""#),
        "{}",
        page.body
    );
    let css = get(&router, "/assets/app.css").await.body;
    for rule in [
        // the system's scheme by default, each colour given for light and dark
        "color-scheme: light dark",
        "--bg: light-dark(",
        // unless the operator picked one with the switch
        r#":root[data-theme="dark"] { color-scheme: dark; }"#,
        r#":root[data-theme="light"] { color-scheme: light; }"#,
        r#".progress[data-state="failed"] { --bar: var(--bad); }"#,
        r#".progress[data-state="cancelled"] { --bar: var(--idle); }"#,
    ] {
        assert!(css.contains(rule), "the stylesheet lacks `{rule}`");
    }
    // every colour of the stylesheet's rules is a variable, so the dark scheme
    // reaches them all (the header's and buttons' white text excepted)
    let rules_outside_variables: Vec<&str> = css
        .lines()
        .filter(|l| !l.trim_start().starts_with("--") && l.contains('#'))
        .filter(|l| !l.contains("color: #fff") && !l.contains(".live-status"))
        .filter(|l| !l.trim_start().starts_with("/*"))
        .collect();
    assert!(
        rules_outside_variables.is_empty(),
        "colours outside the theme: {rules_outside_variables:#?}"
    );
    // every variable holding a colour has its dark value
    let single: Vec<&str> = css
        .lines()
        .filter(|l| l.trim_start().starts_with("--"))
        .flat_map(|l| l.split(';'))
        .filter(|d| d.contains('#') && !d.contains("light-dark("))
        .collect();
    assert!(
        single.is_empty(),
        "colours without a dark value: {single:?}"
    );
    // the switch, and the script that applies its choice before the first paint
    assert!(page.body.contains(r#"id="theme""#));
    assert!(
        page.body
            .contains(r#"<script src="/assets/theme.js"></script>"#)
    );
    let theme = get(&router, "/assets/theme.js").await;
    assert_eq!(theme.status, StatusCode::OK);
    assert!(
        theme
            .body
            .contains("document.documentElement.dataset.theme")
    );
}

/// A failed job's page puts its error right after its bar, before the details and
/// the data (on a phone they would push it screens down).
#[tokio::test]
async fn a_failed_jobs_error_comes_before_its_details() {
    let store = shared(MemoryStore::new());
    store
        .job_insert(&NewJob::new("count", json!({"up_to": 10})))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    store
        .job_release(
            run.job.id,
            run.token,
            None,
            &Outcome::Failed {
                error: "row 7 is corrupt".into(),
            },
        )
        .await
        .unwrap();
    let page = get(&dashboard(store), &format!("/jobs/{}", run.job.id))
        .await
        .body;
    let error = page.find("Last error").expect("the error panel");
    let details = page.find("<h2>Details</h2>").expect("the details panel");
    let bar = page.find(r#"class="progress""#).expect("the bar");
    assert!(
        bar < error && error < details,
        "bar, then error, then details"
    );
}

#[tokio::test]
async fn a_failed_job_shows_the_item_it_failed_on_and_its_backtrace_inert() {
    let store = shared(MemoryStore::new());
    store
        .job_insert(&NewJob::new("count", json!({"up_to": 10})))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    let failure = iterjob::Failure {
        item: Some(json!({"id": 7, "name": XSS})),
        attempt: 3,
        worker: XSS_IMG.into(),
        at: iterjob::store::now_millis(),
        backtrace: Some(format!(
            "   0: count::process\n             at src/count.rs:12:9 {XSS}"
        )),
    };
    store
        .job_note_failure(run.job.id, run.token, &failure)
        .await
        .unwrap();
    store
        .job_release(
            run.job.id,
            run.token,
            None,
            &Outcome::Failed {
                error: "row 7 is corrupt".into(),
            },
        )
        .await
        .unwrap();
    let page = get(&dashboard(store), &format!("/jobs/{}", run.job.id))
        .await
        .body;
    assert_inert(&page);
    let error = page.find("Last error").expect("the error panel");
    let item = page.find("Failed on item").expect("the failing item");
    let details = page.find("<h2>Details</h2>").expect("the details panel");
    assert!(
        error < item && item < details,
        "the item is in the error panel"
    );
    assert!(
        page.contains("&quot;id&quot;:7"),
        "the item's cursor is shown"
    );
    assert!(page.contains("attempt 3 on"), "the attempt and worker");
    assert!(
        page.contains("Backtrace of the panic") && page.contains("count::process"),
        "the backtrace, folded"
    );
}

/// Fails `n` fresh jobs of `kind` through a claim and a release.
async fn failed_jobs(store: &Arc<dyn Store>, kind: &str, n: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        store
            .job_insert(&NewJob::new(kind, json!({"up_to": 3})))
            .await
            .unwrap();
        let run = claim(&**store, kind).await;
        store
            .job_release(
                run.job.id,
                run.token,
                None,
                &Outcome::Failed {
                    error: "bad row".into(),
                },
            )
            .await
            .unwrap();
        ids.push(run.job.id);
    }
    ids
}

#[tokio::test]
async fn bulk_actions_reach_the_ticked_jobs_or_all_matching() {
    let store = shared(MemoryStore::new());
    let failed = failed_jobs(&store, "count", 3).await;
    let other_kind = failed_jobs(&store, "other", 1).await;
    let waiting = store
        .job_insert(&NewJob::new("count", json!({"up_to": 3})))
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));
    let state_of = |id: JobId| {
        let store = Arc::clone(&store);
        async move { store.job_get(id).await.unwrap().unwrap().state }
    };

    // the list offers the bulk form, a checkbox per job tied to it
    let list = get(&router, "/jobs?state=failed&kind=count").await.body;
    assert!(list.contains(r#"id="bulk""#), "the bulk form");
    assert!(
        list.contains(&format!(r#"form="bulk" name="id" value="{}""#, failed[0])),
        "a checkbox per job"
    );
    assert!(list.contains("Apply to all matching"));

    // all matching: every failed job of kind `count` is retried, nothing else
    let body = format!("csrf={CSRF}&action=retry&scope=all&state=failed&kind=count");
    let reply = send(&router, form_post("/jobs/bulk", &body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.body.contains("applied to <strong>3</strong> jobs"),
        "{}",
        reply.body
    );
    for id in &failed {
        assert_eq!(state_of(*id).await, JobState::Queued, "job {id} retried");
    }
    assert_eq!(
        state_of(other_kind[0]).await,
        JobState::Failed,
        "another kind"
    );

    // ticked: cancel two of them and the waiting one; a finished job is refused,
    // counted and named
    let body = format!(
        "csrf={CSRF}&action=cancel&scope=selected&id={}&id={}&id={waiting}&id={}",
        failed[0], failed[1], other_kind[0]
    );
    let reply = send(&router, form_post("/jobs/bulk", &body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("<strong>3</strong>"), "{}", reply.body);
    assert!(
        reply.body.contains("1 not in a state for it"),
        "{}",
        reply.body
    );
    assert_eq!(state_of(failed[0]).await, JobState::Cancelled);
    assert_eq!(state_of(waiting).await, JobState::Cancelled);
    assert_eq!(state_of(failed[2]).await, JobState::Queued, "not ticked");

    // what an operator or an attacker gets wrong
    for (body, status, says) in [
        (
            format!("csrf={CSRF}&action=retry&scope=all"),
            StatusCode::BAD_REQUEST,
            "filter the list",
        ),
        (
            format!("csrf={CSRF}&action=retry&scope=selected"),
            StatusCode::BAD_REQUEST,
            "no job is ticked",
        ),
        (
            format!("csrf={CSRF}&action=explode&scope=all&state=failed"),
            StatusCode::BAD_REQUEST,
            "unknown bulk action",
        ),
        (
            format!("csrf={CSRF}&action=retry&scope=selected&id=1%3Bdrop"),
            StatusCode::BAD_REQUEST,
            "is not a job id",
        ),
        (
            format!(
                "csrf={CSRF}&action=retry&scope=all&kind={}",
                XSS.replace('<', "%3C").replace('>', "%3E")
            ),
            StatusCode::OK,
            "applied to <strong>0</strong> jobs",
        ),
        (
            "action=cancel&scope=all&state=queued".to_string(),
            StatusCode::FORBIDDEN,
            "",
        ),
    ] {
        let reply = send(&router, form_post("/jobs/bulk", &body)).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert!(reply.body.contains(says), "{body}: {}", reply.body);
        assert_inert(&reply.body);
    }
    assert_eq!(
        state_of(failed[2]).await,
        JobState::Queued,
        "a refused form changed nothing"
    );
}

#[tokio::test]
async fn tasks_list_every_kind_with_its_description_counts_and_last_runs() {
    let store = shared(MemoryStore::new());
    for up_to in [3, 4] {
        store
            .job_insert(&NewJob::new("count", json!({ "up_to": up_to })))
            .await
            .unwrap();
    }
    // a kind this dashboard does not register, named with a payload
    store
        .job_insert(&NewJob::new(XSS_IMG, json!({})))
        .await
        .unwrap();
    let run = claim(&*store, "count").await;
    store
        .job_release(
            run.job.id,
            run.token,
            None,
            &Outcome::Failed {
                error: format!("boom {XSS}"),
            },
        )
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));

    let reply = get(&router, "/tasks").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert!(body.contains(r#"href="/tasks/count""#), "{body}");
    assert!(body.contains("Counts to a number, sleeping a while per item."));
    assert!(body.contains(r#"href="/tasks/import_csv""#));
    assert!(body.contains("No description (set"), "import_csv has none");
    assert!(
        body.contains(r#"href="/jobs?kind=count&amp;state=failed""#) && body.contains("1 failed"),
        "counts link to the filtered list: {body}"
    );
    assert!(body.contains("1 queued"));
    assert!(body.contains(r#"href="/jobs/2""#) && body.contains(r#"href="/jobs/1""#));
    assert!(body.contains("Never run."), "import_csv has no runs");
    assert!(
        body.contains("Not registered in this dashboard"),
        "a kind seen only in the store is listed"
    );
    assert_inert(body);

    // a kind's page: the typed form from its schema, defaults and help texts
    let reply = get(&router, "/tasks/count").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert!(body.contains(r#"name="p.up_to""#) && body.contains(r#"type="number""#));
    assert!(body.contains("Counts from 0 up to this, exclusive."));
    assert!(
        body.contains(r#"name="p.sleep_ms" value="0""#),
        "the default is prefilled: {body}"
    );
    assert!(body.contains(r#"min="0""#), "u64 has a lower bound");
    assert!(body.contains("Advanced: the parameters as JSON"));
    assert!(body.contains("set-cookie") || reply.headers.contains_key(header::SET_COOKIE));

    // a bad value: the field's own message, nothing stored
    let post = |fields: Vec<(&'static str, String)>| {
        let router = router.clone();
        async move {
            let mut all: Vec<(&str, &str)> = vec![("csrf", CSRF)];
            all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
            let (ct, body) = multipart(&all, None);
            send(&router, multipart_post_to("/tasks/count", &ct, body)).await
        }
    };
    let reply = post(vec![
        ("p.up_to", "forty".into()),
        ("p.sleep_ms", "-3".into()),
    ])
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("2 fields to fix"), "{}", reply.body);
    assert!(reply.body.contains(r#"id="f-up_to-error""#));
    assert!(reply.body.contains("`forty` is not a whole number"));
    assert!(reply.body.contains("must be at least 0"));
    assert!(
        reply.body.contains(r#"value="forty""#),
        "what was typed is shown again"
    );
    let reply = post(vec![("p.up_to", XSS.into())]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_inert(&reply.body);
    let reply = post(vec![("p.sleep_ms", "5".into())]).await;
    assert!(reply.body.contains("required: enter a value"));
    // the JSON box, when filled, wins; the deserializer's message names the field
    let reply = post(vec![
        ("p.up_to", "5".into()),
        ("params", r#"{"up_to": 1, "drop": "table"}"#.into()),
    ])
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("unknown field `drop`"),
        "{}",
        reply.body
    );
    assert_eq!(
        store.job_list(&Default::default()).await.unwrap().len(),
        3,
        "nothing invalid was stored"
    );

    // a good one enqueues, with queue and priority
    let reply = post(vec![
        ("p.up_to", " 40 ".into()),
        ("p.sleep_ms", "".into()),
        ("queue", "bulk".into()),
        ("priority", "2".into()),
    ])
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/jobs/4");
    let job = store.job_get(4).await.unwrap().unwrap();
    assert_eq!(job.params, json!({"up_to": 40}));
    assert_eq!((job.queue.as_str(), job.priority), ("bulk", 2));

    // no session token: refused before reading
    let (ct, body) = multipart(&[("p.up_to", "1")], None);
    let mut request = multipart_post_to("/tasks/count", &ct, body);
    request.headers_mut().remove(header::COOKIE);
    assert_eq!(send(&router, request).await.status, StatusCode::FORBIDDEN);

    // unknown kinds: a 404 page naming the registered ones, inert
    let reply = get(&router, "/tasks/%3Cscript%3Ealert('xss')%3C%2Fscript%3E").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("Registered: count, import_csv."));
    assert_inert(&reply.body);
    // a kind only seen in the store has a page, without a form
    let reply = get(&router, &format!("/tasks/{}", percent(XSS_IMG))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.body.contains("Run it"));
    assert_inert(&reply.body);
    let (ct, body) = multipart(&[("csrf", CSRF)], None);
    let reply = send(&router, multipart_post_to("/tasks/nope", &ct, body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("unknown job kind `nope`"));
}

#[tokio::test]
async fn a_csv_kind_takes_its_file_on_the_tasks_page() {
    let store = shared(MemoryStore::new());
    let uploads = tempfile::tempdir().unwrap();
    let router = Dashboard::new(Arc::clone(&store))
        .registry(registry())
        .csv_upload("import_csv", "path", uploads.path())
        .router();
    let page = get(&router, "/tasks/import_csv").await;
    assert!(page.body.contains(r#"type="file""#));
    assert!(
        !page.body.contains(r#"name="p.path""#),
        "the file parameter is set by the upload, not typed"
    );
    assert!(page.body.contains(r#"name="p.dry_run""#) && page.body.contains(r#"type="checkbox""#));
    let (ct, body) = multipart(
        &[("csrf", CSRF), ("p.dry_run", "true")],
        Some(("people.csv", b"id\n1\n".as_slice())),
    );
    let reply = send(&router, multipart_post_to("/tasks/import_csv", &ct, body)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(job.params["dry_run"], json!(true));
    assert!(
        job.params["path"]
            .as_str()
            .unwrap()
            .starts_with(uploads.path().to_str().unwrap())
    );
    // without the file: the error says to choose one
    let (ct, body) = multipart(&[("csrf", CSRF)], None);
    let reply = send(&router, multipart_post_to("/tasks/import_csv", &ct, body)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains("reads a CSV file: choose one to upload"),
        "{}",
        reply.body
    );
}

/// Percent-encodes a path segment.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The live stream's text until it holds `needle` (within 5 s).
async fn live_until(router: &axum::Router, uri: &str, needle: &str) -> String {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(needle) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("`{needle}` within 5 s: {text}"))
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn overview_lists_workers_and_queues_live() {
    use iterjob::store::{WorkerPresence, now_millis};
    let store = shared(MemoryStore::new());
    store
        .job_insert(&NewJob::new("count", json!({"up_to": 5})).queue("bulk"))
        .await
        .unwrap();
    store
        .queue_pause("bulk", iterjob::store::QueuePauseMode::Interrupt)
        .await
        .unwrap();
    let now = now_millis();
    let mut alive = WorkerPresence::new("worker-a", now);
    alive.host = XSS_IMG.into();
    alive.queues = vec!["default".into(), XSS.into()];
    alive.concurrency = 4;
    alive.running = 1;
    alive.beat_every_ms = 5_000;
    store.worker_beat(&alive).await.unwrap();
    let mut silent = WorkerPresence::new("worker-b", now - 60_000);
    silent.beat_every_ms = 5_000;
    store.worker_beat(&silent).await.unwrap();
    let router = dashboard(Arc::clone(&store));

    let page = get(&router, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let workers = page
        .body
        .split(r#"id="workers-panel""#)
        .nth(1)
        .expect("the workers section")
        .split("</section>")
        .next()
        .unwrap();
    assert!(workers.contains("<code>worker-a</code>"), "{workers}");
    assert!(workers.contains("1 / 4"), "slots in use: {workers}");
    assert!(workers.contains("pid "), "{workers}");
    assert!(
        workers.contains(r#"<tr class="silent">"#) && workers.contains(">silent</span>"),
        "a worker silent for a minute says so: {workers}"
    );
    assert_inert(&page.body);
    // the queues, paused or not, with their buttons
    assert!(
        page.body.contains(r#"<tr data-queue="bulk">"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(">paused</span>"));
    assert!(page.body.contains(r#"name="action" value="resume""#));

    // the live stream refreshes the list
    let live = live_until(&router, "/live?counts=1&workers=1", "event: workers").await;
    assert!(live.contains(r#""id":"worker-a""#) && live.contains(r#""slots":"1 / 4""#));
    assert!(live.contains(r#""silent":true"#));

    // gone after a clean stop; an empty list says how to start one
    store.worker_gone("worker-a").await.unwrap();
    store.worker_gone("worker-b").await.unwrap();
    let page = get(&router, "/").await;
    assert!(page.body.contains("No worker has reported in the last day"));
}

#[tokio::test]
async fn search_finds_text_in_parameters_and_errors_within_a_bound() {
    let store = shared(MemoryStore::new());
    // the oldest job holds the needle in its parameters; 20,050 newer ones do not
    let mut jobs = vec![NewJob::new("count", json!({"customer": "ACME-Needle-7"}))];
    jobs.extend((0..20_050).map(|i| NewJob::new("count", json!({ "up_to": i }))));
    // the newest failed with the needle in its error
    jobs.push(NewJob::new("import_csv", json!({"path": "/tmp/x.csv"})));
    store.job_insert_many(&jobs).await.unwrap();
    let last = 20_052;
    let run = claim(&*store, "import_csv").await;
    assert_eq!(run.job.id, last);
    store
        .job_release(
            run.job.id,
            run.token,
            None,
            &Outcome::Failed {
                error: "upstream rejected needle-7: 422".into(),
            },
        )
        .await
        .unwrap();
    let router = dashboard(Arc::clone(&store));

    let reply = get(&router, "/jobs?q=NEEDLE-7").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .body
            .contains(&format!(r#"href="/jobs/{}""#, run.job.id)),
        "the failed job, by its error, any case: {}",
        reply.body
    );
    assert!(
        !reply.body.contains(r#"href="/jobs/1""#),
        "the oldest is beyond one search's bound"
    );
    assert!(
        reply.body.contains("Searched 20,000 jobs"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("goes on with the next ones"));
    let next = format!("/jobs?q=NEEDLE-7&amp;before={}", last - 20_000 + 1);
    assert!(
        reply.body.contains(&next),
        "the next page goes on: {}",
        reply.body
    );
    assert!(
        !reply.body.contains(r#"value="all""#),
        "no bulk action on all matching while searching"
    );

    let reply = get(&router, &next.replace("&amp;", "&")).await;
    assert!(
        reply.body.contains(r#"href="/jobs/1""#),
        "the next page finds the oldest: {}",
        reply.body
    );
    assert!(reply.body.contains("Searched 52 jobs"), "{}", reply.body);
    assert!(
        !reply.body.contains(r#"rel="next""#),
        "nothing older is left"
    );

    // an id finds that job too; filters narrow the search
    let reply = get(&router, "/jobs?q=%2317").await;
    assert!(reply.body.contains(r#"has this id"#) && reply.body.contains(r#"href="/jobs/17""#));
    let reply = get(&router, "/jobs?q=needle&state=failed").await;
    assert!(
        reply
            .body
            .contains(&format!(r#"href="/jobs/{}""#, run.job.id))
    );
    assert!(reply.body.contains("Searched 1 job "), "{}", reply.body);

    // a payload in the search is shown inert; too long a text is refused
    let reply = get(
        &router,
        "/jobs?q=%3Cscript%3Ealert(%27xss%27)%3C%2Fscript%3E",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_inert(&reply.body);
    let reply = get(&router, &format!("/jobs?q={}", "x".repeat(300))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("the search filter is longer than"));

    // "all matching" with a search is refused, not applied to unread jobs
    let reply = send(
        &router,
        form_post(
            "/jobs/bulk",
            &format!("csrf={CSRF}&action=cancel&scope=all&state=queued&q=needle"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("not offered with a text search"));
}

/// A kind whose description and schema carry payloads (a schema can come from
/// anywhere a developer pasted it from).
struct Hostile;

impl iterjob::Job for Hostile {
    const KIND: &'static str = "hostile";
    const DESCRIPTION: &'static str =
        "<script>alert('xss')</script> \"><img src=x onerror=alert(1)>";
    type Params = serde_json::Value;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _: &serde_json::Value,
        cursor: Option<i64>,
    ) -> Result<impl iterjob::enumerator::Enumerator<i64, i64>, iterjob::JobError> {
        Ok(iterjob::enumerator::range(0..1, cursor))
    }

    async fn process(
        &self,
        _: &iterjob::JobContext<serde_json::Value>,
        _: i64,
    ) -> Result<(), iterjob::JobError> {
        Ok(())
    }

    fn params_schema() -> Option<serde_json::Value> {
        Some(json!({
            "type": "object",
            "properties": {
                XSS_IMG: {"type": "string", "description": XSS, "default": XSS_IMG},
                "mode": {"title": XSS, "enum": [XSS, XSS_IMG]},
                "n": {"type": "integer", "minimum": 0, "description": XSS_IMG}
            },
            "required": ["n"]
        }))
    }
}

#[tokio::test]
async fn payloads_in_a_kinds_description_and_schema_render_inert() {
    let store = shared(MemoryStore::new());
    let router = Dashboard::new(Arc::clone(&store))
        .registry(registry().with(Hostile))
        .router();
    let list = get(&router, "/tasks").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("&lt;script&gt;alert"),
        "escaped, not dropped"
    );
    assert_inert(&list.body);
    let page = get(&router, "/tasks/hostile").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"name="p.n""#));
    assert_inert(&page.body);
    // what is sent back, payloads in every field, is shown inert too
    let (ct, body) = multipart(
        &[
            ("csrf", CSRF),
            ("p.n", XSS),
            ("p.mode", XSS_IMG),
            (&format!("p.{XSS_IMG}"), XSS),
            ("queue", XSS_IMG),
        ],
        None,
    );
    let reply = send(&router, multipart_post_to("/tasks/hostile", &ct, body)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("is not a whole number"),
        "{}",
        reply.body
    );
    assert_inert(&reply.body);
    assert!(
        store
            .job_list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A kind that gives no schema: its page offers the JSON box, open.
struct Plain;

impl iterjob::Job for Plain {
    const KIND: &'static str = "plain";
    type Params = CountParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &CountParams,
        cursor: Option<i64>,
    ) -> Result<impl iterjob::enumerator::Enumerator<i64, i64>, iterjob::JobError> {
        Ok(iterjob::enumerator::range(0..p.up_to, cursor))
    }

    async fn process(
        &self,
        _: &iterjob::JobContext<CountParams>,
        _: i64,
    ) -> Result<(), iterjob::JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_kind_without_a_schema_takes_json_on_its_page() {
    let store = shared(MemoryStore::new());
    let router = Dashboard::new(Arc::clone(&store))
        .registry(iterjob::Registry::new().with(Plain))
        .router();
    let page = get(&router, "/tasks/plain").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"<details class="advanced" open>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("gives no schema for a typed form"));
    assert!(!page.body.contains(r#"name="p."#), "no typed field");
    let post = |params: &'static str| {
        let router = router.clone();
        async move {
            let (ct, body) = multipart(&[("csrf", CSRF), ("params", params)], None);
            send(&router, multipart_post_to("/tasks/plain", &ct, body)).await
        }
    };
    let reply = post(r#"{"up_to": "many"}"#).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("field `up_to`: invalid type"),
        "{}",
        reply.body
    );
    let reply = post(r#"{"up_to": 3}"#).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let job = store.job_get(1).await.unwrap().unwrap();
    assert_eq!(
        (job.kind.as_str(), &job.params),
        ("plain", &json!({"up_to": 3}))
    );
}
