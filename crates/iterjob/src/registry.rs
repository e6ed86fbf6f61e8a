//! The registry of job kinds a worker (or a CLI) knows, and parameter validation.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::{Job, KindSettings};
use crate::runtime::HealthCheck;
use crate::runtime::run::{RunEnv, RunReport, run_job};
use crate::schedule::Schedule;
use crate::store::NewJob;

fn schedule_queue(schedule: &Schedule) -> Option<&str> {
    schedule.queue_name()
}

/// The job kinds a process can run, by name.
///
/// ```
/// # use iterjob::{Job, JobContext, JobError, enumerator::{self, Enumerator}};
/// # struct Backfill;
/// # impl Job for Backfill {
/// #     const KIND: &'static str = "backfill";
/// #     type Params = u32; type Cursor = i64; type Item = i64;
/// #     fn enumerate(&self, n: &u32, c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
/// #         Ok(enumerator::range(0..i64::from(*n), c))
/// #     }
/// #     async fn process(&self, _: &JobContext<u32>, _: i64) -> Result<(), JobError> { Ok(()) }
/// # }
/// use iterjob::Registry;
///
/// let mut registry = Registry::new();
/// registry.register(Backfill);
/// let job = registry.new_job("backfill", serde_json::json!(1000)).unwrap();
/// assert_eq!(job.kind, "backfill");
/// let err = registry.new_job("backfill", serde_json::json!("lots")).unwrap_err();
/// assert!(err.to_string().contains("parameters for job kind `backfill` are invalid"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn ErasedKind>>,
    schedules: Vec<Schedule>,
    health_checks: Vec<Arc<dyn HealthCheck>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field(
                "schedules",
                &self
                    .schedules
                    .iter()
                    .map(Schedule::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "health_checks",
                &self
                    .health_checks
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a job kind under [`Job::KIND`], replacing any kind of that name.
    pub fn register<J: Job>(&mut self, job: J) -> &mut Self {
        self.kinds.insert(J::KIND, Arc::new(Kind(Arc::new(job))));
        self
    }

    /// Registers a job kind, builder style.
    pub fn with<J: Job>(mut self, job: J) -> Self {
        self.register(job);
        self
    }

    /// Adds everything `other` holds (kinds, schedules, health checks); what
    /// `other` names replaces what this registry has under the same name.
    pub fn merge(&mut self, other: Registry) -> &mut Self {
        self.kinds.extend(other.kinds);
        for schedule in other.schedules {
            self.add_schedule(schedule);
        }
        for check in other.health_checks {
            self.add_health_check(check);
        }
        self
    }

    /// Adds a recurring schedule ([`crate::schedule`]): every worker built from this
    /// registry keeps it, and each of its ticks enqueues one job across all of
    /// them. A schedule of the same name replaces the earlier one. Its kind and
    /// parameters are checked when the worker is built.
    pub fn add_schedule(&mut self, schedule: Schedule) -> &mut Self {
        self.schedules.retain(|s| s.name() != schedule.name());
        self.schedules.push(schedule);
        self
    }

    /// Adds a recurring schedule, builder style; see [`Registry::add_schedule`].
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.add_schedule(schedule);
        self
    }

    /// Adds a health check for the whole app ([`HealthCheck`]): every worker built
    /// from this registry runs it each control interval, and while it answers
    /// [`Health::Throttle`](crate::Health::Throttle) every kind that does not opt out
    /// ([`KindSettings::backpressure`](crate::KindSettings::backpressure)) backs
    /// off. A check of the same name replaces the earlier one.
    pub fn health_check(&mut self, check: impl HealthCheck) -> &mut Self {
        self.add_health_check(Arc::new(check))
    }

    /// [`Registry::health_check`] for a check already shared.
    pub fn add_health_check(&mut self, check: Arc<dyn HealthCheck>) -> &mut Self {
        self.health_checks.retain(|c| c.name() != check.name());
        self.health_checks.push(check);
        self
    }

    /// The registered health checks, in the order they were added.
    pub fn health_checks(&self) -> &[Arc<dyn HealthCheck>] {
        &self.health_checks
    }

    /// The kinds that opted out of the default backpressure
    /// ([`KindSettings::backpressure`](crate::KindSettings::backpressure)), sorted.
    pub fn exempt_kinds(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, kind)| kind.settings().backpressure == Some(false))
            .map(|(name, _)| *name)
            .collect()
    }

    /// The registered schedules, in the order they were added.
    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    /// The registered kinds' names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// What an operator sees of each registered kind (its description, parameter
    /// schema, whether it splits), sorted by name.
    pub fn kinds_info(&self) -> Vec<KindInfo> {
        self.kinds
            .iter()
            .map(|(name, kind)| kind.info(name))
            .collect()
    }

    /// [`Registry::kinds_info`] for one kind; `None` if it is not registered.
    pub fn kind_info(&self, kind: &str) -> Option<KindInfo> {
        self.kinds
            .get_key_value(kind)
            .map(|(name, erased)| erased.info(name))
    }

    /// True if `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// Checks that `kind` can be enqueued with `n` partitions: it is registered and
    /// implements [`Job::partition`] ([`Job::PARTITIONABLE`]). The error says what
    /// to do instead.
    pub fn check_partitions(&self, kind: &str, n: u32) -> Result<()> {
        let erased = self.get(kind)?;
        if n == 0 {
            return Err(Error::Config(format!(
                "{n} partitions asked for job kind `{kind}`; ask for at least 1"
            )));
        }
        if !erased.partitionable() {
            return Err(Error::Config(format!(
                "job kind `{kind}` cannot be split into partitions: it does not implement \
                 `Job::partition` (a kind that does sets `const PARTITIONABLE: bool = true`); \
                 enqueue it without partitions"
            )));
        }
        Ok(())
    }

    /// Checks `params` against the kind's parameter type and returns a job ready to
    /// insert, with the kind's default queue and attempt budget. The error names the
    /// unknown kind, or the field that does not fit.
    pub fn new_job(&self, kind: &str, params: Value) -> Result<NewJob> {
        let erased = self.get(kind)?;
        erased.check_params(&params)?;
        let settings = erased.settings();
        let mut job = NewJob::new(kind, params);
        if let Some(queue) = settings.queue {
            job.queue = queue;
        }
        if let Some(attempts) = settings.max_attempts {
            job.max_attempts = attempts;
        }
        Ok(job)
    }

    /// Checks every kind's settings that can be wrong on their own (rate limits,
    /// adaptive throttling); the error names the kind.
    pub(crate) fn validate(&self) -> Result<()> {
        for (kind, erased) in &self.kinds {
            crate::runtime::pace::validate(kind, &erased.settings())?;
        }
        for schedule in &self.schedules {
            self.schedule_job(schedule)
                .map_err(|e| Error::Config(format!("schedule `{}`: {e}", schedule.name())))?;
        }
        Ok(())
    }

    /// The job a tick of `schedule` enqueues (before its tick's unique key).
    pub(crate) fn schedule_job(&self, schedule: &Schedule) -> Result<NewJob> {
        let job = self.new_job(schedule.kind(), schedule.params().clone())?;
        if let Some(queue) = schedule_queue(schedule) {
            crate::store::check_queue_name(queue)?;
        }
        Ok(job)
    }

    pub(crate) fn get(&self, kind: &str) -> Result<&Arc<dyn ErasedKind>> {
        self.kinds.get(kind).ok_or_else(|| Error::UnknownKind {
            kind: kind.to_string(),
            known: if self.kinds.is_empty() {
                "(none)".to_string()
            } else {
                self.kinds().join(", ")
            },
        })
    }
}

