//! Printing jobs as tables, detail views and JSON.

/// `println!` for command output that returns the write error instead of panicking
/// when stdout is closed early (`iterjob jobs --json | head -c 1`): the command then
/// ends quietly (see `App::run_cli`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// `print!` as [`outln!`] does `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use out;

use iterjob::JobRecord;
use iterjob::store::{JobState, Millis, QueuePauseMode, QueueStats, now_millis};
use serde_json::{Value, json};

/// A job as the `--json` output shows it.
pub(crate) fn job_json(job: &JobRecord) -> Value {
    let rate = rate_per_sec(job);
    json!({
        "id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "priority": job.priority,
        "state": job.state,
        "params": job.params,
        "cursor": job.cursor,
        "step": job.cursor.as_ref().and_then(iterjob::steps::StepCursor::of).map(|c| json!({
            "name": c.step,
            "index": c.index,
        })),
        "items_done": job.items_done,
        "items_total": job.items_total,
        "rate_per_sec": rate,
        "eta_secs": eta_secs(job),
        "interruptions": job.interruptions,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "crashes": job.crashes,
        "runs": job.runs,
        "last_error": job.last_error,
        "last_failure": job.last_failure.as_ref().map(|f| json!({
            "item": f.item,
            "attempt": f.attempt,
            "worker": f.worker,
            "at": rfc3339(f.at),
            "backtrace": f.backtrace,
        })),
        "unique_key": job.unique_key,
        "running_ms": job.running_ms,
        "created_at": rfc3339(job.created_at),
        "run_at": rfc3339(job.run_at),
        "started_at": job.started_at.map(rfc3339),
        "finished_at": job.finished_at.map(rfc3339),
        "checkpointed_at": job.checkpointed_at.map(rfc3339),
        "worker_id": job.worker_id,
        "lease_expires_at": job.lease_expires_at.map(rfc3339),
        "pause_requested": job.pause_requested,
        "cancel_requested": job.cancel_requested,
        "parent_id": job.parent_id,
        "partitions": job.partitions,
        "split_requested": job.split_requested,
    })
}

/// Items per second over the job's running time.
pub(crate) fn rate_per_sec(job: &JobRecord) -> Option<f64> {
    (job.running_ms > 0 && job.items_done > 0)
        .then(|| job.items_done as f64 * 1000.0 / job.running_ms as f64)
}

/// Seconds left at the average rate, when the total is known.
pub(crate) fn eta_secs(job: &JobRecord) -> Option<f64> {
    let total = job.items_total?;
    let rate = rate_per_sec(job)?;
    Some(total.saturating_sub(job.items_done) as f64 / rate)
}

/// The status line's note on a running job's adaptive throttle: empty when it
/// puts no delay between items, else `, throttled: 40 ms/item`.
pub(crate) fn throttle_note(delay: std::time::Duration) -> String {
    if delay.is_zero() {
        return String::new();
    }
    let ms = delay.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!(", throttled: {ms:.1} ms/item")
    } else {
        format!(", throttled: {ms:.0} ms/item")
    }
}

