//! The routes and their handlers.

use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use iterjob::store::{JobFilter, MAX_EVENTS, QueuePauseMode, now_millis};
use iterjob::{Error as StoreError, JobId, JobState};
use maud::Markup;
use serde::Deserialize;
use serde_json::Value;

use crate::pages::{self, EnqueueForm, JobPage, ListQuery, Overview};
use crate::security::{self, CSRF_COOKIE, CSRF_FIELD, TOKEN_COOKIE};
use crate::{AppState, MAX_FORM_BYTES, PAGE_SIZE, assets, live, prometheus, tasks};

/// Events shown on a job page.
const EVENTS_SHOWN: usize = 200;

/// The longest kind, queue or similar string accepted in a filter or form.
const MAX_NAME_LEN: usize = iterjob::store::MAX_QUEUE_NAME_LEN;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    // a large body only where a kind takes a CSV upload: otherwise an enqueue form
    // is as small as any other (the form token is in the body, read before it)
    let upload_limit = if state.csv_kinds.is_empty() {
        MAX_FORM_BYTES
    } else {
        state.max_upload_bytes
    };
    let enqueue = Router::new()
        .route("/enqueue", get(enqueue_form).post(enqueue_submit))
        .route(
            "/tasks/{kind}",
            get(tasks::kind_page).post(tasks::kind_submit),
        )
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/", get(overview))
        .route("/tasks", get(tasks::list))
        .route("/jobs", get(job_list))
        .route("/jobs/bulk", post(bulk_action))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/{action}", post(job_action))
        .route("/queues", get(queues_page).post(queue_action))
        .route("/throttles", post(throttle_action))
        .route("/live", get(live::stream))
        .route("/metrics", get(prometheus::render))
        .route("/login", get(login_form).post(login_submit))
        .route("/assets/app.css", get(assets::css))
        .route("/assets/app.js", get(assets::js))
        .route("/assets/theme.js", get(assets::theme_js))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .merge(enqueue)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            security::same_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            security::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            security::allowed_host,
        ))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

/// A rendered page, setting the session's CSRF cookie when it is new.
pub(crate) fn page(
    state: &AppState,
    status: StatusCode,
    markup: Markup,
    new_csrf: Option<&str>,
) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    if let Some(token) = new_csrf {
        response.headers_mut().append(
            header::SET_COOKIE,
            security::set_cookie(state, CSRF_COOKIE, token),
        );
    }
    response
}

/// A store error as a page an operator can act on.
pub(crate) fn store_error(state: &AppState, what: &str, error: &StoreError) -> Response {
    let status = match error {
        StoreError::JobNotFound(_) => StatusCode::NOT_FOUND,
        StoreError::InvalidTransition { .. } => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(%error, what, "dashboard: store error");
    }
    let text = format!("{what}: {error}");
    page(
        state,
        status,
        pages::message(state, "Could not do that", &text),
        None,
    )
}

pub(crate) fn bad_request(state: &AppState, text: &str) -> Response {
    page(
        state,
        StatusCode::BAD_REQUEST,
        pages::message(state, "Bad request", text),
        None,
    )
}