impl NewJob {
    /// A job of kind `J` with typed parameters, with the kind's default queue and
    /// attempt budget.
    pub fn of<J: Job>(job: &J, params: &J::Params) -> Result<NewJob> {
        let value = serde_json::to_value(params).map_err(|source| Error::Serialize {
            what: "job parameters",
            source,
        })?;
        let settings = job.settings();
        let mut new = NewJob::new(J::KIND, value);
        if let Some(queue) = settings.queue {
            new.queue = queue;
        }
        if let Some(attempts) = settings.max_attempts {
            new.max_attempts = attempts;
        }
        Ok(new)
    }
}

/// A registered kind as operators see it ([`Registry::kinds_info`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KindInfo {
    /// [`Job::KIND`].
    pub name: &'static str,
    /// [`Job::DESCRIPTION`] (empty when the kind gives none).
    pub description: &'static str,
    /// [`Job::params_schema`].
    pub params_schema: Option<Value>,
    /// [`Job::PARTITIONABLE`].
    pub partitionable: bool,
    /// The kind's default queue ([`KindSettings::queue`]), `None` for the default one.
    pub queue: Option<String>,
}

/// A job kind with its types erased, so a worker can hold many kinds.
pub(crate) trait ErasedKind: Send + Sync + 'static {
    fn info(&self, name: &'static str) -> KindInfo;
    fn settings(&self) -> KindSettings;
    fn check_params(&self, params: &Value) -> Result<()>;
    fn partitionable(&self) -> bool;
    fn run(&self, env: RunEnv) -> BoxFuture<'static, RunReport>;
}

struct Kind<J>(Arc<J>);

impl<J: Job> ErasedKind for Kind<J> {
    fn info(&self, name: &'static str) -> KindInfo {
        KindInfo {
            name,
            description: J::DESCRIPTION,
            params_schema: J::params_schema(),
            partitionable: J::PARTITIONABLE,
            queue: self.0.settings().queue,
        }
    }

    fn settings(&self) -> KindSettings {
        self.0.settings()
    }

    fn check_params(&self, params: &Value) -> Result<()> {
        decode_params::<J>(params).map(drop)
    }

    fn partitionable(&self) -> bool {
        J::PARTITIONABLE
    }

    fn run(&self, env: RunEnv) -> BoxFuture<'static, RunReport> {
        let job = Arc::clone(&self.0);
        Box::pin(async move { run_job(job, env).await })
    }
}

/// Deserializes a kind's parameters; the error names the path of the field that
/// does not fit (`customer.id: invalid type: string "x", expected i64`).
pub(crate) fn decode_params<J: Job>(params: &Value) -> Result<J::Params> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::InvalidParams {
            kind: J::KIND.to_string(),
            message: if path == "." {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            },
        }
    })
}
