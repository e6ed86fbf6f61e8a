//! The tasks pages: every job kind with its description, counts by state and last
//! runs (`GET /tasks`), and one kind's page with a typed parameters form built from
//! its JSON Schema (`GET`/`POST /tasks/{kind}`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use iterjob::registry::KindInfo;
use iterjob::store::{JobFilter, now_millis};
use iterjob::{JobRecord, JobState};
use maud::{Markup, html};

use crate::form::{self, Field, Input, TypedForm};
use crate::format;
use crate::handlers::{self, EnqueueInput, ReadError};
use crate::pages::{self, layout};
use crate::security::{self, CSRF_FIELD};
use crate::{AppState, MAX_FORM_BYTES};

/// Last runs shown per kind on `/tasks`.
const RUNS_ON_LIST: usize = 5;
/// Last runs shown on a kind's page.
const RUNS_ON_KIND: usize = 20;

/// A kind as the tasks pages show it: registered here (with its description and
/// form) or only seen in the store.
struct Task {
    name: String,
    info: Option<KindInfo>,
    counts: BTreeMap<JobState, u64>,
    runs: Vec<JobRecord>,
}

/// Jobs by kind and state, partitions counted as the units that run (as the
/// queues page counts them), in one grouped read.
async fn counts_by_kind(
    state: &AppState,
) -> Result<BTreeMap<String, BTreeMap<JobState, u64>>, iterjob::Error> {
    let mut by_kind: BTreeMap<String, BTreeMap<JobState, u64>> = BTreeMap::new();
    for row in state.store.queue_rows(now_millis()).await? {
        *by_kind
            .entry(row.kind)
            .or_default()
            .entry(row.state)
            .or_default() += row.jobs;
    }
    Ok(by_kind)
}

/// The newest top-level jobs of `kind` (an index seek on kind and id).
async fn last_runs(
    state: &AppState,
    kind: &str,
    limit: usize,
) -> Result<Vec<JobRecord>, iterjob::Error> {
    state
        .store
        .job_list(&JobFilter {
            kind: Some(kind.to_string()),
            top_level: true,
            limit: Some(limit),
            ..JobFilter::default()
        })
        .await
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let mut counts = match counts_by_kind(&state).await {
        Ok(c) => c,
        Err(e) => return handlers::store_error(&state, "counting jobs by kind", &e),
    };
    let mut tasks = Vec::new();
    for info in state.registry.kinds_info() {
        tasks.push(Task {
            name: info.name.to_string(),
            counts: counts.remove(info.name).unwrap_or_default(),
            info: Some(info),
            runs: Vec::new(),
        });
    }
    // kinds with jobs that this dashboard does not know (run by another binary)
    tasks.extend(counts.into_iter().map(|(name, counts)| Task {
        name,
        info: None,
        counts,
        runs: Vec::new(),
    }));
    for task in &mut tasks {
        task.runs = match last_runs(&state, &task.name, RUNS_ON_LIST).await {
            Ok(r) => r,
            Err(e) => return handlers::store_error(&state, "listing a kind's last runs", &e),
        };
    }
    handlers::page(
        &state,
        StatusCode::OK,
        list_page(&state, &tasks),
        new.then_some(csrf.as_str()),
    )
}

fn kind_url(state: &AppState, kind: &str) -> String {
    state.url(&format!("/tasks/{}", pages::encode(kind)))
}

fn counts_line(state: &AppState, kind: &str, counts: &BTreeMap<JobState, u64>) -> Markup {
    html! {
        @if counts.is_empty() {
            span.muted { "no jobs yet" }
        } @else {
            ul.counts {
                @for (s, n) in counts {
                    li { a class={ "state state-" (s.as_str()) }
                        href=(state.url(&format!("/jobs?kind={}&state={}", pages::encode(kind), s.as_str()))) {
                        (format::count(*n)) " " (s.as_str())
                    } }
                }
            }
        }
    }
}