async fn overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let store = &state.store;
    // top-level jobs: a partitioned job once, by the state it shows
    let counts = match store.job_count_top_level_by_state().await {
        Ok(c) => c,
        Err(e) => return store_error(&state, "counting jobs", &e),
    };
    let list = |state: JobState, limit: usize| JobFilter {
        state: Some(state),
        limit: Some(limit),
        ..JobFilter::default()
    };
    // a partitioned job once, with its partitions' progress summed, not once per
    // partition besides
    let running_top = JobFilter {
        top_level: true,
        ..list(JobState::Running, PAGE_SIZE)
    };
    let running = match store.job_list(&running_top).await {
        Ok(r) => r,
        Err(e) => return store_error(&state, "listing running jobs", &e),
    };
    // One walk for the failed jobs: the newest five are listed, up to 100 feed the chart
    // (a rare state costs a longer walk, so it is read once).
    let mut failures = match store.job_list(&list(JobState::Failed, 100)).await {
        Ok(r) => r,
        Err(e) => return store_error(&state, "listing failed jobs", &e),
    };
    // Jobs finished per minute over the last hour, from the newest finished jobs
    // (ids grow with enqueue time, so this is a recent sample, capped).
    const SAMPLE: usize = 1_000;
    let now = now_millis();
    let mut per_minute = vec![(0u64, 0u64); 60];
    let mut sampled = false;
    let completed = match store.job_list(&list(JobState::Completed, SAMPLE)).await {
        Ok(j) => j,
        Err(e) => return store_error(&state, "listing finished jobs", &e),
    };
    sampled |= completed.len() == SAMPLE || failures.len() == 100;
    for (jobs, failed) in [(&completed, false), (&failures, true)] {
        for job in jobs {
            let Some(at) = job.finished_at else { continue };
            let age_min = (now - at) / 60_000;
            if (0..60).contains(&age_min) {
                let slot = &mut per_minute[59 - age_min as usize];
                if failed {
                    slot.1 += 1;
                } else {
                    slot.0 += 1;
                }
            }
        }
    }
    failures.truncate(5);
    let workers = store
        .workers()
        .await
        .map(|w| w.iter().map(|w| pages::WorkerRow::of(w, now)).collect())
        .map_err(|e| e.to_string());
    let queues = match queue_depths(&state).await {
        Ok(q) => q,
        Err(e) => return store_error(&state, "reading the queues", &e),
    };
    let o = Overview {
        counts,
        running,
        failures,
        per_minute,
        sampled,
        workers,
        queues,
    };
    page(
        &state,
        StatusCode::OK,
        pages::overview(&state, &o, &csrf),
        new.then_some(csrf.as_str()),
    )
}

/// Every queue that has jobs or is paused, with its depth by state: two cheap
/// reads (the overview must not aggregate the whole table, as the queues page's
/// work-left estimate does).
async fn queue_depths(state: &AppState) -> Result<Vec<pages::QueueDepth>, StoreError> {
    use std::collections::BTreeMap;
    fn depth<'a>(
        queues: &'a mut BTreeMap<String, pages::QueueDepth>,
        queue: &str,
    ) -> &'a mut pages::QueueDepth {
        queues
            .entry(queue.to_string())
            .or_insert_with(|| pages::QueueDepth {
                queue: queue.to_string(),
                paused: None,
                counts: BTreeMap::new(),
            })
    }
    let mut queues = BTreeMap::new();
    for (queue, job_state, n) in state.store.queue_depths().await? {
        depth(&mut queues, &queue).counts.insert(job_state, n);
    }
    for pause in state.store.queue_pauses().await? {
        let queue = pause.queue.clone();
        depth(&mut queues, &queue).paused = Some(pause);
    }
    Ok(queues.into_values().collect())
}

/// The job list's query string, as sent.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    state: Option<String>,
    kind: Option<String>,
    queue: Option<String>,
    before: Option<String>,
    /// `1`: top-level jobs only (no partitions).
    top: Option<String>,
    /// Text to find in parameters, last errors and unique keys (or a job id).
    q: Option<String>,
}

/// Turns the raw filters into typed ones; the error names the bad one.
fn parse_list(p: ListParams) -> Result<ListQuery, String> {
    let name = |v: Option<String>, what: &str| -> Result<Option<String>, String> {
        match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            Some(s) if s.chars().count() > MAX_NAME_LEN => Err(format!(
                "the {what} filter is longer than {MAX_NAME_LEN} characters"
            )),
            other => Ok(other),
        }
    };
    let state = match p.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(JobState::from_str(s).map_err(|e| e.to_string())?),
    };
    let before =
        match p.before.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(b) => Some(b.parse::<JobId>().ok().filter(|b| *b > 0).ok_or_else(|| {
                format!("`before` must be a job id (a positive integer), not `{b}`")
            })?),
        };
    let top_level = match p.top.as_deref().map(str::trim) {
        None | Some("") | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(format!(
                "`top` must be 1 (top-level jobs only) or 0, not `{other}`"
            ));
        }
    };
    Ok(ListQuery {
        state,
        kind: name(p.kind, "kind")?,
        queue: name(p.queue, "queue")?,
        before,
        top_level,
        text: name(p.q, "search")?,
    })
}

