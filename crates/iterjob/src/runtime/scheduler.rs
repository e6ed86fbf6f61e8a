//! The scheduler: every worker whose registry has schedules looks every
//! [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval) for
//! ticks that came due and takes each with [`Store::schedule_tick`], which
//! enqueues its job exactly once however many workers race for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::Registry;
use crate::schedule::{CatchUp, Overlap, ScheduleTick, TickOutcome};
use crate::store::{Millis, Store, duration_millis, now_millis};

/// Looks for due ticks every `interval` until aborted.
pub(crate) async fn run(store: Arc<dyn Store>, registry: Arc<Registry>, interval: Duration) {
    loop {
        if let Err(error) = pass(&*store, &registry, now_millis()).await {
            tracing::warn!(%error, "scheduler: reading the schedules' state failed; trying again");
        }
        tokio::time::sleep(interval).await;
    }
}

/// One look at every schedule, as of `now`.
pub(crate) async fn pass(store: &dyn Store, registry: &Registry, now: Millis) -> crate::Result<()> {
    let states: HashMap<String, Millis> = store
        .schedule_states()
        .await?
        .into_iter()
        .map(|s| (s.name, s.last_tick))
        .collect();
    for schedule in registry.schedules() {
        let name = schedule.name();
        let tick = match states.get(name) {
            // a new schedule counts from now: no catch-up for before it existed
            None => ScheduleTick {
                name: name.to_string(),
                previous: None,
                tick: now,
                job: None,
                skip_if_running: false,
            },
            Some(&last) => {
                let Some((due, ticks)) = schedule.due(last, now) else {
                    continue;
                };
                let late = now.saturating_sub(due);
                let skip_late = schedule.catch_up_policy() == CatchUp::Skip
                    && late > duration_millis(schedule.grace_period());
                if ticks > 1 || skip_late {
                    tracing::info!(
                        schedule = name,
                        missed = ticks - u64::from(!skip_late),
                        catch_up = !skip_late,
                        "scheduler: ticks were missed while no worker ran"
                    );
                }
                let job = if skip_late {
                    None
                } else {
                    match registry.schedule_job(schedule) {
                        Ok(base) => Some(schedule.job(base, due)),
                        Err(error) => {
                            tracing::error!(schedule = name, %error, "scheduler: cannot build the schedule's job");
                            continue;
                        }
                    }
                };
                ScheduleTick {
                    name: name.to_string(),
                    previous: Some(last),
                    tick: due,
                    job,
                    skip_if_running: schedule.overlap_policy() == Overlap::Skip,
                }
            }
        };
        match store.schedule_tick(&tick).await {
            Ok(TickOutcome::Enqueued(id)) => {
                tracing::info!(schedule = name, job = id, tick = %schedule.format_time(tick.tick), "scheduler: enqueued a tick's job");
            }
            Ok(TickOutcome::SkippedRunning(previous)) => {
                tracing::info!(schedule = name, previous, tick = %schedule.format_time(tick.tick), "scheduler: skipped a tick, the previous job has not finished");
            }
            Ok(TickOutcome::Recorded | TickOutcome::Stale) => {}
            Err(error) => {
                tracing::warn!(schedule = name, %error, "scheduler: taking a tick failed; trying again");
            }
        }
    }
    Ok(())
}