fn runs_list(state: &AppState, runs: &[JobRecord]) -> Markup {
    html! {
        @if runs.is_empty() {
            p.empty { "Never run." }
        } @else {
            ol.runs {
                @for job in runs {
                    @let view = format::ProgressView::of(job, None);
                    li {
                        a href=(state.url(&format!("/jobs/{}", job.id))) { "#" (job.id) }
                        " "
                        span class={ "state state-" (view.state) } data-job-state=(job.id) { (view.state_text) }
                        " "
                        span.muted {
                            (view.items_text)
                            " · "
                            @let at = job.finished_at.unwrap_or(job.created_at);
                            time datetime=(at) title=(format::time(at)) {
                                @if job.finished_at.is_some() { "finished " } @else { "created " }
                                (format::relative(at))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn list_page(state: &AppState, tasks: &[Task]) -> Markup {
    let content = html! {
        h1 { "Tasks" }
        @if tasks.is_empty() {
            p.empty {
                "No job kind is registered here and the store has no jobs. Serve the dashboard \
                 from your own binary (" code { "App::new(..).register(MyJob).run()" } " then "
                code { "my-app dashboard" } ") or pass a registry to " code { "Dashboard::registry" } "."
            }
        }
        div.tasks {
            @for task in tasks {
                section.panel.task {
                    h2 { a href=(kind_url(state, &task.name)) { code { (task.name) } } }
                    @match &task.info {
                        Some(info) if !info.description.is_empty() => p.description { (info.description) },
                        Some(_) => p.description.muted { "No description (set " code { "Job::DESCRIPTION" } ")." },
                        None => p.description.muted { "Not registered in this dashboard: its jobs are listed, it cannot be enqueued here." },
                    }
                    (counts_line(state, &task.name, &task.counts))
                    h3 { "Last runs" }
                    (runs_list(state, &task.runs))
                    @if task.info.is_some() {
                        a.button href=(kind_url(state, &task.name)) { "Run " (task.name) "…" }
                    }
                }
            }
        }
    };
    layout(state, "Tasks", "tasks", content)
}

/// What the kind's form shows: the values typed (or the defaults) and, after a
/// refused submission, each field's message.
#[derive(Default)]
pub(crate) struct KindForm {
    values: BTreeMap<String, String>,
    json: String,
    queue: String,
    priority: String,
    field_errors: BTreeMap<String, String>,
    error: Option<String>,
}

impl KindForm {
    fn defaults(typed: Option<&TypedForm>) -> Self {
        let mut form = KindForm::default();
        for field in typed.map(|t| t.fields.as_slice()).unwrap_or_default() {
            if let Some(default) = &field.default {
                form.values
                    .insert(field.name.clone(), field.text_of(default));
            }
        }
        form
    }
}

pub(crate) async fn kind_page(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (csrf, new) = security::session_token(&headers);
    let info = state.registry.kind_info(&kind);
    let typed = info
        .as_ref()
        .and_then(|i| i.params_schema.as_ref())
        .and_then(form::typed_form);
    let form = KindForm::defaults(typed.as_ref());
    let page = KindPage {
        kind: &kind,
        info,
        typed,
        form: &form,
        csrf: &csrf,
    };
    render_kind(&state, &page, StatusCode::OK, new.then_some(csrf.as_str()))
        .await
        .unwrap_or_else(|r| r)
}

/// A kind's page: what to render it from.
struct KindPage<'a> {
    kind: &'a str,
    info: Option<KindInfo>,
    typed: Option<TypedForm>,
    form: &'a KindForm,
    csrf: &'a str,
}

/// The kind's page, or the response that replaces it (unknown kind, store error).
async fn render_kind(
    state: &AppState,
    page: &KindPage<'_>,
    status: StatusCode,
    new_csrf: Option<&str>,
) -> Result<Response, Response> {
    let KindPage {
        kind,
        info,
        typed,
        form,
        csrf,
    } = page;
    let kind = *kind;
    let counts = counts_by_kind(state)
        .await
        .map_err(|e| handlers::store_error(state, "counting jobs by kind", &e))?
        .remove(kind)
        .unwrap_or_default();
    if info.is_none() && counts.is_empty() {
        let known = state.registry.kinds().join(", ");
        return Err(handlers::page(
            state,
            StatusCode::NOT_FOUND,
            pages::message(
                state,
                "No such kind",
                &format!(
                    "No job kind `{kind}` is registered here and no job of it is stored. \
                     Registered: {}.",
                    if known.is_empty() { "none" } else { &known }
                ),
            ),
            None,
        ));
    }
    let runs = last_runs(state, kind, RUNS_ON_KIND)
        .await
        .map_err(|e| handlers::store_error(state, "listing a kind's last runs", &e))?;
    let content = html! {
        p.crumbs { a href=(state.url("/tasks")) { "Tasks" } " ›" }
        h1.kind { code { (kind) } }
        @match &info {
            Some(i) if !i.description.is_empty() => p.description { (i.description) },
            Some(_) => {},
            None => p.description.muted { "Not registered in this dashboard: its jobs are listed, it cannot be enqueued here." },
        }
        (counts_line(state, kind, &counts))
        @if let Some(info) = &info {
            section.panel {
                h2 { "Run it" }
                (kind_form(state, info, typed.as_ref(), form, csrf))
            }
        }
        section.panel {
            h2 { "Last runs" }
            (runs_list(state, &runs))
            @if runs.len() == RUNS_ON_KIND {
                p.note { a href=(state.url(&format!("/jobs?kind={}&top=1", pages::encode(kind)))) { "All of them »" } }
            }
        }
    };
    Ok(handlers::page(
        state,
        status,
        layout(state, kind, "tasks", content),
        new_csrf,
    ))
}

fn kind_form(
    state: &AppState,
    info: &KindInfo,
    typed: Option<&TypedForm>,
    form: &KindForm,
    csrf: &str,
) -> Markup {
    let csv = state.csv_kinds.get(info.name);
    html! {
        @if let Some(error) = &form.error {
            div.alert role="alert" { strong { "Not enqueued: " } (error) }
        }
        form.enqueue.typed method="post" action=(kind_url(state, info.name))
            enctype="multipart/form-data" novalidate {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            @if let Some(typed) = typed {
                @for field in &typed.fields {
                    @if csv.is_none_or(|c| c.param != field.name) {
                        (field_markup(field, form))
                    }
                }
            }
            @if let Some(csv) = csv {
                label { "CSV file (becomes " code { (csv.param) } ")"
                    input type="file" name="file" accept=".csv,text/csv";
                }
            }
            details.advanced open[typed.is_none() || !form.json.trim().is_empty()] {
                summary { "Advanced: the parameters as JSON" }
                label {
                    @if typed.is_some() {
                        "When filled, used instead of the fields above; checked against the kind's type."
                    } @else {
                        "This kind gives no schema for a typed form (" code { "Job::params_schema" } "); \
                         its parameters are checked against its type."
                    }
                    textarea name="params" rows="6" spellcheck="false" placeholder="{}" { (form.json) }
                }
            }
            div.row {
                label { "Queue"
                    input name="queue" value=(form.queue) maxlength="200"
                        placeholder=(info.queue.as_deref().unwrap_or("the kind's default"));
                }
                label { "Priority" input name="priority" type="number" value=(form.priority) placeholder="0"; }
            }
            button type="submit" { "Enqueue " (info.name) }
        }
    }
}

fn field_markup(field: &Field, form: &KindForm) -> Markup {
    let id = format!("f-{}", field.name);
    let error = form.field_errors.get(&field.name);
    let value = form.values.get(&field.name).cloned().unwrap_or_default();
    let help_id = format!("{id}-help");
    let error_id = format!("{id}-error");
    let described = [
        field.help.as_ref().map(|_| help_id.clone()),
        error.map(|_| error_id.clone()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let described = (!described.is_empty()).then_some(described);
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } data-field=(field.name) {
            @match &field.input {
                Input::Bool if !field.nullable => {
                    label.check {
                        input type="checkbox" id=(id) name=(field.form_name()) value="true"
                            checked[value == "true"] aria-describedby=[described.as_deref()];
                        (field.label)
                    }
                }
                input => {
                    label for=(id) {
                        (field.label)
                        @if field.required { span.required title="required" { " *" } }
                    }
                    (control(&id, field, input, &value, described.as_deref(), error.is_some()))
                }
            }
            @if let Some(help) = &field.help { small.help id=(help_id) { (help) } }
            @if let Some(error) = error { span.field-error id=(error_id) { (error) } }
        }
    }
}

fn control(
    id: &str,
    field: &Field,
    input: &Input,
    value: &str,
    described: Option<&str>,
    invalid: bool,
) -> Markup {
    let name = field.form_name();
    let invalid = invalid.then_some("true");
    let bound = |b: &Option<f64>| b.filter(|v| v.abs() < 9e15).map(|v| v.to_string());
    html! {
        @match input {
            Input::Integer { min, max } => {
                input type="number" step="1" id=(id) name=(name) value=(value)
                    min=[bound(min)] max=[bound(max)]
                    aria-describedby=[described] aria-invalid=[invalid];
            }
            Input::Number { min, max } => {
                input type="number" step="any" id=(id) name=(name) value=(value)
                    min=[bound(min)] max=[bound(max)]
                    aria-describedby=[described] aria-invalid=[invalid];
            }
            Input::Choice(choices) => {
                select id=(id) name=(name) aria-describedby=[described] aria-invalid=[invalid] {
                    @if !field.required || field.nullable || value.is_empty() {
                        option value="" { "—" }
                    }
                    @for (choice, label) in choices {
                        @let text = choice.to_string();
                        option value=(text) selected[text == value] { (label) }
                    }
                }
            }
            Input::Bool => {
                select id=(id) name=(name) aria-describedby=[described] aria-invalid=[invalid] {
                    option value="" { "—" }
                    option value="true" selected[value == "true"] { "true" }
                    option value="false" selected[value == "false"] { "false" }
                }
            }
            Input::Json => {
                textarea id=(id) name=(name) rows="3" spellcheck="false" placeholder="JSON"
                    aria-describedby=[described] aria-invalid=[invalid] { (value) }
            }
            Input::Text => {
                input id=(id) name=(name) value=(value)
                    aria-describedby=[described] aria-invalid=[invalid];
            }
        }
    }
}

pub(crate) async fn kind_submit(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    // no session cookie: the form token cannot match, so the body is not read
    if security::cookie(&headers, crate::security::CSRF_COOKIE).is_none() {
        return security::csrf_refused();
    }
    let input = match handlers::read_enqueue(multipart).await {
        Ok(i) => i,
        Err(ReadError::Bad(e)) => return handlers::bad_request(&state, &e),
        Err(ReadError::TooLarge) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "refused: the form is larger than {} bytes\n",
                    if state.csv_kinds.is_empty() {
                        MAX_FORM_BYTES
                    } else {
                        state.max_upload_bytes
                    }
                ),
            )
                .into_response();
        }
    };
    if !security::csrf_ok(&headers, input.csrf.as_deref()) {
        return security::csrf_refused();
    }
    let (csrf, _) = security::session_token(&headers);
    let Some(info) = state.registry.kind_info(&kind) else {
        let known = state.registry.kinds().join(", ");
        return handlers::bad_request(
            &state,
            &format!("unknown job kind `{kind}`; this dashboard can enqueue: {known}"),
        );
    };
    let typed = info.params_schema.as_ref().and_then(form::typed_form);
    let EnqueueInput {
        form: raw,
        fields,
        file,
        ..
    } = input;
    let mut form = KindForm {
        values: fields,
        json: raw.params,
        queue: raw.queue,
        priority: raw.priority,
        ..KindForm::default()
    };
    let params = match (&typed, form.json.trim().is_empty()) {
        (Some(typed), true) => {
            let skip = state.csv_kinds.get(&kind).map(|c| c.param.as_str());
            match form::assemble(typed, &form.values, skip) {
                Ok(params) => Ok(params),
                Err(errors) => {
                    form.field_errors = errors;
                    Err(format!(
                        "{} field{} to fix, marked below.",
                        form.field_errors.len(),
                        if form.field_errors.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    ))
                }
            }
        }
        (_, _) => handlers::parse_params(&form.json),
    };
    let built = match params {
        Ok(params) => {
            handlers::build_job(&state, &kind, params, &form.queue, &form.priority, file).await
        }
        Err(e) => Err(e),
    };
    let refused = match built {
        Ok(job) => match state.store.job_insert(&job).await {
            Ok(id) => {
                tracing::info!(job = id, kind = %job.kind, "dashboard: operator enqueued a job from the tasks page");
                return Redirect::to(&state.url(&format!("/jobs/{id}"))).into_response();
            }
            Err(e) => format!("the store refused the job: {e}"),
        },
        Err(e) => e,
    };
    // a deserializer error names a field: show it there too
    if let Some(typed) = &typed
        && form.json.trim().is_empty()
        && form.field_errors.is_empty()
        && let Some(name) = form::field_of(typed, &refused)
    {
        form.field_errors.insert(name.to_string(), refused.clone());
    }
    form.error = Some(refused);
    let page = KindPage {
        kind: &kind,
        info: Some(info),
        typed,
        form: &form,
        csrf: &csrf,
    };
    render_kind(&state, &page, StatusCode::UNPROCESSABLE_ENTITY, None)
        .await
        .unwrap_or_else(|r| r)
}
