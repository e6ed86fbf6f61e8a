//! The pages, rendered on the server with [maud]: every interpolated value is
//! HTML-escaped unless it is wrapped in `PreEscaped`, which is used only for the
//! constant SVG-free markup below (never for a value from a job or a request).

use iterjob::store::{JobEvent, Millis, QueuePauseMode, QueueStats, ScheduleState};
use iterjob::{JobRecord, JobState};
use maud::{DOCTYPE, Markup, html};

use crate::AppState;
use crate::format::{self, ProgressView};
use crate::security::CSRF_FIELD;

/// A page: header with navigation, the content, the live-update script.
pub(crate) fn layout(state: &AppState, title: &str, current: &str, content: Markup) -> Markup {
    let nav = [
        ("overview", "/", "Overview"),
        ("tasks", "/tasks", "Tasks"),
        ("jobs", "/jobs", "Jobs"),
        ("queues", "/queues", "Queues"),
        ("enqueue", "/enqueue", "Enqueue"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (state.title) }
                link rel="stylesheet" href=(state.url("/assets/app.css"));
                script src=(state.url("/assets/theme.js")) {}
                script src=(state.url("/assets/app.js")) defer {}
            }
            body data-base=(state.base) {
                header.top {
                    a.brand href=(state.url("/")) { (state.title) }
                    nav {
                        @for (key, path, label) in nav {
                            a href=(state.url(path)) aria-current=[(key == current).then_some("page")] { (label) }
                        }
                    }
                    button.theme #theme type="button" title="theme: the system's, dark or light" { "◐ auto" }
                    span.live-status #live-status title="live updates" { "○ connecting" }
                }
                main { (content) }
            }
        }
    }
}

/// A state badge, updated live when `live` is set.
fn badge(view: &ProgressView, live: bool) -> Markup {
    html! {
        span class={ "state state-" (view.state) } data-job-state=[live.then_some(view.id)] {
            (view.state_text)
        }
    }
}

/// A progress bar with items, rate and ETA, updated live.
pub(crate) fn progress(view: &ProgressView) -> Markup {
    html! {
        div.progress data-job=(view.id) data-state=(view.state) {
            @if view.items_total > 0 {
                progress value=(view.items_done.min(view.items_total)) max=(view.items_total) {}
            } @else if view.state == "completed" {
                progress value="1" max="1" {}
            } @else {
                progress {}
            }
            div.meta {
                span.items { (view.items_text) }
                span.rate { (view.rate_text) }
                span.eta { (view.eta_text) }
            }
        }
    }
}

/// The action buttons for a job; hidden ones are shown live when they apply.
fn actions(state: &AppState, view: &ProgressView, csrf: &str) -> Markup {
    let buttons = [
        ("pause", "Pause", view.can_pause, ""),
        ("resume", "Resume", view.can_resume, ""),
        ("retry", "Retry", view.can_retry, ""),
        ("cancel", "Cancel", view.can_cancel, "danger"),
        ("delete", "Delete", view.can_delete, "danger"),
    ];
    html! {
        div.actions {
            @for (action, label, shown, class) in buttons {
                form method="post" action=(state.url(&format!("/jobs/{}/{action}", view.id)))
                    data-action=(action) data-job-action=(view.id) hidden[!shown] {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    button type="submit" class=(class) name="action" value=(action) { (label) }
                }
            }
        }
    }
}

/// Counts by state, throughput, running jobs, recent failures.
pub(crate) struct Overview {
    pub(crate) counts: Vec<(JobState, u64)>,
    pub(crate) running: Vec<JobRecord>,
    pub(crate) failures: Vec<JobRecord>,
    /// Jobs finished per minute over the last hour, oldest first: (completed, failed).
    pub(crate) per_minute: Vec<(u64, u64)>,
    /// True when `per_minute` was computed from a capped sample of recent jobs.
    pub(crate) sampled: bool,
    /// The workers, or why the store cannot list them.
    pub(crate) workers: Result<Vec<WorkerRow>, String>,
    pub(crate) queues: Vec<QueueDepth>,
}

