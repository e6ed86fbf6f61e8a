//! Jobs written as named steps in sequence ("copy the rows, then rebuild the index,
//! then notify"), each step with its own enumerator, item type and per-item work,
//! and one durable cursor that records the step and the position inside it.
//!
//! A step is a [`Step`] (a collection and the work for one of its items) or an
//! [`Action`] (one piece of work, run once). A [`StepsJob`] lists its steps; the
//! [`Stepped`] adapter turns it into a [`Job`] the registry takes. Interrupted
//! anywhere, the job resumes in the step it was in, at the item after its cursor;
//! a step already done is never run again, an action never twice after it has
//! been checkpointed. The stored cursor names the step (`iterjob show` prints it):
//!
//! ```json
//! {"step": "copy_rows", "index": 0, "at": 41250}
//! ```
//!
//! ```
//! use iterjob::enumerator::{self, Enumerator};
//! use iterjob::steps::{Action, Step, Steps, StepsJob, Stepped};
//! use iterjob::{JobContext, JobError, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Params {
//!     last_id: i64,
//! }
//!
//! /// Copies every order into the new table.
//! struct CopyRows;
//!
//! impl Step<Params> for CopyRows {
//!     type Item = i64;
//!     type Cursor = i64;
//!
//!     fn enumerate(
//!         &self,
//!         params: &Params,
//!         cursor: Option<i64>,
//!     ) -> Result<impl Enumerator<i64, i64> + 'static, JobError> {
//!         Ok(enumerator::range(1..params.last_id + 1, cursor))
//!     }
//!
//!     async fn process(&self, _ctx: &JobContext<Params>, id: i64) -> Result<(), JobError> {
//!         let _ = id; // INSERT INTO orders_v2 SELECT … WHERE id = $1
//!         Ok(())
//!     }
//! }
//!
//! /// Builds the index once the rows are there.
//! struct RebuildIndex;
//!
//! impl Action<Params> for RebuildIndex {
//!     async fn run(&self, _ctx: &JobContext<Params>) -> Result<(), JobError> {
//!         Ok(()) // CREATE INDEX CONCURRENTLY …
//!     }
//! }
//!
//! struct MigrateOrders;
//!
//! impl StepsJob for MigrateOrders {
//!     const KIND: &'static str = "migrate_orders";
//!     type Params = Params;
//!
//!     fn steps(&self) -> Steps<Params> {
//!         Steps::new()
//!             .step("copy_rows", CopyRows)
//!             .action("rebuild_index", RebuildIndex)
//!     }
//! }
//!
//! let registry = Registry::new().with(Stepped::new(MigrateOrders));
//! assert!(registry.contains("migrate_orders"));
//! ```
//!
//! Resuming needs the same steps in the same order up to the one the cursor is in:
//! a cursor whose step is no longer at its place fails the job with an error that
//! names both, never runs a step twice or skips one. Steps may be added after it.

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JobError;
use crate::enumerator::{Enumerator, from_vec};
use crate::job::{Job, JobContext, KindSettings};

/// One step of a [`StepsJob`]: a collection and the work for one of its items, as a
/// [`Job`]'s `enumerate` and `process` are.
pub trait Step<P>: Send + Sync + 'static {
    /// One item of the step's collection (or a batch).
    type Item: Send + 'static;

    /// The position in the step's collection, stored as JSON inside the job's cursor.
    type Cursor: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The step's enumerator from its last cursor (`None` when the step starts); it
    /// must yield exactly the items after `cursor`. Unlike a [`Job`]'s, it may not
    /// borrow `self` or `params`: clone what it needs (a pool is a handle).
    fn enumerate(
        &self,
        params: &P,
        cursor: Option<Self::Cursor>,
    ) -> Result<impl Enumerator<Self::Item, Self::Cursor> + 'static, JobError>;

    /// The work for one item.
    fn process(
        &self,
        ctx: &JobContext<P>,
        item: Self::Item,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// How many records one item stands for in progress counts (1 by default).
    fn count_items(&self, item: &Self::Item) -> u64 {
        let _ = item;
        1
    }
}

/// A step without items: one piece of work, run once (an index to build, a
/// notification to send). It is done when its run has been checkpointed; an
/// interruption before that (a crash) runs it again, so make it safe to repeat.
pub trait Action<P>: Send + Sync + 'static {
    /// The work.
    fn run(&self, ctx: &JobContext<P>) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A job of named steps; register it with [`Stepped::new`].
pub trait StepsJob: Send + Sync + 'static {
    /// The kind's stable name.
    const KIND: &'static str;

    /// Parameters, given at enqueue time, seen by every step.
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The steps, in order. Called once, when the adapter is built.
    fn steps(&self) -> Steps<Self::Params>;

    /// Per-kind settings (time slice, attempts, rate limit …), as [`Job::settings`].
    fn settings(&self) -> KindSettings {
        KindSettings::default()
    }
}

/// The steps of a [`StepsJob`], in order.
pub struct Steps<P> {
    entries: Vec<Entry<P>>,
}

struct Entry<P> {
    name: String,
    step: Box<dyn ErasedStep<P>>,
}