async fn job_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let query = match parse_list(params) {
        Ok(q) => q,
        Err(e) => return bad_request(&state, &e),
    };
    let filter = JobFilter {
        state: query.state,
        kind: query.kind.clone(),
        queue: query.queue.clone(),
        before_id: query.before,
        limit: Some(PAGE_SIZE + 1),
        top_level: query.top_level,
    };
    let listing = match &query.text {
        Some(text) => match search(&state, filter, text).await {
            Ok(found) => found,
            Err(e) => return store_error(&state, "searching jobs", &e),
        },
        None => {
            let mut jobs = match state.store.job_list(&filter).await {
                Ok(j) => j,
                Err(e) => return store_error(&state, "listing jobs", &e),
            };
            let next = (jobs.len() > PAGE_SIZE).then(|| jobs[PAGE_SIZE - 1].id);
            jobs.truncate(PAGE_SIZE);
            pages::Listing {
                jobs,
                next,
                search: None,
            }
        }
    };
    page(
        &state,
        StatusCode::OK,
        pages::job_list(&state, &query, &listing, &csrf),
        new.then_some(csrf.as_str()),
    )
}

/// Jobs read per store call while searching.
const SEARCH_CHUNK: usize = 1_000;

/// Finds jobs whose parameters, last error or unique key hold `text` (any case),
/// among those `filter` lists: walks them newest first from `filter.before_id` in
/// keyset pages, and stops after a page of matches or after
/// [`MAX_SEARCH_SCAN`](crate::MAX_SEARCH_SCAN) jobs, whichever comes first, so a
/// search never stalls the page on a big store; the next page goes on from
/// where this one stopped. A text that is a job id finds that job as well.
async fn search(
    state: &AppState,
    filter: JobFilter,
    text: &str,
) -> Result<pages::Listing, StoreError> {
    let needle = text.to_lowercase();
    let holds = |job: &iterjob::JobRecord| {
        job.params.to_string().to_lowercase().contains(&needle)
            || job
                .last_error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&needle))
            || job
                .unique_key
                .as_deref()
                .is_some_and(|k| k.to_lowercase().contains(&needle))
    };
    let by_id = match text.trim_start_matches('#').parse::<JobId>() {
        Ok(id) if id > 0 => state.store.job_get(id).await?,
        _ => None,
    };
    let mut found = Vec::new();
    let mut scanned = 0usize;
    let mut before = filter.before_id;
    let mut newest = None;
    let mut exhausted = false;
    'walk: while scanned < crate::MAX_SEARCH_SCAN {
        let chunk = state
            .store
            .job_list(&JobFilter {
                before_id: before,
                limit: Some(SEARCH_CHUNK.min(crate::MAX_SEARCH_SCAN - scanned)),
                ..filter.clone()
            })
            .await?;
        if chunk.is_empty() {
            exhausted = true;
            break;
        }
        let full = chunk.len() == SEARCH_CHUNK.min(crate::MAX_SEARCH_SCAN - scanned);
        for job in chunk {
            scanned += 1;
            newest.get_or_insert(job.id);
            before = Some(job.id);
            if holds(&job) {
                found.push(job);
                if found.len() > PAGE_SIZE {
                    break 'walk;
                }
            }
        }
        if !full {
            exhausted = true;
            break;
        }
    }
    let next = if found.len() > PAGE_SIZE {
        Some(found[PAGE_SIZE - 1].id)
    } else if exhausted {
        None
    } else {
        before
    };
    found.truncate(PAGE_SIZE);
    Ok(pages::Listing {
        jobs: found,
        next,
        search: Some(pages::SearchReport {
            scanned,
            newest,
            oldest: before,
            by_id,
        }),
    })
}