pub(crate) fn overview(state: &AppState, o: &Overview, csrf: &str) -> Markup {
    let finished: u64 = o.per_minute.iter().map(|(c, f)| c + f).sum();
    let content = html! {
        h1 { "Overview" }
        section.cards aria-label="jobs by state (a partitioned job counts once)" {
            @for (s, n) in &o.counts {
                a class={ "card state-" (s.as_str()) } href=(state.url(&format!("/jobs?state={}", s.as_str()))) {
                    span.n data-count=(s.as_str()) { (format::count(*n)) }
                    span.label { (s.as_str()) }
                }
            }
        }
        section.panel {
            h2 { "Throughput" }
            div.throughput {
                div {
                    span.big #items-per-sec { "–" }
                    span.label { "items per second, running jobs, live" }
                    svg.spark #spark viewBox="0 0 120 30" preserveAspectRatio="none" role="img" aria-label="items per second, last two minutes" {
                        polyline #spark-line points="" {}
                    }
                }
                div {
                    span.big { (format::count(finished)) }
                    span.label {
                        "jobs finished in the last hour"
                        @if o.sampled { " (a sample of the most recent)" }
                    }
                    (bars(&o.per_minute))
                }
            }
        }
        section.panel {
            h2 { "Running now" }
            @if o.running.is_empty() {
                p.empty { "No job is running." }
            } @else {
                (jobs_table(state, &o.running, csrf, true, false))
            }
        }
        @if !o.failures.is_empty() {
            section.panel {
                h2 { "Recent failures" }
                (jobs_table(state, &o.failures, csrf, false, false))
            }
        }
        (workers_section(&o.workers))
        (queues_section(state, &o.queues, csrf))
    };
    layout(state, "Overview", "overview", content)
}

/// Jobs finished per minute as bars (completed up, failed in red), as SVG.
fn bars(per_minute: &[(u64, u64)]) -> Markup {
    let max = per_minute
        .iter()
        .map(|(c, f)| c + f)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = per_minute.len().max(1);
    html! {
        svg.bars viewBox={ "0 0 " (n * 4) " 40" } preserveAspectRatio="none" role="img"
            aria-label="jobs finished per minute over the last hour (completed, failed)" {
            @for (i, (c, f)) in per_minute.iter().enumerate() {
                @let hc = (*c as f64 / max * 40.0).round();
                @let hf = (*f as f64 / max * 40.0).round();
                @if *c > 0 {
                    rect.ok x=(i * 4) y=(40.0 - hc - hf) width="3" height=(hc) {
                        title { (c) " completed" }
                    }
                }
                @if *f > 0 {
                    rect.bad x=(i * 4) y=(40.0 - hf) width="3" height=(hf) {
                        title { (f) " failed" }
                    }
                }
            }
        }
    }
}

/// A table of jobs with live progress bars (and action buttons when `actions`).
/// The jobs as a table; `selectable` adds a checkbox per job for the bulk form
/// ([`bulk_bar`]), tied to it by its id since a row's own action forms cannot nest
/// in it.
fn jobs_table(
    state: &AppState,
    jobs: &[JobRecord],
    csrf: &str,
    with_actions: bool,
    selectable: bool,
) -> Markup {
    html! {
        table.jobs {
            thead {
                tr {
                    @if selectable { th { span.visually-hidden { "Select" } } }
                    th { "Job" } th { "Kind" } th { "Queue" } th { "State" } th.wide { "Progress" }
                    th { "Attempts" } th { "Created" }
                    @if with_actions { th { "Actions" } }
                }
            }
            tbody {
                @for job in jobs {
                    @let view = ProgressView::of(job, None);
                    tr {
                        @if selectable {
                            td.select data-label="Select" {
                                input type="checkbox" form="bulk" name="id" value=(job.id) aria-label=(format!("select job {}", job.id));
                            }
                        }
                        td data-label="Job" { a href=(state.url(&format!("/jobs/{}", job.id))) { "#" (job.id) } }
                        td data-label="Kind" { code { (job.kind) } }
                        td data-label="Queue" { (job.queue) }
                        td data-label="State" { (badge(&view, true)) }
                        td.wide data-label="Progress" { (progress(&view)) }
                        td data-label="Attempts" { (job.attempts) " / " (job.max_attempts) }
                        td data-label="Created" { time datetime=(job.created_at) title=(format::time(job.created_at)) { (format::relative(job.created_at)) } }
                        @if with_actions { td data-label="Actions" { (actions(state, &view, csrf)) } }
                    }
                }
            }
        }
    }
}

/// The bulk actions over the job list: on the jobs ticked, or on every job the
/// filters match (at most [`MAX_BULK`](crate::MAX_BULK) per submit).
fn bulk_bar(state: &AppState, query: &ListQuery, csrf: &str) -> Markup {
    // a text search is bounded per page: "all matching" would reach jobs the
    // search never read, so it offers the ticked jobs only
    let filtered = (query.state.is_some() || query.kind.is_some() || query.queue.is_some())
        && query.text.is_none();
    html! {
        form.bulk #bulk method="post" action=(state.url("/jobs/bulk")) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            @if let Some(s) = query.state { input type="hidden" name="state" value=(s.as_str()); }
            @if let Some(k) = &query.kind { input type="hidden" name="kind" value=(k); }
            @if let Some(q) = &query.queue { input type="hidden" name="queue" value=(q); }
            @if query.top_level { input type="hidden" name="top" value="1"; }
            @if let Some(q) = &query.text { input type="hidden" name="q" value=(q); }
            label { "Bulk action "
                select name="action" {
                    @for action in BULK_ACTIONS { option value=(action) { (action) } }
                }
            }
            button type="submit" name="scope" value="selected" { "Apply to the ticked jobs" }
            @if filtered {
                button.danger type="submit" name="scope" value="all"
                    title="every job these filters match, not only this page" { "Apply to all matching" }
            }
        }
    }
}