impl<P: Send + Sync + 'static> Default for Steps<P> {
    fn default() -> Self {
        Steps::new()
    }
}

impl<P: Send + Sync + 'static> Steps<P> {
    /// No steps yet.
    pub fn new() -> Self {
        Steps {
            entries: Vec::new(),
        }
    }

    /// Adds a step with items.
    pub fn step(mut self, name: impl Into<String>, step: impl Step<P>) -> Self {
        self.entries.push(Entry {
            name: name.into(),
            step: Box::new(Typed(step)),
        });
        self
    }

    /// Adds a step that runs once.
    pub fn action(mut self, name: impl Into<String>, action: impl Action<P>) -> Self {
        self.entries.push(Entry {
            name: name.into(),
            step: Box::new(Once(action)),
        });
        self
    }

    /// The steps' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
}

impl<P> std::fmt::Debug for Steps<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

/// Where a stepped job is: the step (its name and place) and the step's own cursor
/// (`None` at the step's start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCursor {
    /// The step's name.
    pub step: String,
    /// The step's place in the list (from 0).
    pub index: usize,
    /// The step's own cursor, as JSON; `None` when the step has not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Value>,
}

impl StepCursor {
    /// The step cursor in a job's stored cursor, when the job is a stepped one (for
    /// showing which step a job is in: `iterjob show`, the dashboard).
    pub fn of(cursor: &Value) -> Option<StepCursor> {
        let object = cursor.as_object()?;
        if !(object.contains_key("step") && object.contains_key("index")) {
            return None;
        }
        serde_json::from_value(cursor.clone()).ok()
    }
}

/// One item of a stepped job: which step it belongs to, and the step's item.
pub struct StepItem {
    index: usize,
    item: Box<dyn Any + Send>,
}

impl StepItem {
    /// The place (from 0) of the step the item belongs to.
    pub fn step_index(&self) -> usize {
        self.index
    }
}

impl std::fmt::Debug for StepItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepItem")
            .field("step", &self.index)
            .finish_non_exhaustive()
    }
}

/// A [`StepsJob`] as a [`Job`]: walks its steps one after the other with one cursor.
pub struct Stepped<J: StepsJob> {
    job: J,
    steps: Steps<J::Params>,
}

impl<J: StepsJob> std::fmt::Debug for Stepped<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stepped")
            .field("kind", &J::KIND)
            .field("steps", &self.steps)
            .finish()
    }
}

impl<J: StepsJob> Stepped<J> {
    /// The adapter, with the job's steps.
    ///
    /// # Panics
    /// When the job has no steps, or two steps share a name, or a name is empty: a
    /// mistake in the code, reported when the kind is registered rather than when a
    /// job of it runs.
    pub fn new(job: J) -> Self {
        let steps = job.steps();
        assert!(
            !steps.entries.is_empty(),
            "steps job `{}` has no steps; add some with Steps::step or Steps::action",
            J::KIND
        );
        let mut seen = HashSet::new();
        for entry in &steps.entries {
            assert!(
                !entry.name.trim().is_empty(),
                "steps job `{}`: a step has an empty name",
                J::KIND
            );
            assert!(
                seen.insert(entry.name.as_str()),
                "steps job `{}`: two steps are named `{}`; step names must be unique",
                J::KIND,
                entry.name
            );
        }
        Stepped { job, steps }
    }

    /// The job the adapter wraps.
    pub fn inner(&self) -> &J {
        &self.job
    }

    /// Where to start: the step's place and its cursor, checked against the steps.
    fn start(&self, cursor: Option<StepCursor>) -> Result<(usize, Option<Value>), JobError> {
        let Some(cursor) = cursor else {
            return Ok((0, None));
        };
        match self.steps.entries.get(cursor.index) {
            Some(entry) if entry.name == cursor.step => Ok((cursor.index, cursor.at)),
            found => Err(JobError::fatal(format!(
                "the steps of job kind `{}` changed since this job was checkpointed: its cursor \
                 is in step `{}` at place {}, where the code now has {}; resuming would run a \
                 step twice or skip one. Keep the steps up to that one in their order (add new \
                 steps after it), or enqueue a new job",
                J::KIND,
                cursor.step,
                cursor.index,
                match found {
                    Some(entry) => format!("step `{}`", entry.name),
                    None => format!("only {} steps", self.steps.entries.len()),
                }
            ))),
        }
    }
}

impl<J: StepsJob> Job for Stepped<J> {
    const KIND: &'static str = J::KIND;
    type Params = J::Params;
    type Cursor = StepCursor;
    type Item = StepItem;

    fn enumerate(
        &self,
        params: &Self::Params,
        cursor: Option<StepCursor>,
    ) -> Result<impl Enumerator<StepItem, StepCursor>, JobError> {
        let (index, at) = self.start(cursor)?;
        Ok(Walk {
            entries: &self.steps.entries,
            params,
            index,
            start: at,
            current: None,
            done: false,
        })
    }