/// A job id from the path, or the bad-request answer.
fn parse_id(state: &AppState, raw: &str) -> Result<JobId, Box<Response>> {
    raw.parse::<JobId>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Box::new(bad_request(state, &format!("`{raw}` is not a job id"))))
}

async fn job_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let id = match parse_id(&state, &raw) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let job = match state.store.job_get(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return store_error(&state, "showing a job", &StoreError::JobNotFound(id)),
        Err(e) => return store_error(&state, "reading a job", &e),
    };
    let events = match state
        .store
        .job_events(id, EVENTS_SHOWN.min(MAX_EVENTS))
        .await
    {
        Ok(e) => e,
        Err(e) => return store_error(&state, "reading a job's history", &e),
    };
    let partitions = if job.is_parent() {
        match state.store.job_partitions(id).await {
            Ok(p) => p,
            Err(e) => return store_error(&state, "reading a job's partitions", &e),
        }
    } else {
        Vec::new()
    };
    let p = JobPage {
        job: &job,
        events: &events,
        events_limit: EVENTS_SHOWN,
        partitions: &partitions,
    };
    page(
        &state,
        StatusCode::OK,
        pages::job_page(&state, &p, &csrf),
        new.then_some(csrf.as_str()),
    )
}

/// An action form: only the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    csrf: Option<String>,
}