/// The actions a bulk form offers.
pub(crate) const BULK_ACTIONS: [&str; 5] = ["retry", "cancel", "pause", "resume", "delete"];

/// What a bulk action did, for its result page.
#[derive(Debug, Default)]
pub(crate) struct BulkOutcome {
    /// Jobs the action was applied to.
    pub(crate) done: u64,
    /// Jobs whose state did not allow it, with the first reason.
    pub(crate) refused: u64,
    pub(crate) first_refusal: Option<String>,
    /// Jobs gone by the time the action reached them.
    pub(crate) gone: u64,
    /// More jobs match than one submit handles.
    pub(crate) more_left: bool,
}

pub(crate) fn bulk_result(
    state: &AppState,
    action: &str,
    outcome: &BulkOutcome,
    back: &str,
) -> Markup {
    let content = html! {
        h1 { "Bulk " (action) }
        div.notice role="status" {
            p { (action) " applied to " strong { (outcome.done) } " job" @if outcome.done != 1 { "s" } "." }
            @if outcome.refused > 0 {
                p { (outcome.refused) " not in a state for it"
                    @if let Some(why) = &outcome.first_refusal { " (" (why) ")" } "." }
            }
            @if outcome.gone > 0 { p { (outcome.gone) " no longer there." } }
            @if outcome.more_left {
                p { "More jobs match than one submit handles: the newest "
                    (crate::MAX_BULK) " were reached. Jobs the action moves out of a state filter \
                    leave it, so with one, submitting again goes on with the rest." }
            }
        }
        p { a href=(back) { "Back to the jobs" } }
    };
    layout(state, &format!("Bulk {action}"), "jobs", content)
}

/// The job list's filters as given (already validated).
#[derive(Clone, Debug, Default)]
pub(crate) struct ListQuery {
    pub(crate) state: Option<JobState>,
    pub(crate) kind: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) before: Option<i64>,
    /// Top-level jobs only: no partitions of partitioned jobs.
    pub(crate) top_level: bool,
    /// Text searched for in parameters, last errors and unique keys.
    pub(crate) text: Option<String>,
}

/// A page of the job list: its jobs, the `before` of the next page, and what a
/// search read.
pub(crate) struct Listing {
    pub(crate) jobs: Vec<JobRecord>,
    pub(crate) next: Option<i64>,
    pub(crate) search: Option<SearchReport>,
}

/// How far a search read.
pub(crate) struct SearchReport {
    pub(crate) scanned: usize,
    pub(crate) newest: Option<i64>,
    pub(crate) oldest: Option<i64>,
    /// The job whose id is the text searched for.
    pub(crate) by_id: Option<JobRecord>,
}