    async fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: StepItem,
    ) -> Result<(), JobError> {
        let entry = self.steps.entries.get(item.index).ok_or_else(|| {
            JobError::fatal(format!("steps job `{}`: no step {}", J::KIND, item.index))
        })?;
        entry.step.process(ctx, item.item).await
    }

    fn count_items(&self, item: &StepItem) -> u64 {
        self.steps
            .entries
            .get(item.index)
            .map_or(1, |entry| entry.step.count_items(&*item.item))
    }

    fn settings(&self) -> KindSettings {
        self.job.settings()
    }
}

/// The walk over the steps from a starting place.
struct Walk<'s, 'p, P> {
    entries: &'s [Entry<P>],
    params: &'p P,
    index: usize,
    /// The cursor the current step starts from (taken when it is built).
    start: Option<Value>,
    current: Option<ErasedStream>,
    done: bool,
}

impl<P> Stream for Walk<'_, '_, P> {
    type Item = crate::enumerator::Step<StepItem, StepCursor>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(entry) = this.entries.get(this.index) else {
                this.done = true;
                return Poll::Ready(None);
            };
            let current = match &mut this.current {
                Some(current) => current,
                None => match entry
                    .step
                    .enumerate(this.params, this.start.take(), &entry.name)
                {
                    Ok(stream) => this.current.insert(stream),
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            };
            match current.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok((item, at)))) => {
                    let cursor = StepCursor {
                        step: entry.name.clone(),
                        index: this.index,
                        at: Some(at),
                    };
                    let item = StepItem {
                        index: this.index,
                        item,
                    };
                    return Poll::Ready(Some(Ok((item, cursor))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    // the step is done: the next one starts from its beginning
                    this.current = None;
                    this.index += 1;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

type ErasedStream =
    Pin<Box<dyn Stream<Item = Result<(Box<dyn Any + Send>, Value), JobError>> + Send + 'static>>;
type ErasedFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// A step with its item and cursor types erased, so steps of different types can
/// sit in one list.
trait ErasedStep<P>: Send + Sync {
    fn enumerate(
        &self,
        params: &P,
        cursor: Option<Value>,
        name: &str,
    ) -> Result<ErasedStream, JobError>;

    fn process<'a>(&'a self, ctx: &'a JobContext<P>, item: Box<dyn Any + Send>)
    -> ErasedFuture<'a>;

    fn count_items(&self, item: &(dyn Any + Send)) -> u64;
}

struct Typed<S>(S);

impl<P, S> ErasedStep<P> for Typed<S>
where
    P: Send + Sync + 'static,
    S: Step<P>,
{
    fn enumerate(
        &self,
        params: &P,
        cursor: Option<Value>,
        name: &str,
    ) -> Result<ErasedStream, JobError> {
        let cursor = cursor
            .map(serde_json::from_value::<S::Cursor>)
            .transpose()
            .map_err(|e| {
                JobError::fatal(format!(
                    "the stored cursor of step `{name}` does not fit the step's cursor type: {e}"
                ))
            })?;
        let name = name.to_string();
        let stream = self.0.enumerate(params, cursor)?.map(move |step| {
            let (item, cursor) = step?;
            let at = serde_json::to_value(&cursor).map_err(|e| {
                JobError::fatal(format!(
                    "the cursor of step `{name}` does not serialize to JSON: {e}"
                ))
            })?;
            Ok((Box::new(item) as Box<dyn Any + Send>, at))
        });
        Ok(Box::pin(stream))
    }

    fn process<'a>(
        &'a self,
        ctx: &'a JobContext<P>,
        item: Box<dyn Any + Send>,
    ) -> ErasedFuture<'a> {
        Box::pin(async move {
            let item = item.downcast::<S::Item>().map_err(|_| {
                JobError::fatal("a step was handed an item of another step (a bug in iterjob)")
            })?;
            self.0.process(ctx, *item).await
        })
    }

    fn count_items(&self, item: &(dyn Any + Send)) -> u64 {
        (item as &dyn Any)
            .downcast_ref::<S::Item>()
            .map_or(1, |item| self.0.count_items(item))
    }
}

struct Once<A>(A);

impl<P, A> ErasedStep<P> for Once<A>
where
    P: Send + Sync + 'static,
    A: Action<P>,
{
    fn enumerate(
        &self,
        _params: &P,
        cursor: Option<Value>,
        name: &str,
    ) -> Result<ErasedStream, JobError> {
        // one item; its cursor (`true`) marks the action done
        let done = match cursor {
            None => None,
            Some(Value::Bool(true)) => Some(1usize),
            Some(other) => {
                return Err(JobError::fatal(format!(
                    "the stored cursor of action `{name}` is {other}, not `true`"
                )));
            }
        };
        let stream = from_vec(vec![()], done).map(|step| {
            let (item, _) = step?;
            Ok((Box::new(item) as Box<dyn Any + Send>, Value::Bool(true)))
        });
        Ok(Box::pin(stream))
    }

    fn process<'a>(
        &'a self,
        ctx: &'a JobContext<P>,
        _item: Box<dyn Any + Send>,
    ) -> ErasedFuture<'a> {
        Box::pin(self.0.run(ctx))
    }

    fn count_items(&self, _item: &(dyn Any + Send)) -> u64 {
        1
    }
}