async fn job_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((raw, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !security::csrf_ok(&headers, form.csrf.as_deref()) {
        return security::csrf_refused();
    }
    let id = match parse_id(&state, &raw) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let store = &state.store;
    if action == "delete" {
        return match store.job_delete(id).await {
            Ok(deleted) => {
                tracing::info!(job = id, deleted, "dashboard: operator deleted a job");
                Redirect::to(&state.url("/jobs")).into_response()
            }
            Err(e) => store_error(&state, &format!("delete job {id}"), &e),
        };
    }
    let result = match action.as_str() {
        "pause" => store.job_pause(id).await,
        "resume" => store.job_resume(id).await,
        "cancel" => store.job_cancel(id).await,
        "retry" => store.job_retry(id).await,
        _ => {
            return bad_request(
                &state,
                "unknown action; the actions are pause, resume, cancel, retry and delete",
            );
        }
    };
    match result {
        Ok(job) => {
            tracing::info!(job = id, action, state = %job.state, "dashboard: operator action");
            Redirect::to(&state.url(&format!("/jobs/{id}"))).into_response()
        }
        Err(e) => store_error(&state, &format!("{action} job {id}"), &e),
    }
}

/// Most jobs one bulk submit can tick.
const MAX_TICKED: usize = 1_000;

/// `POST /jobs/bulk`: an action (retry, cancel, pause, resume, delete) on the jobs
/// ticked (`scope=selected`, repeated `id` fields) or on every job the list's
/// filters match (`scope=all`, at most [`MAX_BULK`](crate::MAX_BULK) per submit,
/// newest first). A job whose state does not allow the action is counted and
/// skipped; a store error stops the action and says how far it got.
async fn bulk_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return bad_request(&state, "the bulk form could not be read");
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if !security::csrf_ok(&headers, field(CSRF_FIELD).as_deref()) {
        return security::csrf_refused();
    }
    let action = field("action").unwrap_or_default();
    if !pages::BULK_ACTIONS.contains(&action.as_str()) {
        return bad_request(
            &state,
            "unknown bulk action; the actions are retry, cancel, pause, resume and delete",
        );
    }
    let query = match parse_list(ListParams {
        state: field("state"),
        kind: field("kind"),
        queue: field("queue"),
        before: None,
        top: field("top"),
        q: field("q"),
    }) {
        Ok(q) => q,
        Err(e) => return bad_request(&state, &e),
    };
    let back = state.url(&format!("/jobs{}", query.query_string(None)));
    let ids: Vec<JobId> = match field("scope").as_deref() {
        Some("selected") => {
            let mut ids = Vec::new();
            for (_, raw) in fields.iter().filter(|(k, _)| k == "id") {
                match raw.trim().parse::<JobId>().ok().filter(|id| *id > 0) {
                    Some(id) => ids.push(id),
                    None => return bad_request(&state, &format!("`{raw}` is not a job id")),
                }
            }
            if ids.is_empty() {
                return bad_request(
                    &state,
                    "no job is ticked: tick the jobs to act on, or filter the list and apply \
                     to all matching",
                );
            }
            if ids.len() > MAX_TICKED {
                return bad_request(
                    &state,
                    &format!("at most {MAX_TICKED} ticked jobs per submit"),
                );
            }
            ids
        }
        Some("all") => {
            if query.text.is_some() {
                return bad_request(
                    &state,
                    "all matching is not offered with a text search (a search reads a bounded \
                     number of jobs per page): tick the jobs to act on, or filter by state, kind \
                     or queue without the search",
                );
            }
            if query.state.is_none() && query.kind.is_none() && query.queue.is_none() {
                return bad_request(
                    &state,
                    "filter the list by state, kind or queue first: all matching would be \
                     every job",
                );
            }
            match matching_ids(&state, &query).await {
                Ok(ids) => ids,
                Err(e) => return store_error(&state, "listing the jobs to act on", &e),
            }
        }
        _ => return bad_request(&state, "`scope` must be selected or all"),
    };
    let mut outcome = pages::BulkOutcome {
        more_left: ids.len() > crate::MAX_BULK,
        ..Default::default()
    };
    let store = &state.store;
    for &id in ids.iter().take(crate::MAX_BULK) {
        let result = match action.as_str() {
            "retry" => store.job_retry(id).await.map(drop),
            "cancel" => store.job_cancel(id).await.map(drop),
            "pause" => store.job_pause(id).await.map(drop),
            "resume" => store.job_resume(id).await.map(drop),
            _ => store.job_delete(id).await.map(drop),
        };
        match result {
            Ok(()) => outcome.done += 1,
            Err(StoreError::JobNotFound(_)) => outcome.gone += 1,
            Err(e @ StoreError::InvalidTransition { .. }) => {
                outcome.refused += 1;
                outcome.first_refusal.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                let what = format!(
                    "bulk {action}: stopped after {} of {} jobs",
                    outcome.done,
                    ids.len().min(crate::MAX_BULK)
                );
                return store_error(&state, &what, &e);
            }
        }
    }
    tracing::info!(
        action,
        done = outcome.done,
        refused = outcome.refused,
        "dashboard: operator bulk action"
    );
    page(
        &state,
        StatusCode::OK,
        pages::bulk_result(&state, &action, &outcome, &back),
        None,
    )
}

/// The ids of the jobs `query` matches, newest first, keyset-paged: at most one
/// more than [`MAX_BULK`](crate::MAX_BULK), so the caller knows more are left.
async fn matching_ids(state: &AppState, query: &ListQuery) -> Result<Vec<JobId>, StoreError> {
    const PAGE: usize = 500;
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let jobs = state
            .store
            .job_list(&JobFilter {
                state: query.state,
                kind: query.kind.clone(),
                queue: query.queue.clone(),
                before_id: before,
                limit: Some(PAGE),
                top_level: query.top_level,
            })
            .await?;
        let full = jobs.len() >= PAGE;
        ids.extend(jobs.iter().map(|j| j.id));
        before = jobs.last().map(|j| j.id);
        if !full || ids.len() > crate::MAX_BULK {
            return Ok(ids);
        }
    }
}