impl ListQuery {
    /// The query string for these filters and `before`.
    pub(crate) fn query_string(&self, before: Option<i64>) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.as_str()));
        }
        if let Some(k) = &self.kind {
            parts.push(format!("kind={}", encode(k)));
        }
        if let Some(q) = &self.queue {
            parts.push(format!("queue={}", encode(q)));
        }
        if self.top_level {
            parts.push("top=1".to_string());
        }
        if let Some(q) = &self.text {
            parts.push(format!("q={}", encode(q)));
        }
        if let Some(b) = before {
            parts.push(format!("before={b}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn job_list(
    state: &AppState,
    query: &ListQuery,
    listing: &Listing,
    csrf: &str,
) -> Markup {
    let kinds = state.registry.kinds();
    let jobs = &listing.jobs;
    let content = html! {
        h1 { "Jobs" }
        form.filters method="get" action=(state.url("/jobs")) {
            label.search { "Search "
                input type="search" name="q" value=[query.text.as_deref()] maxlength="200"
                    placeholder="an id, or text in parameters and errors";
            }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[query.state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Kind "
                input name="kind" list="kinds" value=[query.kind.as_deref()] maxlength="200" placeholder="any";
            }
            datalist #kinds { @for k in &kinds { option value=(k) {} } }
            label { "Queue "
                input name="queue" value=[query.queue.as_deref()] maxlength="200" placeholder="any";
            }
            label title="leave out the partitions of partitioned jobs (a job's page lists them)" {
                "Top-level only "
                input type="checkbox" name="top" value="1" checked[query.top_level];
            }
            button type="submit" { "Filter" }
            @if query.state.is_some() || query.kind.is_some() || query.queue.is_some() || query.top_level || query.text.is_some() {
                a.clear href=(state.url("/jobs")) { "clear" }
            }
        }
        @if let Some(report) = &listing.search {
            div.notice role="status" {
                @if let Some(job) = &report.by_id {
                    p { "Job " a href=(state.url(&format!("/jobs/{}", job.id))) { "#" (job.id) } " (" code { (job.kind) } ", " (job.state.as_str()) ") has this id." }
                }
                p {
                    "Searched " (format::count(report.scanned as u64)) " job" @if report.scanned != 1 { "s" }
                    @if let (Some(newest), Some(oldest)) = (report.newest, report.oldest) {
                        " (#" (newest) " down to #" (oldest) ")"
                    }
                    " for the text in their parameters, last errors and unique keys: "
                    (jobs.len()) " shown."
                    @if listing.next.is_some() && report.scanned >= crate::MAX_SEARCH_SCAN && jobs.len() < crate::PAGE_SIZE {
                        " A search reads at most " (format::count(crate::MAX_SEARCH_SCAN as u64)) " jobs at a time: \
                          “older »” goes on with the next ones."
                    }
                }
            }
        }
        @if jobs.is_empty() {
            p.empty { "No job matches." }
        } @else {
            (bulk_bar(state, query, csrf))
            (jobs_table(state, jobs, csrf, true, true))
        }
        nav.pages aria-label="pages" {
            @if query.before.is_some() {
                a href=(state.url(&format!("/jobs{}", query.query_string(None)))) { "« newest" }
            }
            @if let Some(next) = listing.next {
                a rel="next" href=(state.url(&format!("/jobs{}", query.query_string(Some(next))))) { "older »" }
            }
        }
    };
    layout(state, "Jobs", "jobs", content)
}

/// The job page's sections, in order. A section is a function of the job and what
/// was read for it.
pub(crate) struct JobPage<'a> {
    pub(crate) job: &'a JobRecord,
    pub(crate) events: &'a [JobEvent],
    pub(crate) events_limit: usize,
    /// A partitioned job's partitions (empty otherwise).
    pub(crate) partitions: &'a [JobRecord],
}

pub(crate) fn job_page(state: &AppState, page: &JobPage<'_>, csrf: &str) -> Markup {
    let job = page.job;
    let view = ProgressView::of(job, None);
    // One entry per section, in page order; `None` leaves a section out. The error
    // comes right after the bar: on a phone it would otherwise sit screens below
    // the fold, under the details and the data.
    let sections: [Option<Markup>; 6] = [
        Some(progress_section(job, &view)),
        error_section(job),
        Some(details_section(job)),
        partitions_section(state, page, csrf),
        Some(data_section(job)),
        Some(history_section(page)),
    ];
    let content = html! {
        div.jobhead {
            h1 { "Job #" (job.id) " " code { (job.kind) } }
            (badge(&view, true))
        }
        (actions(state, &view, csrf))
        @for section in sections.into_iter().flatten() { (section) }
    };
    layout(state, &format!("Job #{}", job.id), "jobs", content)
}

/// A partitioned job's partitions, with the same progress bars and actions as the job
/// list (the live stream updates them); a partition links back to its parent.
fn partitions_section(state: &AppState, page: &JobPage<'_>, csrf: &str) -> Option<Markup> {
    let job = page.job;
    if let Some(parent) = job.parent_id {
        return Some(html! {
            section.panel {
                h2 { "Partition" }
                p { "One partition of job "
                    a href=(state.url(&format!("/jobs/{parent}"))) { "#" (parent) }
                    ", walked in parallel with its siblings." }
            }
        });
    }
    let asked = job.partitions?;
    Some(html! {
        section.panel {
            h2 { "Partitions" }
            @if page.partitions.is_empty() {
                p.empty { (asked) " partitions asked; the job has not been split yet." }
            } @else {
                p.note {
                    (page.partitions.len()) " partitions ("
                    (page.partitions.len().saturating_sub(asked as usize)) " from dynamic splits). "
                    "The job's progress is their sum; pause, resume, cancel and retry reach them all."
                }
                (jobs_table(state, page.partitions, csrf, true, false))
            }
        }
    })
}

fn progress_section(job: &JobRecord, view: &ProgressView) -> Markup {
    html! {
        section.panel {
            h2 { "Progress" }
            (progress(view))
            p.note {
                "Running time " (format::duration_secs(job.running_ms / 1000))
                " over " (job.runs) " run" @if job.runs != 1 { "s" }
                @if let Some(at) = job.checkpointed_at {
                    "; last checkpoint " time datetime=(at) title=(format::time(at)) { (format::relative(at)) }
                }
                "."
            }
        }
    }
}

fn row(label: &str, value: Markup) -> Markup {
    html! { tr { th { (label) } td { (value) } } }
}

fn when(at: Option<Millis>) -> Markup {
    html! {
        @match at {
            Some(at) => { (format::time(at)) " " span.muted { "(" (format::relative(at)) ")" } }
            None => { span.muted { "–" } }
        }
    }
}

fn details_section(job: &JobRecord) -> Markup {
    html! {
        section.panel {
            h2 { "Details" }
            table.details {
                (row("Queue", html! { (job.queue) }))
                (row("Priority", html! { (job.priority) }))
                (row("Attempts", html! { (job.attempts) " of " (job.max_attempts) }))
                (row("Runs", html! { (job.runs) }))
                (row("Interruptions", html! { (job.interruptions) }))
                (row("Lost leases in a row", html! { (job.crashes) }))
                @if let Some(key) = &job.unique_key { (row("Unique key", html! { code { (key) } })) }
                (row("Created", when(Some(job.created_at))))
                (row("Runs at", when(Some(job.run_at))))
                (row("Started", when(job.started_at)))
                (row("Finished", when(job.finished_at)))
                @if let Some(worker) = &job.worker_id { (row("Worker", html! { code { (worker) } })) }
                @if job.lease_expires_at.is_some() { (row("Lease until", when(job.lease_expires_at))) }
            }
        }
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn data_section(job: &JobRecord) -> Markup {
    html! {
        section.panel.data {
            div {
                h2 { "Parameters" }
                pre.json { (pretty(&job.params)) }
            }
            div {
                h2 { "Cursor" }
                @if let Some(step) = job.cursor.as_ref().and_then(iterjob::steps::StepCursor::of) {
                    p.step { "In step " strong { (step.step) } " (step " (step.index + 1) ")" }
                }
                @match &job.cursor {
                    Some(c) => { pre.json { (pretty(c)) } p.note { "Everything before this cursor is done." } }
                    None => { p.empty { "No checkpoint yet: the job starts from the beginning." } }
                }
            }
        }
    }
}

/// The error and its causes: the runtime stores the chain joined with `: `.
fn cause_chain(error: &str) -> Markup {
    let parts: Vec<&str> = error.split(": ").collect();
    html! {
        ol.chain {
            @for (i, part) in parts.iter().enumerate() {
                li { @if i > 0 { span.muted { "caused by " } } (part) }
            }
        }
    }
}

fn error_section(job: &JobRecord) -> Option<Markup> {
    let error = job.last_error.as_deref()?;
    if job.state == JobState::Queued
        && let Some(why) = error.strip_prefix("throttled by ")
    {
        // a backpressure signal sent it back to its queue: say why it waits
        return Some(html! {
            section.panel.throttled {
                h2 { "Throttled" }
                p { "By " (why) }
            }
        });
    }
    Some(html! {
        section.panel.error {
            h2 { "Last error" }
            (cause_chain(error))
            @if let Some(failure) = &job.last_failure {
                (failure_detail(failure))
            }
        }
    })
}

/// Where and how the last failed run failed: the item, the attempt and worker, and
/// a panic's backtrace (folded).
fn failure_detail(failure: &iterjob::Failure) -> Markup {
    html! {
        dl.failure {
            @if let Some(item) = &failure.item {
                dt { "Failed on item" }
                dd { code.item { (item.to_string()) } }
            }
            dt { "Run" }
            dd {
                "attempt " (failure.attempt) " on " code { (failure.worker) } ", "
                time datetime=(failure.at) title=(format::time(failure.at)) { (format::relative(failure.at)) }
            }
        }
        @if let Some(backtrace) = &failure.backtrace {
            details.backtrace {
                summary { "Backtrace of the panic" }
                pre { (backtrace) }
            }
        }
    }
}

fn history_section(page: &JobPage<'_>) -> Markup {
    html! {
        section.panel {
            h2 { "History" }
            @if page.events.is_empty() {
                p.empty { "No interruption, error or operator action yet." }
            } @else {
                table.history {
                    thead { tr { th { "When" } th { "Event" } th { "State after" } th { "Items" } th { "Cursor" } th { "Error" } } }
                    tbody {
                        @for e in page.events {
                            tr {
                                td data-label="When" { time datetime=(e.at) title=(format::time(e.at)) { (format::relative(e.at)) } }
                                td data-label="Event" {
                                    (event_label(e))
                                }
                                td data-label="State after" { span class={ "state state-" (e.state.as_str()) } { (e.state.as_str()) } }
                                td data-label="Items" { (format::count(e.items_done)) }
                                td data-label="Cursor" {
                                    @if let Some(c) = &e.cursor { code.cursor { (c.to_string()) } } @else { span.muted { "–" } }
                                }
                                td data-label="Error" {
                                    @if let Some(err) = &e.error { (cause_chain(err)) }
                                }
                            }
                        }
                    }
                }
                @if page.events.len() >= page.events_limit {
                    p.note { "Showing the newest " (page.events_limit) " events." }
                }
            }
        }
    }
}

fn event_label(e: &JobEvent) -> String {
    use iterjob::JobEventKind as K;
    match (e.kind, e.reason) {
        (K::Interrupted, Some(reason)) => format!("interrupted ({reason})"),
        (K::Interrupted, None) => "interrupted".into(),
        (K::Retrying, _) => "error, will retry".into(),
        (K::Failed, _) => "error, failed".into(),
        (K::Rescued, _) => "lease lost, rescued".into(),
        (K::OperatorPause, _) => "paused by operator".into(),
        (K::OperatorResume, _) => "resumed by operator".into(),
        (K::OperatorCancel, _) => "cancelled by operator".into(),
        (K::OperatorRetry, _) => "retried by operator".into(),
    }
}

/// What the enqueue form shows again after a refused submission.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnqueueForm {
    pub(crate) kind: String,
    pub(crate) params: String,
    pub(crate) queue: String,
    pub(crate) priority: String,
    pub(crate) error: Option<String>,
}

pub(crate) fn enqueue(state: &AppState, form: &EnqueueForm, csrf: &str) -> Markup {
    let kinds = state.registry.kinds();
    let content = html! {
        h1 { "Enqueue a job" }
        @if kinds.is_empty() {
            p.empty {
                "This dashboard knows no job kinds, so it cannot enqueue. Serve it from your own binary "
                "(" code { "App::new(..).register(MyJob).run()" } " then " code { "my-app dashboard" } ") "
                "or pass a registry to " code { "Dashboard::registry" } "."
            }
        } @else {
            @if let Some(error) = &form.error {
                div.alert role="alert" { strong { "Not enqueued: " } (error) }
            }
            form.enqueue method="post" action=(state.url("/enqueue")) enctype="multipart/form-data" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label { "Kind"
                    select name="kind" required {
                        @for k in &kinds {
                            option value=(k) selected[form.kind == *k] {
                                (k)
                                @if let Some(csv) = state.csv_kinds.get(*k) { " (CSV upload → " (csv.param) ")" }
                            }
                        }
                    }
                }
                label { "Parameters (JSON, checked against the kind's type)"
                    textarea name="params" rows="8" spellcheck="false" { (form.params) }
                }
                @if !state.csv_kinds.is_empty() {
                    label { "CSV file (for kinds marked CSV upload; sets the file parameter)"
                        input type="file" name="file" accept=".csv,text/csv";
                    }
                }
                div.row {
                    label { "Queue" input name="queue" value=(form.queue) placeholder="the kind's default" maxlength="200"; }
                    label { "Priority" input name="priority" type="number" value=(form.priority) placeholder="0"; }
                }
                button type="submit" { "Enqueue" }
            }
        }
    };
    layout(state, "Enqueue", "enqueue", content)
}

pub(crate) fn login(state: &AppState, error: Option<&str>) -> Markup {
    let content = html! {
        h1 { "Log in" }
        @if let Some(error) = error { div.alert role="alert" { (error) } }
        form.login method="post" action=(state.url("/login")) {
            label { "Auth token"
                input type="password" name="token" required autocomplete="current-password";
            }
            button type="submit" { "Log in" }
        }
    };
    layout(state, "Log in", "", content)
}

/// A queue's status badge: active, or paused (and how).
fn queue_status(paused: Option<&iterjob::store::QueuePause>) -> Markup {
    html! {
        @match paused {
            None => span.state.state-running { "active" },
            Some(p) => span.state.state-paused title={ "paused " (format::relative(p.since)) } {
                @if p.mode == QueuePauseMode::LetRun { "paused (letting runs finish)" } @else { "paused" }
            },
        }
    }
}

/// A queue's pause or resume buttons.
fn queue_actions(state: &AppState, queue: &str, paused: bool, csrf: &str) -> Markup {
    let button = |action: &str, label: &str, class: &str, title: &str| {
        html! {
            form method="post" action=(state.url("/queues")) {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                input type="hidden" name="queue" value=(queue);
                button type="submit" class=(class) name="action" value=(action) title=(title) { (label) }
            }
        }
    };
    html! {
        @if paused {
            (button("resume", "Resume", "", "start its jobs again"))
        } @else {
            (button("pause", "Pause", "danger", "no job starts; running jobs stop at their next item and wait"))
            (button("pause_let_run", "Pause, let runs finish", "", "no job starts; running jobs finish their run"))
        }
    }
}

/// The workers, as the overview lists them (and the live stream refreshes them).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct WorkerRow {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) queues: String,
    pub(crate) slots: String,
    pub(crate) beat: String,
    pub(crate) silent: bool,
    pub(crate) started: String,
}