/// A timestamp as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// "3s ago", "in 2m 5s".
pub(crate) fn relative(ms: Millis) -> String {
    let now = now_millis();
    let d = std::time::Duration::from_secs((now - ms).unsigned_abs() / 1000);
    let text = humantime::format_duration(d).to_string();
    if d.is_zero() {
        "now".to_string()
    } else if ms <= now {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn progress_text(job: &JobRecord) -> String {
    match job.items_total {
        Some(total) if total > 0 => format!(
            "{}/{} ({:.0}%)",
            job.items_done,
            total,
            job.items_done as f64 * 100.0 / total as f64
        ),
        Some(total) => format!("{}/{}", job.items_done, total),
        None => job.items_done.to_string(),
    }
}

/// `s` safe for a terminal: control characters (escape sequences, line breaks,
/// bells) written out as escapes instead of reaching the terminal raw.
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Rows of cells as aligned columns, two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        // padded by hand: `{:<w$}` panics for widths over 65,535
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| {
                let pad = w.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A duration in seconds, short: `45s`, `12m 3s`, `2h 5m`.
pub(crate) fn short_secs(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Queues as an aligned table (`iterjob queues`).
pub(crate) fn queues_table(queues: &[QueueStats]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "QUEUE",
            "STATUS",
            "WAITING",
            "OLDEST WAIT",
            "RUNNING",
            "SCHEDULED",
            "RETRYING",
            "PAUSED",
            "FAILED",
            "COMPLETED",
            "CANCELLED",
            "WORK LEFT",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for q in queues {
        let n = |state: JobState| q.counts.get(&state).copied().unwrap_or(0).to_string();
        let status = match &q.paused {
            None => "active".to_string(),
            Some(p) if p.mode == QueuePauseMode::LetRun => {
                format!("paused (let run) {}", relative(p.since))
            }
            Some(p) => format!("paused {}", relative(p.since)),
        };
        let waiting = if q.held > 0 {
            format!("{} held", q.held)
        } else {
            q.waiting.to_string()
        };
        let mut work = short_secs(q.work_left_secs);
        if q.unestimated_jobs > 0 {
            work.push_str(&format!(" + {} jobs not estimated", q.unestimated_jobs));
        }
        rows.push(vec![
            truncate(&printable(&q.queue), 40),
            status,
            waiting,
            q.oldest_wait_ms
                .map_or_else(|| "-".to_string(), |ms| short_secs(ms as f64 / 1000.0)),
            n(JobState::Running),
            q.scheduled.to_string(),
            n(JobState::Retrying),
            n(JobState::Paused),
            n(JobState::Failed),
            n(JobState::Completed),
            n(JobState::Cancelled),
            work,
        ]);
    }
    aligned(&rows)
}

/// Jobs as an aligned table.
pub(crate) fn jobs_table(jobs: &[JobRecord]) -> String {
    // a PARENT column only when partitions are listed (`iterjob jobs --top-level`
    // leaves them out)
    let with_parent = jobs.iter().any(|j| j.parent_id.is_some());
    let mut header = vec![
        "ID",
        "KIND",
        "QUEUE",
        "STATE",
        "PROGRESS",
        "ATTEMPTS",
        "INTERRUPTIONS",
        "CURSOR",
    ];
    if with_parent {
        header.insert(1, "PARENT");
    }
    let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for job in jobs {
        let cursor = job
            .cursor
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| "-".to_string());
        let mut row = vec![
            job.id.to_string(),
            truncate(&printable(&job.kind), 40),
            truncate(&printable(&job.queue), 40),
            job.state.to_string(),
            progress_text(job),
            format!("{}/{}", job.attempts, job.max_attempts),
            job.interruptions.to_string(),
            truncate(&cursor, 40),
        ];
        if with_parent {
            let parent = job
                .parent_id
                .map_or_else(|| "-".to_string(), |p| p.to_string());
            row.insert(1, parent);
        }
        rows.push(row);
    }
    aligned(&rows)
}

/// One job in detail.
pub(crate) fn job_detail(job: &JobRecord) -> String {
    let mut lines = vec![
        format!("job {} ({})", job.id, printable(&job.kind)),
        format!("  state          {}", job.state),
        format!(
            "  queue          {} (priority {})",
            printable(&job.queue),
            job.priority
        ),
        format!("  params         {}", job.params),
        format!(
            "  step           {}",
            job.cursor
                .as_ref()
                .and_then(iterjob::steps::StepCursor::of)
                .map(|c| format!("{} (step {})", printable(&c.step), c.index + 1))
                .unwrap_or_else(|| "-".into())
        ),
        format!(
            "  cursor         {}",
            job.cursor
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "(start)".into())
        ),
        format!("  progress       {}", progress_text(job)),
    ];
    if let Some(n) = job.partitions {
        lines.push(format!(
            "  partitioned    {n} asked (progress is the partitions' sum)"
        ));
    }
    if let Some(parent) = job.parent_id {
        lines.push(format!("  partition of   job {parent}"));
    }
    if job.split_requested {
        lines.push("  split requested (an idle worker asked for half of what is left)".to_string());
    }
    if let Some(rate) = rate_per_sec(job) {
        lines.push(format!("  rate           {rate:.1} items/s"));
    }
    if let Some(eta) = eta_secs(job)
        && !job.state.is_finished()
    {
        let d = std::time::Duration::from_secs(eta.round() as u64);
        lines.push(format!(
            "  eta            {}",
            humantime::format_duration(d)
        ));
    }
    lines.push(format!(
        "  time running   {}",
        humantime::format_duration(std::time::Duration::from_secs(job.running_ms / 1000))
    ));
    lines.push(format!(
        "  attempts       {} of {} (crashes without progress: {})",
        job.attempts, job.max_attempts, job.crashes
    ));
    lines.push(format!("  runs           {}", job.runs));
    lines.push(format!("  interruptions  {}", job.interruptions));
    lines.push(format!(
        "  created        {} ({})",
        rfc3339(job.created_at),
        relative(job.created_at)
    ));
    if !job.state.is_finished() {
        lines.push(format!(
            "  run at         {} ({})",
            rfc3339(job.run_at),
            relative(job.run_at)
        ));
    }
    if let Some(t) = job.checkpointed_at {
        lines.push(format!("  checkpointed   {} ({})", rfc3339(t), relative(t)));
    }
    if let Some(t) = job.finished_at {
        lines.push(format!("  finished       {} ({})", rfc3339(t), relative(t)));
    }
    if let Some(w) = &job.worker_id {
        let lease = job.lease_expires_at.map(relative).unwrap_or_default();
        lines.push(format!(
            "  worker         {} (lease expires {lease})",
            printable(w)
        ));
    }
    if job.pause_requested {
        lines.push("  pause requested".to_string());
    }
    if job.cancel_requested {
        lines.push("  cancel requested".to_string());
    }
    if let Some(key) = &job.unique_key {
        lines.push(format!("  unique key     {}", printable(key)));
    }
    if let Some(e) = &job.last_error {
        if job.state == JobState::Queued && e.starts_with("throttled by ") {
            // a backpressure signal sent it back: say why it waits
            lines.push(format!(
                "  throttled      {}",
                printable(e.trim_start_matches("throttled by "))
            ));
        } else {
            lines.push(format!("  last error     {}", printable(e)));
            if let Some(failure) = &job.last_failure {
                lines.extend(failure_lines(failure));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{aligned, job_detail, job_json, throttle_note};
    use iterjob::JobState;

    #[test]
    fn throttle_note_shows_the_delay_per_item() {
        assert_eq!(throttle_note(Duration::ZERO), "");
        assert_eq!(
            throttle_note(Duration::from_millis(40)),
            ", throttled: 40 ms/item"
        );
        assert_eq!(
            throttle_note(Duration::from_micros(2_500)),
            ", throttled: 2.5 ms/item"
        );
    }

    #[test]
    fn a_cell_wider_than_a_format_width_is_padded_not_a_panic() {
        let wide = "w".repeat(70_000);
        let table = aligned(&[vec![wide.clone(), "B".into()], vec!["a".into(), "b".into()]]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], format!("{wide}  B"));
        assert_eq!(lines[1].len(), 70_000 + 3, "padded to the widest cell");
    }

    #[tokio::test]
    async fn control_characters_from_the_store_are_escaped_in_the_detail() {
        use iterjob::Store;
        let store = iterjob::MemoryStore::new();
        let id = store
            .job_insert(&iterjob::NewJob::new("k", serde_json::json!(null)))
            .await
            .unwrap();
        let mut job = store.job_get(id).await.unwrap().unwrap();
        job.last_error = Some("boom\u{1b}[2J\r\nagain".into());
        job.unique_key = Some("key\u{7}".into());
        let detail = job_detail(&job);
        assert!(
            !detail.contains('\u{1b}') && !detail.contains('\u{7}'),
            "{detail:?}"
        );
        assert!(detail.contains("boom\\u{1b}[2J\\r\\nagain"), "{detail}");
    }

    #[tokio::test]
    async fn show_says_which_item_failed_and_the_top_of_a_panics_backtrace() {
        use iterjob::Store;
        let store = iterjob::MemoryStore::new();
        let id = store
            .job_insert(&iterjob::NewJob::new("k", serde_json::json!(null)))
            .await
            .unwrap();
        let mut job = store.job_get(id).await.unwrap().unwrap();
        job.state = JobState::Failed;
        job.last_error = Some("the work panicked: boom".into());
        let frames: String = (0..30)
            .map(|i| format!("  {i}: frame_{i}\u{1b}[2J\n"))
            .collect();
        job.last_failure = Some(iterjob::Failure {
            item: Some(serde_json::json!([41, "a"])),
            attempt: 3,
            worker: "host:7:abc".into(),
            at: iterjob::store::now_millis(),
            backtrace: Some(frames),
        });
        let detail = job_detail(&job);
        assert!(detail.contains("failed on item [41,\"a\"]"), "{detail}");
        assert!(detail.contains("attempt 3 on host:7:abc"), "{detail}");
        assert!(detail.contains("  0: frame_0"), "{detail}");
        assert!(
            !detail.contains("frame_12"),
            "only the top is shown: {detail}"
        );
        assert!(detail.contains("18 more lines"), "{detail}");
        assert!(!detail.contains('\u{1b}'), "escaped: {detail:?}");
        let json = job_json(&job);
        assert_eq!(json["last_failure"]["item"], serde_json::json!([41, "a"]));
        assert!(
            json["last_failure"]["backtrace"]
                .as_str()
                .is_some_and(|b| b.contains("frame_29")),
            "--json has the whole backtrace"
        );
    }
}

/// The worker's status line on a terminal, once it is shown: log lines and
/// messages to stderr clear it first and redraw it after, so they never run into it.
static STATUS_LINE: std::sync::OnceLock<indicatif::ProgressBar> = std::sync::OnceLock::new();

/// The status line (a spinner on stderr), created on first use.
pub(crate) fn status_line() -> &'static indicatif::ProgressBar {
    STATUS_LINE.get_or_init(indicatif::ProgressBar::new_spinner)
}

/// `eprintln!` that clears the status line first (when one is shown).
pub(crate) fn status_eprintln(line: &str) {
    match STATUS_LINE.get() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// The writer tracing's log lines go through: stderr, with the status line
/// cleared around each line.
#[derive(Clone, Copy)]
struct StatusAwareStderr;

impl std::io::Write for StatusAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match STATUS_LINE.get() {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| std::io::stderr().write(buf)),
            _ => std::io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match STATUS_LINE.get() {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| std::io::stderr().write_all(buf)),
            _ => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StatusAwareStderr {
    type Writer = StatusAwareStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the log subscriber: `-v` levels or an `ITERJOB_LOG` filter, lines as
/// text or (with `--log-format json`) one JSON object per line carrying the span
/// fields (job id, kind, attempt, partition) of the run it happened in.
pub(crate) fn init_tracing(verbose: u8, format: crate::commands::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // sqlx reports every statement slower than 1 s at WARN; on a busy SQLite file
        // that is lock waits of concurrent writers, not news (shown from -v on)
        0 => "warn,sqlx::query=error",
        1 => "info,sqlx=warn",
        2 => "debug,sqlx=warn",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("ITERJOB_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(StatusAwareStderr);
    let _ = match format {
        crate::commands::LogFormat::Text => builder.try_init(),
        crate::commands::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}

/// Where and how the last failed run failed, for `show`: the item, the attempt and
/// worker, and the first lines of a panic's backtrace (`show --json` has it all).
fn failure_lines(failure: &iterjob::Failure) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(item) = &failure.item {
        lines.push(format!("  failed on item {}", printable(&item.to_string())));
    }
    lines.push(format!(
        "  failed run     attempt {} on {}, {}",
        failure.attempt,
        printable(&failure.worker),
        relative(failure.at)
    ));
    if let Some(backtrace) = &failure.backtrace {
        const SHOWN: usize = 12;
        let total = backtrace.lines().count();
        lines.push("  backtrace".to_string());
        for line in backtrace.lines().take(SHOWN) {
            lines.push(format!("    {}", printable(line)));
        }
        if total > SHOWN {
            lines.push(format!(
                "    … {} more lines (`show --json` has the whole backtrace)",
                total - SHOWN
            ));
        }
    }
    lines
}
