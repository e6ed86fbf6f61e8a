//! Recurring jobs: a kind enqueued on a cron schedule, registered in code.
//!
//! ```
//! use iterjob::schedule::{Overlap, Schedule};
//!
//! // every night at 03:00 Berlin time; skipped while last night's sync still runs
//! let nightly = Schedule::new("nightly-sync", "0 3 * * *", "sync_shops", serde_json::json!({}))?
//!     .timezone("Europe/Berlin")?
//!     .overlap(Overlap::Skip);
//! assert_eq!(nightly.name(), "nightly-sync");
//! # Ok::<(), iterjob::Error>(())
//! ```
//!
//! Register it with [`Registry::schedule`](crate::Registry::schedule) next to its kind;
//! every worker built from that registry keeps the schedule. Any number of worker
//! processes may: each tick enqueues exactly one job, because a tick is taken by an
//! atomic compare-and-set on the schedule's row in the store (its last tick) in the
//! same transaction as the job's insert ([`Store::schedule_tick`](crate::store::Store::schedule_tick)),
//! and the job also carries the unique key `schedule:NAME:TICK`.
//!
//! * **Expressions**: the standard 5 fields (`minute hour day-of-month month
//!   day-of-week`, POSIX/Vixie semantics: 0 and 7 are Sunday, names allowed, and
//!   `L`, `#` and `W` extensions), or 6 with seconds first; parsed by
//!   [croner](https://docs.rs/croner).
//! * **Time zones**: explicit, UTC by default ([`Schedule::timezone`], IANA names);
//!   a schedule follows the zone's wall clock across daylight-saving changes.
//! * **Overlap**: by default a tick whose previous job has not finished yet (waiting,
//!   running, retrying or paused) is skipped ([`Overlap::Skip`]); [`Overlap::Enqueue`]
//!   enqueues it anyway.
//! * **Missed ticks** (no worker ran at the time): at most one catch-up job, for the
//!   latest missed tick, by default ([`CatchUp::Latest`]); [`CatchUp::Skip`] runs none.
//! * A new schedule starts counting when a worker first sees it: it never catches
//!   up on ticks from before it existed.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::store::{JobId, Millis, NewJob};

/// What a tick does while the schedule's previous job has not finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick: one job of the schedule at a time (the default, since a
    /// recurring job that outlasts its period would otherwise pile up).
    #[default]
    Skip,
    /// Enqueue the tick's job anyway (they run side by side, or queue up).
    Enqueue,
}

/// What happens to ticks missed while no worker ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One job, for the latest missed tick (the default): a nightly sync missed
    /// during a three-day outage runs once when workers are back, not three times.
    #[default]
    Latest,
    /// None: a tick more than [`Schedule::grace`] late is recorded without a job.
    Skip,
}

/// A kind enqueued on a cron schedule. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Schedule {
    name: String,
    expression: String,
    cron: Cron,
    timezone: Tz,
    kind: String,
    params: Value,
    queue: Option<String>,
    priority: i32,
    overlap: Overlap,
    catch_up: CatchUp,
    grace: std::time::Duration,
}