async fn queues_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let queues = match state.store.queue_stats().await {
        Ok(queues) => queues,
        Err(e) => return store_error(&state, "reading the queues", &e),
    };
    let switches = match state
        .store
        .throttle_switches(iterjob::store::now_millis())
        .await
    {
        Ok(switches) => switches,
        Err(e) => return store_error(&state, "reading the throttle switches", &e),
    };
    let schedules = if state.registry.schedules().is_empty() {
        Vec::new()
    } else {
        match state.store.schedule_states().await {
            Ok(states) => states,
            Err(e) => return store_error(&state, "reading the schedules", &e),
        }
    };
    page(
        &state,
        StatusCode::OK,
        pages::queues(&state, &queues, &schedules, &switches, &csrf),
        new.then_some(csrf.as_str()),
    )
}

#[derive(Deserialize)]
pub(crate) struct QueueForm {
    csrf: Option<String>,
    queue: String,
    action: String,
}

/// `POST /queues`: pause (`pause`, `pause_let_run`) or resume a queue.
async fn queue_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<QueueForm>,
) -> Response {
    if !security::csrf_ok(&headers, form.csrf.as_deref()) {
        return security::csrf_refused();
    }
    let store = &state.store;
    let queue = form.queue.as_str();
    let result = match form.action.as_str() {
        "pause" => store
            .queue_pause(queue, QueuePauseMode::Interrupt)
            .await
            .map(|_| ()),
        "pause_let_run" => store
            .queue_pause(queue, QueuePauseMode::LetRun)
            .await
            .map(|_| ()),
        "resume" => store.queue_resume(queue).await.map(|_| ()),
        _ => {
            return bad_request(
                &state,
                "unknown queue action; the actions are pause, pause_let_run and resume",
            );
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(
                queue,
                action = form.action,
                "dashboard: operator queue action"
            );
            Redirect::to(&state.url("/queues")).into_response()
        }
        Err(StoreError::Config(message)) => bad_request(&state, &message),
        Err(e) => store_error(&state, &format!("{} queue {queue}", form.action), &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct ThrottleForm {
    csrf: Option<String>,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    kind: String,
    #[serde(default, rename = "for")]
    for_: String,
    #[serde(default)]
    reason: String,
    action: String,
}

/// `POST /throttles`: switch a throttle on (`on`, with optional queue, kind, `for`
/// duration and reason) or off (`off`, exactly that queue and kind).
async fn throttle_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<ThrottleForm>,
) -> Response {
    if !security::csrf_ok(&headers, form.csrf.as_deref()) {
        return security::csrf_refused();
    }
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let (queue, kind) = (some(&form.queue), some(&form.kind));
    let result = match form.action.as_str() {
        "on" => {
            let now = iterjob::store::now_millis();
            let mut switch = iterjob::ThrottleSwitch::new(queue.clone(), kind.clone(), now);
            if let Some(text) = some(&form.for_) {
                match humantime::parse_duration(&text) {
                    Ok(d) if !d.is_zero() => {
                        switch.until = Some(now.saturating_add(iterjob::store::duration_millis(d)))
                    }
                    _ => {
                        return bad_request(
                            &state,
                            &format!(
                                "“{text}” is not a duration: write it like 10m, 1h or 90s, or \
                                 leave it empty to keep the throttle on until switched off"
                            ),
                        );
                    }
                }
            }
            switch.reason = some(&form.reason);
            state.store.throttle_on(&switch).await.map(|_| ())
        }
        "off" => state
            .store
            .throttle_off(queue.as_deref(), kind.as_deref())
            .await
            .map(|_| ()),
        _ => {
            return bad_request(
                &state,
                "unknown throttle action; the actions are on and off",
            );
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(
                ?queue,
                ?kind,
                action = form.action,
                "dashboard: operator throttle switch"
            );
            Redirect::to(&state.url("/queues#throttles")).into_response()
        }
        Err(StoreError::Config(message)) => bad_request(&state, &message),
        Err(e) => store_error(
            &state,
            &format!("switching the throttle {}", form.action),
            &e,
        ),
    }
}

async fn enqueue_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let form = EnqueueForm {
        params: "{}".to_string(),
        ..EnqueueForm::default()
    };
    page(
        &state,
        StatusCode::OK,
        pages::enqueue(&state, &form, &csrf),
        new.then_some(csrf.as_str()),
    )
}

/// The enqueue form's fields and the upload, read from the multipart body.
#[derive(Default)]
pub(crate) struct EnqueueInput {
    pub(crate) form: EnqueueForm,
    /// A tasks page's typed fields (`p.NAME`), by name.
    pub(crate) fields: std::collections::BTreeMap<String, String>,
    pub(crate) csrf: Option<String>,
    pub(crate) file: Option<(String, Vec<u8>)>,
}

/// Why the enqueue form could not be read: too large (413), or malformed.
pub(crate) enum ReadError {
    TooLarge,
    Bad(String),
}

impl ReadError {
    fn of(what: String, e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ReadError::TooLarge
        } else {
            ReadError::Bad(format!("{what}: {e}"))
        }
    }
}