impl WorkerRow {
    pub(crate) fn of(w: &iterjob::store::WorkerPresence, now: Millis) -> Self {
        WorkerRow {
            id: w.id.clone(),
            host: format!("{} · pid {}", w.host, w.pid),
            queues: w.queues.join(", "),
            slots: format!("{} / {}", w.running, w.concurrency),
            beat: format::relative(w.beat_at),
            silent: w.is_silent(now),
            started: format::relative(w.started_at),
        }
    }
}

fn workers_section(workers: &Result<Vec<WorkerRow>, String>) -> Markup {
    html! {
        section.panel #workers-panel {
            h2 { "Workers" }
            @match workers {
                Err(e) => p.empty { "Workers cannot be listed: " (e) },
                Ok(rows) => {
                    p.empty #workers-none hidden[!rows.is_empty()] {
                        "No worker has reported in the last day. Start one: "
                        code { "iterjob worker" } " (or your app's " code { "worker" } " command)."
                    }
                    table.jobs.workers #workers hidden[rows.is_empty()] {
                        thead { tr {
                            th { "Worker" } th { "Host" } th { "Queues" } th { "Slots in use" }
                            th { "Last heartbeat" } th { "Started" }
                        } }
                        tbody {
                            @for w in rows {
                                tr class=[w.silent.then_some("silent")] {
                                    td data-label="Worker" { code { (w.id) } }
                                    td data-label="Host" { (w.host) }
                                    td data-label="Queues" { (w.queues) }
                                    td data-label="Slots in use" { (w.slots) }
                                    td data-label="Last heartbeat" {
                                        (w.beat)
                                        @if w.silent { " " span.state.state-failed { "silent" } }
                                    }
                                    td data-label="Started" { (w.started) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A queue's depth by state and whether it is paused, for the overview (cheap:
/// [`Store::queue_depths`](iterjob::Store::queue_depths)).
pub(crate) struct QueueDepth {
    pub(crate) queue: String,
    pub(crate) paused: Option<iterjob::store::QueuePause>,
    pub(crate) counts: std::collections::BTreeMap<JobState, u64>,
}

fn queues_section(state: &AppState, queues: &[QueueDepth], csrf: &str) -> Markup {
    let n = |q: &QueueDepth, s: JobState| q.counts.get(&s).copied().unwrap_or(0);
    html! {
        section.panel {
            h2 { "Queues " a.more href=(state.url("/queues")) { "all details »" } }
            @if queues.is_empty() {
                p.empty { "No queue yet: no job was enqueued." }
            } @else {
                table.jobs.queues {
                    thead { tr {
                        th { "Queue" } th { "Status" } th { "Queued" } th { "Running" }
                        th { "Retrying" } th { "Paused jobs" } th { "Failed" } th { "Actions" }
                    } }
                    tbody {
                        @for q in queues {
                            tr data-queue=(q.queue) {
                                td data-label="Queue" { a href=(state.url(&format!("/jobs?queue={}", encode(&q.queue)))) { (q.queue) } }
                                td data-label="Status" { (queue_status(q.paused.as_ref())) }
                                td data-label="Queued" { (format::count(n(q, JobState::Queued))) }
                                td data-label="Running" { (format::count(n(q, JobState::Running))) }
                                td data-label="Retrying" { (format::count(n(q, JobState::Retrying))) }
                                td data-label="Paused jobs" { (format::count(n(q, JobState::Paused))) }
                                td data-label="Failed" { (format::count(n(q, JobState::Failed))) }
                                td.actions data-label="Actions" { (queue_actions(state, &q.queue, q.paused.is_some(), csrf)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The queues: paused or not, jobs per state, backlog and work left, with pause
/// and resume buttons.
pub(crate) fn queues(
    state: &AppState,
    queues: &[QueueStats],
    schedules: &[ScheduleState],
    switches: &[iterjob::ThrottleSwitch],
    csrf: &str,
) -> Markup {
    let n = |q: &QueueStats, s: JobState| q.counts.get(&s).copied().unwrap_or(0);
    let content = html! {
        h1 { "Queues" }
        @if queues.is_empty() {
            p.empty { "No queue yet: no job was enqueued." }
        } @else {
            table.jobs.queues {
                thead {
                    tr {
                        th { "Queue" } th { "Status" } th { "Waiting" } th { "Oldest wait" }
                        th { "Running" } th { "Scheduled" } th { "Paused jobs" } th { "Failed" }
                        th { "Completed" } th { "Work left" } th { "Actions" }
                    }
                }
                tbody {
                    @for q in queues {
                        tr data-queue=(q.queue) {
                            td { a href=(state.url(&format!("/jobs?queue={}", encode(&q.queue)))) { (q.queue) } }
                            td { (queue_status(q.paused.as_ref())) }
                            td {
                                (format::count(q.waiting))
                                @if q.held > 0 { " (" (format::count(q.held)) " held)" }
                            }
                            td { (q.oldest_wait_ms.map_or_else(|| "–".to_string(), |ms| format::duration_secs(ms / 1000))) }
                            td { (format::count(n(q, JobState::Running))) }
                            td { (format::count(q.scheduled)) }
                            td { (format::count(n(q, JobState::Paused))) }
                            td { (format::count(n(q, JobState::Failed))) }
                            td { (format::count(n(q, JobState::Completed))) }
                            td {
                                (format::duration_secs(q.work_left_secs.round() as u64))
                                @if q.unestimated_jobs > 0 { " + " (q.unestimated_jobs) " not estimated" }
                            }
                            td.actions {
                                (queue_actions(state, &q.queue, q.paused.is_some(), csrf))
                            }
                        }
                    }
                }
            }
            p.hint {
                "Work left: the running and waiting jobs' items at their kind's measured rate, in seconds of one worker slot. "
                "A paused queue's waiting jobs are held, not counted as backlog."
            }
        }
        h2 id="throttles" { "Throttle switches" }
        @if switches.is_empty() {
            p.empty { "No throttle switch is on: jobs run at the pace the store, the replicas and the app's health checks allow." }
        } @else {
            table.jobs.throttles {
                thead { tr { th { "Covers" } th { "Since" } th { "Until" } th { "Reason" } th { "Actions" } } }
                tbody {
                    @for s in switches {
                        tr data-throttle=(s.scope()) {
                            td { (s.scope()) }
                            td { (format::relative(s.since)) }
                            td { (s.until.map_or_else(|| "switched off".to_string(), format::relative)) }
                            td { (s.reason.as_deref().unwrap_or("–")) }
                            td.actions {
                                form method="post" action=(state.url("/throttles")) {
                                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                    input type="hidden" name="queue" value=(s.queue.as_deref().unwrap_or(""));
                                    input type="hidden" name="kind" value=(s.kind.as_deref().unwrap_or(""));
                                    button type="submit" name="action" value="off" title="its jobs run again" { "Switch off" }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.throttle-on method="post" action=(state.url("/throttles")) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            label { "Queue " select name="queue" {
                option value="" { "every queue" }
                @for q in queues { option value=(q.queue) { (q.queue) } }
            } }
            " "
            label { "Kind " select name="kind" {
                option value="" { "every kind" }
                @for k in state.registry.kinds() { option value=(k) { (k) } }
            } }
            " "
            label { "For " input type="text" name="for" placeholder="10m (empty: until switched off)" size="12"; }
            " "
            label { "Reason " input type="text" name="reason" size="24"; }
            " "
            button.danger type="submit" name="action" value="on" title="the jobs it covers go back to their queue at their next check; workers claim none of them" { "Switch on" }
        }
        p.hint {
            "A switch sends the jobs it covers back to their queue (no attempt used) within about a second, on every worker, "
            "until it is switched off or its time is up. Kinds that opted out of the default backpressure keep running."
        }
        @if !state.registry.schedules().is_empty() {
            h2 { "Schedules" }
            table.jobs.schedules {
                thead {
                    tr {
                        th { "Schedule" } th { "Cron" } th { "Time zone" } th { "Kind" }
                        th { "Next tick" } th { "Last tick" } th { "Last job" }
                    }
                }
                tbody {
                    @for schedule in state.registry.schedules() {
                        @let stored = schedules.iter().find(|s| s.name == schedule.name());
                        tr data-schedule=(schedule.name()) {
                            td { (schedule.name()) }
                            td { code { (schedule.expression()) } }
                            td { (schedule.timezone_name()) }
                            td { (schedule.kind()) }
                            td { (schedule.next_after(iterjob::store::now_millis()).map_or_else(|| "never".to_string(), |t| schedule.format_time(t))) }
                            td {
                                @match stored {
                                    Some(s) => (schedule.format_time(s.last_tick)),
                                    None => span.muted { "not seen by a worker yet" },
                                }
                            }
                            td {
                                @match stored.and_then(|s| s.last_job) {
                                    Some(id) => a href=(state.url(&format!("/jobs/{id}"))) { "#" (id) },
                                    None => "–",
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(state, "Queues", "queues", content)
}

/// A page for an error an operator can act on.
pub(crate) fn message(state: &AppState, title: &str, text: &str) -> Markup {
    let content = html! {
        h1 { (title) }
        div.alert role="alert" { (text) }
        p { a href=(state.url("/jobs")) { "Back to the jobs" } }
    };
    layout(state, title, "", content)
}