impl Schedule {
    /// A schedule named `name` (unique in the store: its state is kept under this
    /// name) that enqueues a job of `kind` with `params` on every tick of
    /// `expression`, in UTC.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty name or an expression croner rejects, naming it.
    pub fn new(
        name: impl Into<String>,
        expression: &str,
        kind: impl Into<String>,
        params: Value,
    ) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 200 {
            return Err(Error::Config(format!(
                "schedule name `{}` is not usable: give it a printable name of 1 to 200 characters",
                name.escape_default()
            )));
        }
        let cron = Cron::from_str(expression).map_err(|e| {
            Error::Config(format!(
                "schedule `{name}`: `{expression}` is not a cron expression ({e}); write five \
                 fields, minute hour day-of-month month day-of-week, e.g. `0 3 * * *` for 03:00 \
                 every day"
            ))
        })?;
        Ok(Schedule {
            name,
            expression: expression.to_string(),
            cron,
            timezone: Tz::UTC,
            kind: kind.into(),
            params,
            queue: None,
            priority: 0,
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
            grace: std::time::Duration::from_secs(60),
        })
    }

    /// A schedule of the job kind `J` with typed parameters.
    ///
    /// # Errors
    /// As [`Schedule::new`], and [`Error::Serialize`] when the parameters do not
    /// serialize.
    pub fn of<J: Job>(
        name: impl Into<String>,
        expression: &str,
        _job: &J,
        params: &J::Params,
    ) -> Result<Self> {
        let params = serde_json::to_value(params).map_err(|source| Error::Serialize {
            what: "schedule parameters",
            source,
        })?;
        Schedule::new(name, expression, J::KIND, params)
    }

    /// Evaluates the expression in this IANA time zone (`Europe/Berlin`,
    /// `America/New_York`) instead of UTC, following its daylight-saving changes.
    ///
    /// # Errors
    /// [`Error::Config`] naming an unknown zone.
    pub fn timezone(mut self, zone: &str) -> Result<Self> {
        self.timezone = zone.parse::<Tz>().map_err(|_| {
            Error::Config(format!(
                "schedule `{}`: unknown time zone `{zone}`; use an IANA name such as \
                 `Europe/Berlin` or `UTC`",
                self.name
            ))
        })?;
        Ok(self)
    }

    /// The queue its jobs go to (default: the kind's).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Its jobs' priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// What a tick does while the previous job has not finished.
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// What happens to ticks missed while no worker ran.
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// With [`CatchUp::Skip`]: how late a tick may be noticed and still run (workers
    /// look every second; default 60 s).
    pub fn grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    /// With [`CatchUp::Skip`], how late a tick may be noticed and still run.
    pub fn grace_period(&self) -> std::time::Duration {
        self.grace
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its cron expression, as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Its time zone's IANA name.
    pub fn timezone_name(&self) -> &str {
        self.timezone.name()
    }

    /// The kind it enqueues.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The parameters of its jobs.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The queue its jobs go to, when it sets one.
    pub fn queue_name(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// Its overlap policy.
    pub fn overlap_policy(&self) -> Overlap {
        self.overlap
    }

    /// Its catch-up policy.
    pub fn catch_up_policy(&self) -> CatchUp {
        self.catch_up
    }

    /// The first tick strictly after `after` (milliseconds since the Unix epoch), or
    /// `None` when the expression never matches again.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        // ticks fall on whole seconds: search from the second `after` is in
        let at = self
            .timezone
            .timestamp_millis_opt(after.div_euclid(1000) * 1000)
            .single()?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t: DateTime<Tz>| t.timestamp_millis())
    }

    /// The latest tick in `(after, now]` and how many ticks that interval holds
    /// (counted up to 10,000), or `None` when no tick falls in it.
    pub fn due(&self, after: Millis, now: Millis) -> Option<(Millis, u64)> {
        let mut latest = None;
        let mut count = 0u64;
        let mut at = after;
        while let Some(tick) = self.next_after(at) {
            if tick > now {
                break;
            }
            latest = Some(tick);
            count += 1;
            at = tick;
            if count >= 10_000 {
                // a per-second schedule after a long outage: jump to the last ticks
                if let Some(last) = self.previous_at_or_before(now) {
                    latest = Some(last);
                }
                break;
            }
        }
        latest.map(|t| (t, count))
    }

    /// The latest tick at or before `at`.
    fn previous_at_or_before(&self, at: Millis) -> Option<Millis> {
        let at = self
            .timezone
            .timestamp_millis_opt(at.div_euclid(1000) * 1000)
            .single()?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t: DateTime<Tz>| t.timestamp_millis())
    }

    /// The job of the tick at `tick`: the kind's defaults, this schedule's queue and
    /// priority, the unique key `schedule:NAME:TICK`.
    pub(crate) fn job(&self, base: NewJob, tick: Millis) -> NewJob {
        let mut job = base.priority(self.priority);
        if let Some(queue) = &self.queue {
            job.queue = queue.clone();
        }
        job.unique_key(format!("schedule:{}:{tick}", self.name))
    }

    /// The time of `ms` in the schedule's zone, RFC 3339.
    pub fn format_time(&self, ms: Millis) -> String {
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => t.with_timezone(&self.timezone).to_rfc3339(),
            None => ms.to_string(),
        }
    }
}

/// One tick, as the scheduler hands it to [`Store::schedule_tick`](crate::store::Store::schedule_tick).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleTick {
    /// The schedule's name.
    pub name: String,
    /// The last tick the scheduler read from the store (`None`: the schedule has no
    /// row yet). The tick is taken only if the store still holds this value.
    pub previous: Option<Millis>,
    /// The tick: becomes the schedule's last tick.
    pub tick: Millis,
    /// The job to enqueue (`None`: record the tick without a job).
    pub job: Option<NewJob>,
    /// Skip the job (still taking the tick) while the schedule's previous job has
    /// not finished.
    pub skip_if_running: bool,
}