pub(crate) async fn read_enqueue(mut multipart: Multipart) -> Result<EnqueueInput, ReadError> {
    let mut input = EnqueueInput::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ReadError::of("the form could not be read".into(), e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let filename = field.file_name().unwrap_or("upload.csv").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ReadError::of("the file could not be read".into(), e))?;
            if !bytes.is_empty() {
                input.file = Some((filename, bytes.to_vec()));
            }
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|e| ReadError::of(format!("field `{name}` could not be read"), e))?;
        match name.as_str() {
            CSRF_FIELD => input.csrf = Some(text),
            "kind" => input.form.kind = text,
            "params" => input.form.params = text,
            "queue" => input.form.queue = text,
            "priority" => input.form.priority = text,
            _ => {
                if let Some(field) = name.strip_prefix(crate::form::FIELD_PREFIX) {
                    input.fields.insert(field.to_string(), text);
                }
            }
        }
    }
    Ok(input)
}

async fn enqueue_submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    // no session cookie: the form token cannot match, so the body is not read
    if security::cookie(&headers, CSRF_COOKIE).is_none() {
        return security::csrf_refused();
    }
    let input = match read_enqueue(multipart).await {
        Ok(i) => i,
        Err(ReadError::Bad(e)) => return bad_request(&state, &e),
        Err(ReadError::TooLarge) => {
            let limit = if state.csv_kinds.is_empty() {
                MAX_FORM_BYTES
            } else {
                state.max_upload_bytes
            };
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "refused: the form is larger than {limit} bytes (uploads are accepted only \
                     for kinds that take a CSV file)\n"
                ),
            )
                .into_response();
        }
    };
    if !security::csrf_ok(&headers, input.csrf.as_deref()) {
        return security::csrf_refused();
    }
    let (csrf, _) = security::session_token(&headers);
    let mut form = input.form;
    let refuse = |form: &mut EnqueueForm, error: String| {
        form.error = Some(error);
        page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::enqueue(&state, form, &csrf),
            None,
        )
    };
    let built = match parse_params(&form.params) {
        Ok(params) => {
            build_job(
                &state,
                form.kind.trim(),
                params,
                &form.queue,
                &form.priority,
                input.file,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match built {
        Ok(job) => match state.store.job_insert(&job).await {
            Ok(id) => {
                tracing::info!(job = id, kind = %job.kind, "dashboard: operator enqueued a job");
                Redirect::to(&state.url(&format!("/jobs/{id}"))).into_response()
            }
            Err(e) => refuse(&mut form, format!("the store refused the job: {e}")),
        },
        Err(e) => refuse(&mut form, e),
    }
}

/// The JSON parameters box: empty means `{}`.
pub(crate) fn parse_params(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str(raw).map_err(|e| format!("the parameters are not valid JSON: {e}"))
    }
}

/// Validates a submission into a job: known kind, parameters that fit its type,
/// the CSV upload stored and named in its parameter, queue and priority. The
/// error says what to fix.
pub(crate) async fn build_job(
    state: &AppState,
    kind: &str,
    mut params: Value,
    queue: &str,
    priority: &str,
    file: Option<(String, Vec<u8>)>,
) -> Result<iterjob::NewJob, String> {
    if !state.registry.contains(kind) {
        let known = state.registry.kinds().join(", ");
        return Err(format!(
            "unknown job kind `{kind}`; this dashboard can enqueue: {known}"
        ));
    }
    match (state.csv_kinds.get(kind), file) {
        (Some(csv), Some((filename, bytes))) => {
            let path = store_csv(&csv.dir, &filename, &bytes).await?;
            match &mut params {
                Value::Object(map) => {
                    map.insert(csv.param.clone(), Value::String(path));
                }
                _ => {
                    return Err(format!(
                        "the parameters of `{kind}` must be a JSON object to take the uploaded file in `{}`",
                        csv.param
                    ));
                }
            }
        }
        (None, Some(_)) => {
            return Err(format!(
                "job kind `{kind}` does not read a CSV file; remove the file, or choose a kind marked CSV upload"
            ));
        }
        (Some(csv), None) if params.get(&csv.param).is_none() => {
            return Err(format!(
                "job kind `{kind}` reads a CSV file: choose one to upload (it becomes `{}`)",
                csv.param
            ));
        }
        _ => {}
    }
    let mut job = state
        .registry
        .new_job(kind, params)
        .map_err(|e| e.to_string())?;
    let queue = queue.trim();
    if !queue.is_empty() {
        iterjob::store::check_queue_name(queue).map_err(|e| e.to_string())?;
        job.queue = queue.to_string();
    }
    let priority = priority.trim();
    if !priority.is_empty() {
        job.priority = priority
            .parse()
            .map_err(|_| format!("the priority must be an integer, not `{priority}`"))?;
    }
    Ok(job)
}

/// Checks that an upload parses as CSV (every record, with consistent field
/// counts) and stores it in `dir` under a fresh name; returns its path.
async fn store_csv(dir: &std::path::Path, filename: &str, bytes: &[u8]) -> Result<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let mut records = 0u64;
    for record in reader.byte_records() {
        record.map_err(|e| format!("`{filename}` is not a valid CSV file: {e}"))?;
        records += 1;
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create the upload directory {}: {e}", dir.display()))?;
    // an absolute path, so a worker started elsewhere finds it
    let dir = tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| format!("cannot resolve the upload directory {}: {e}", dir.display()))?;
    let path = dir.join(format!("upload-{}.csv", security::random_token()));
    tokio::fs::write(&path, bytes)
        .await
        .map_err(|e| format!("cannot store the upload in {}: {e}", path.display()))?;
    tracing::info!(file = filename, records, path = %path.display(), "dashboard: stored a CSV upload");
    Ok(path.display().to_string())
}

async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    page(&state, StatusCode::OK, pages::login(&state, None), None)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

async fn login_submit(State(state): State<Arc<AppState>>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = state.token.as_deref() else {
        return Redirect::to(&state.url("/")).into_response();
    };
    if security::login_limited(&state) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            format!(
                "too many wrong tokens in the last minute (more than {}); try again in a minute \
                 (requests with `Authorization: Bearer <token>` are not affected)\n",
                security::MAX_LOGIN_FAILURES_PER_MINUTE
            ),
        )
            .into_response();
    }
    if !security::secrets_match(form.token.trim(), token) {
        security::login_failed(&state);
        return page(
            &state,
            StatusCode::UNAUTHORIZED,
            pages::login(&state, Some("That is not the dashboard's token.")),
            None,
        );
    }
    let mut response = Redirect::to(&state.url("/")).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        security::set_cookie(
            &state,
            TOKEN_COOKIE,
            &state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .issue(),
        ),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
