//! Live updates over server-sent events: `GET /live?ids=1,2,3[&counts=1]` sends,
//! every [`Dashboard::live_interval`](crate::Dashboard::live_interval), the progress
//! of those jobs that changed (event `jobs`), the items per second of the running
//! ones (event `rate`), and, with `counts=1`, jobs by state (event `counts`, every
//! fifth tick). The page's script applies them with `textContent` only.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use iterjob::{JobId, JobState};
use serde::Deserialize;

use crate::AppState;
use crate::format::{self, ProgressView};
use crate::pages::WorkerRow;

/// The most jobs one stream follows.
pub(crate) const MAX_IDS: usize = 200;

/// Samples kept per job to measure its rate (one per tick).
const WINDOW: usize = 10;

/// The stream's query string.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveParams {
    #[serde(default)]
    ids: String,
    #[serde(default)]
    counts: Option<String>,
    /// `1`: the workers too (event `workers`, every fifth tick).
    #[serde(default)]
    workers: Option<String>,
}

fn parse_ids(raw: &str) -> Result<Vec<JobId>, String> {
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = part
            .parse::<JobId>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("`{part}` is not a job id"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_IDS {
        return Err(format!(
            "a live stream follows at most {MAX_IDS} jobs, not {}",
            ids.len()
        ));
    }
    Ok(ids)
}

pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
    Query(params): Query<LiveParams>,
) -> Response {
    let ids = match parse_ids(&params.ids) {
        Ok(ids) => ids,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let counts = params.counts.is_some_and(|c| c == "1");
    let workers = params.workers.is_some_and(|w| w == "1");
    let follower = Follower {
        state,
        ids,
        counts,
        workers,
        tick: 0,
        samples: BTreeMap::new(),
        sent: BTreeMap::new(),
    };
    Sse::new(events(follower))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One client's view: what it follows and what it was last sent.
struct Follower {
    state: Arc<AppState>,
    ids: Vec<JobId>,
    counts: bool,
    workers: bool,
    tick: u64,
    samples: BTreeMap<JobId, VecDeque<(Instant, u64)>>,
    sent: BTreeMap<JobId, ProgressView>,
}

impl Follower {
    /// Items per second of job `id` over the last samples, if it moved.
    fn measure(&mut self, id: JobId, items_done: u64, running: bool) -> Option<f64> {
        let window = self.samples.entry(id).or_default();
        if !running {
            window.clear();
            return None;
        }
        window.push_back((Instant::now(), items_done));
        while window.len() > WINDOW {
            window.pop_front();
        }
        let (t0, n0) = *window.front()?;
        let (t1, n1) = *window.back()?;
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 1.5 && n1 >= n0).then(|| (n1 - n0) as f64 / secs)
    }

    /// The events of one tick.
    async fn tick(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut changed = Vec::new();
        let mut total_rate = 0.0;
        for id in self.ids.clone() {
            let job = match self.state.store.job_get(id).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "dashboard live update: reading a job failed");
                    continue;
                }
            };
            let running = job.state == JobState::Running;
            let measured = self.measure(id, job.items_done, running);
            if running {
                total_rate += measured.unwrap_or(0.0);
            }
            let view = ProgressView::of(&job, measured);
            if self.sent.get(&id) != Some(&view) {
                self.sent.insert(id, view.clone());
                changed.push(view);
            }
        }
        if !changed.is_empty()
            && let Ok(event) = Event::default().event("jobs").json_data(&changed)
        {
            out.push(event);
        }
        if let Ok(event) = Event::default().event("rate").json_data(serde_json::json!({
            "per_sec": total_rate,
            "text": format::rate(total_rate),
        })) {
            out.push(event);
        }
        if self.counts && self.tick.is_multiple_of(5) {
            match self.state.store.job_count_top_level_by_state().await {
                Ok(counts) => {
                    let map: BTreeMap<&str, String> = counts
                        .into_iter()
                        .map(|(s, n)| (s.as_str(), format::count(n)))
                        .collect();
                    if let Ok(event) = Event::default().event("counts").json_data(map) {
                        out.push(event);
                    }
                }
                Err(error) => tracing::warn!(%error, "dashboard live update: counting failed"),
            }
        }
        if self.workers && self.tick.is_multiple_of(5) {
            match self.state.store.workers().await {
                Ok(workers) => {
                    let now = iterjob::store::now_millis();
                    let rows: Vec<WorkerRow> =
                        workers.iter().map(|w| WorkerRow::of(w, now)).collect();
                    if let Ok(event) = Event::default().event("workers").json_data(rows) {
                        out.push(event);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "dashboard live update: listing workers failed")
                }
            }
        }
        self.tick += 1;
        out
    }
}

fn events(follower: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    use futures::StreamExt;
    stream::unfold(follower, |mut f| async move {
        if f.tick > 0 {
            tokio::time::sleep(f.state.live_interval).await;
        }
        let events = f.tick().await;
        Some((stream::iter(events.into_iter().map(Ok)), f))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_and_bounded() {
        assert_eq!(parse_ids("1,2, 3,,2").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_ids("").unwrap(), Vec::<JobId>::new());
        assert!(parse_ids("1,x").unwrap_err().contains("`x`"));
        assert!(parse_ids("-4").is_err());
        let many: Vec<String> = (1..=MAX_IDS as i64 + 1).map(|i| i.to_string()).collect();
        assert!(parse_ids(&many.join(",")).is_err());
    }
}