/// What [`Store::schedule_tick`](crate::store::Store::schedule_tick) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TickOutcome {
    /// The tick was taken and its job enqueued.
    Enqueued(JobId),
    /// The tick was taken; its job was skipped because this one, the schedule's
    /// previous, has not finished.
    SkippedRunning(JobId),
    /// The tick was taken without a job.
    Recorded,
    /// Another process took this tick (or a later one) first: nothing was done.
    Stale,
}

/// A schedule's state in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The schedule's name.
    pub name: String,
    /// Its last tick taken.
    pub last_tick: Millis,
    /// The job its last enqueued tick created.
    pub last_job: Option<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn five_fields_with_standard_weekdays_in_utc() {
        // Monday to Friday at 03:00: 2026-12-04 is a Friday, 12-05 a Saturday
        let s = Schedule::new("n", "0 3 * * 1-5", "k", Value::Null).unwrap();
        assert_eq!(
            s.next_after(ms("2026-12-04T03:00:00Z")),
            Some(ms("2026-12-07T03:00:00Z")),
            "Saturday and Sunday are skipped"
        );
        assert_eq!(
            s.next_after(ms("2026-12-03T12:00:00Z")),
            Some(ms("2026-12-04T03:00:00Z"))
        );
        let sunday = Schedule::new("n", "0 0 * * 0", "k", Value::Null).unwrap();
        assert_eq!(
            sunday.next_after(ms("2026-12-03T00:00:00Z")),
            Some(ms("2026-12-06T00:00:00Z")),
            "0 is Sunday"
        );
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let s = Schedule::new("n", "0 3 * * *", "k", Value::Null)
            .unwrap()
            .timezone("Europe/Berlin")
            .unwrap();
        // winter: 03:00 CET is 02:00 UTC; summer: 03:00 CEST is 01:00 UTC
        assert_eq!(
            s.next_after(ms("2026-12-03T12:00:00Z")),
            Some(ms("2026-12-04T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-07-01T12:00:00Z")),
            Some(ms("2026-07-02T01:00:00Z"))
        );
        assert_eq!(s.timezone_name(), "Europe/Berlin");
    }

    #[test]
    fn due_is_the_latest_tick_and_counts_the_missed() {
        let s = Schedule::new("n", "0 * * * *", "k", Value::Null).unwrap();
        let after = ms("2026-12-03T10:30:00Z");
        assert_eq!(s.due(after, ms("2026-12-03T10:59:59Z")), None);
        assert_eq!(
            s.due(after, ms("2026-12-03T13:05:00Z")),
            Some((ms("2026-12-03T13:00:00Z"), 3))
        );
        // ticks fall on whole seconds, whatever the milliseconds of `after`
        assert_eq!(
            s.next_after(ms("2026-12-03T10:59:59.367Z")),
            Some(ms("2026-12-03T11:00:00Z"))
        );
        assert_eq!(
            s.due(
                ms("2026-12-03T10:00:00.250Z"),
                ms("2026-12-03T11:00:00.999Z")
            ),
            Some((ms("2026-12-03T11:00:00Z"), 1))
        );
        // seconds first, six fields
        let every = Schedule::new("n", "*/10 * * * * *", "k", Value::Null).unwrap();
        assert_eq!(
            every.due(ms("2026-12-03T10:00:00Z"), ms("2026-12-03T10:00:35Z")),
            Some((ms("2026-12-03T10:00:30Z"), 3))
        );
    }

    #[test]
    fn bad_expressions_names_and_zones_are_refused_with_what_to_write() {
        let e = Schedule::new("n", "every night", "k", Value::Null).unwrap_err();
        assert!(
            e.to_string()
                .contains("`every night` is not a cron expression"),
            "{e}"
        );
        assert!(e.to_string().contains("0 3 * * *"), "{e}");
        let e = Schedule::new("", "0 3 * * *", "k", Value::Null).unwrap_err();
        assert!(e.to_string().contains("schedule name"), "{e}");
        let e = Schedule::new("n", "0 3 * * *", "k", Value::Null)
            .unwrap()
            .timezone("Mars/Olympus")
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone `Mars/Olympus`"),
            "{e}"
        );
    }
}
