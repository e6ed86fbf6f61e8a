//! Jobs of named steps: interrupted after any number of items, across step
//! boundaries, every item of every step is done exactly once and in order; an action
//! runs once; a job whose steps changed under its cursor fails loudly; and the real
//! worker walks one through time slices on the memory store.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::steps::{Action, Step, StepCursor, Stepped, Steps, StepsJob};
use iterjob::store::RunToken;
use iterjob::{
    Job, JobContext, JobError, JobState, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Serialize, Deserialize)]
struct Params {
    rows: i64,
    names: Vec<String>,
}

/// Step with items: ids 0..rows.
struct Copy(Log);

impl Step<Params> for Copy {
    type Item = i64;
    type Cursor = i64;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64> + 'static, JobError> {
        Ok(enumerator::range(0..params.rows, cursor))
    }

    async fn process(&self, _: &JobContext<Params>, id: i64) -> Result<(), JobError> {
        self.0.lock().unwrap().push(format!("copy {id}"));
        Ok(())
    }
}

/// Step with batches of another item type: names, two at a time.
struct Notify(Log);

impl Step<Params> for Notify {
    type Item = Vec<String>;
    type Cursor = usize;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<usize>,
    ) -> Result<impl Enumerator<Vec<String>, usize> + 'static, JobError> {
        Ok(enumerator::from_vec(params.names.clone(), cursor).batched(2))
    }

    async fn process(&self, _: &JobContext<Params>, names: Vec<String>) -> Result<(), JobError> {
        let mut log = self.0.lock().unwrap();
        for name in names {
            log.push(format!("notify {name}"));
        }
        Ok(())
    }

    fn count_items(&self, names: &Vec<String>) -> u64 {
        names.len() as u64
    }
}

/// A step without items.
struct Nothing;

impl Step<Params> for Nothing {
    type Item = ();
    type Cursor = usize;

    fn enumerate(
        &self,
        _: &Params,
        cursor: Option<usize>,
    ) -> Result<impl Enumerator<(), usize> + 'static, JobError> {
        Ok(enumerator::from_vec(Vec::new(), cursor))
    }

    async fn process(&self, _: &JobContext<Params>, _: ()) -> Result<(), JobError> {
        unreachable!("a step without items does no work")
    }
}

struct Mark(Log, &'static str);

impl Action<Params> for Mark {
    async fn run(&self, _: &JobContext<Params>) -> Result<(), JobError> {
        self.0.lock().unwrap().push(self.1.to_string());
        Ok(())
    }
}

struct Migrate {
    log: Log,
    /// Drop the first step (a deploy that changed the steps).
    changed: bool,
}

impl StepsJob for Migrate {
    const KIND: &'static str = "migrate";
    type Params = Params;

    fn steps(&self) -> Steps<Params> {
        let steps = Steps::new();
        let steps = if self.changed {
            steps
        } else {
            steps.step("copy_rows", Copy(self.log.clone()))
        };
        steps
            .action("rebuild_index", Mark(self.log.clone(), "index"))
            .step("nothing", Nothing)
            .step("notify", Notify(self.log.clone()))
            .action("done", Mark(self.log.clone(), "done"))
    }
}

fn stepped() -> (Stepped<Migrate>, Log) {
    let log = Log::default();
    let job = Stepped::new(Migrate {
        log: log.clone(),
        changed: false,
    });
    (job, log)
}

fn ctx(params: Params) -> JobContext<Params> {
    JobContext {
        params,
        job_id: 1,
        attempt: 0,
        run: 1,
        queue: "default".to_string(),
        run_token: RunToken(1),
        lease: Duration::from_secs(30),
        lease_renewal: Default::default(),
    }
}

fn params(rows: i64, names: usize) -> Params {
    Params {
        rows,
        names: (0..names).map(|i| format!("n{i}")).collect(),
    }
}

/// What an uninterrupted walk does.
fn expected(p: &Params) -> Vec<String> {
    let mut out: Vec<String> = (0..p.rows).map(|i| format!("copy {i}")).collect();
    out.push("index".into());
    out.extend(p.names.iter().map(|n| format!("notify {n}")));
    out.push("done".into());
    out
}

/// Walks the job as the runtime does: items in stretches, the cursor kept as JSON
/// between them, a new enumerator after each. Returns the cursors stored.
async fn walk(job: &Stepped<Migrate>, p: &Params, stretches: &[usize]) -> Vec<StepCursor> {
    let ctx = ctx(p.clone());
    let mut cursor: Option<StepCursor> = None;
    let mut stored = Vec::new();
    let limits = stretches
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None));
    for limit in limits {
        let resumed = cursor
            .as_ref()
            .map(|c| serde_json::from_value(serde_json::to_value(c).unwrap()).unwrap());
        let mut walk = pin!(job.enumerate(&ctx.params, resumed).expect("enumerate"));
        let mut taken = 0;
        while limit.is_none_or(|l| taken < l) {
            let Some(step) = walk.next().await else {
                break;
            };
            let (item, next) = step.expect("step");
            job.process(&ctx, item).await.expect("process");
            cursor = Some(next);
            taken += 1;
        }
        stored.extend(cursor.clone());
    }
    stored
}

#[tokio::test]
async fn every_interruption_point_does_each_item_of_each_step_once() {
    let p = params(5, 5);
    let want = expected(&p);
    // items: 5 rows, 1 action, 3 batches of names, 1 action
    let n = 5 + 1 + 3 + 1;
    for k in 0..=n {
        let (job, log) = stepped();
        walk(&job, &p, &[k]).await;
        assert_eq!(*log.lock().unwrap(), want, "interrupted after {k} items");
    }
    // and after every single item
    let (job, log) = stepped();
    let cursors = walk(&job, &p, &vec![1; n]).await;
    assert_eq!(*log.lock().unwrap(), want);
    let steps: Vec<&str> = cursors.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "copy_rows",
            "copy_rows",
            "copy_rows",
            "copy_rows",
            "copy_rows",
            "rebuild_index",
            "notify",
            "notify",
            "notify",
            "done",
            "done"
        ],
        "the cursor names the step it is in"
    );
    assert_eq!(
        serde_json::to_value(&cursors[0]).unwrap(),
        serde_json::json!({"step": "copy_rows", "index": 0, "at": 1})
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sizes (empty steps included), any stretches: the same effects, in order.
    #[test]
    fn any_stretches_do_each_item_once(
        rows in 0i64..12,
        names in 0usize..7,
        stretches in proptest::collection::vec(0usize..5, 0..12),
    ) {
        let p = params(rows, names);
        let (job, log) = stepped();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(walk(&job, &p, &stretches));
        prop_assert_eq!(&*log.lock().unwrap(), &expected(&p));
    }
}

#[tokio::test]
async fn a_cursor_whose_step_moved_fails_the_job_loudly() {
    let p = params(3, 2);
    let (job, _) = stepped();
    // stopped in `rebuild_index` (place 1) …
    let cursor = StepCursor {
        step: "rebuild_index".into(),
        index: 1,
        at: Some(serde_json::json!(true)),
    };
    assert!(job.enumerate(&p, Some(cursor.clone())).is_ok());
    // … then a deploy dropped the first step: that place now holds another step
    let changed = Stepped::new(Migrate {
        log: Log::default(),
        changed: true,
    });
    let Err(error) = changed.enumerate(&p, Some(cursor)) else {
        panic!("resuming in a moved step must fail");
    };
    let message = error.to_string();
    assert!(matches!(error, JobError::Fatal(_)), "{message}");
    assert!(
        message.contains("`rebuild_index` at place 1") && message.contains("step `nothing`"),
        "{message}"
    );
    // a cursor past the last step
    let far = StepCursor {
        step: "done".into(),
        index: 9,
        at: None,
    };
    let Err(error) = job.enumerate(&p, Some(far)) else {
        panic!("a cursor past the steps must fail");
    };
    assert!(error.to_string().contains("only 5 steps"), "{error}");
    // a step cursor of the wrong type is named when its step starts
    let bad = StepCursor {
        step: "copy_rows".into(),
        index: 0,
        at: Some(serde_json::json!("not a number")),
    };
    let mut walk = pin!(job.enumerate(&p, Some(bad)).expect("checked lazily"));
    let first = walk.next().await.expect("an error").unwrap_err();
    assert!(first.to_string().contains("step `copy_rows`"), "{first}");
}

#[test]
#[should_panic(expected = "two steps are named `a`")]
fn duplicate_step_names_are_refused_at_registration() {
    struct Twice;
    impl StepsJob for Twice {
        const KIND: &'static str = "twice";
        type Params = Params;
        fn steps(&self) -> Steps<Params> {
            Steps::new()
                .action("a", Mark(Log::default(), "x"))
                .action("a", Mark(Log::default(), "y"))
        }
    }
    let _ = Stepped::new(Twice);
}

/// Copy steps that take a while, so the real worker's time slices cut the job
/// into many runs, several inside a step and one across each boundary.
struct Slow(Log);

impl Step<Params> for Slow {
    type Item = i64;
    type Cursor = i64;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64> + 'static, JobError> {
        Ok(enumerator::range(0..params.rows, cursor))
    }

    async fn process(&self, _: &JobContext<Params>, id: i64) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.0.lock().unwrap().push(format!("copy {id}"));
        Ok(())
    }
}

struct SlowMigrate(Log);

impl StepsJob for SlowMigrate {
    const KIND: &'static str = "slow_migrate";
    type Params = Params;

    fn steps(&self) -> Steps<Params> {
        Steps::new()
            .step("copy_rows", Slow(self.0.clone()))
            .action("rebuild_index", Mark(self.0.clone(), "index"))
            .step("nothing", Nothing)
            .step("notify", Notify(self.0.clone()))
            .action("done", Mark(self.0.clone(), "done"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_walks_the_steps_through_time_slices() {
    let store = Arc::new(MemoryStore::new());
    let log = Log::default();
    let p = params(60, 9);
    let id = store
        .job_insert(&NewJob::new(
            "slow_migrate",
            serde_json::to_value(&p).unwrap(),
        ))
        .await
        .unwrap();
    let mut config = WorkerConfig::default();
    config.max_runtime = Duration::from_millis(40);
    config.poll_interval = Duration::from_millis(10);
    let registry = Registry::new().with(Stepped::new(SlowMigrate(log.clone())));
    let worker = Worker::new(store.clone(), registry, config).unwrap();
    let report = worker.run_until_idle().await.unwrap();
    let job = store.job_get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed, "{:?}", job.last_error);
    assert!(job.runs >= 3, "time slices cut the job: {} runs", job.runs);
    assert!(report.runs >= 3);
    assert_eq!(
        *log.lock().unwrap(),
        expected(&p),
        "each item once, in order"
    );
    // progress counts records: 60 rows, 1 action, 9 names, 1 action
    assert_eq!(job.items_done, 71);
    let cursor: StepCursor = serde_json::from_value(job.cursor.unwrap()).unwrap();
    assert_eq!((cursor.step.as_str(), cursor.index), ("done", 4));
}

/// `StepCursor::of` finds the step in a stored cursor (for `show` and the
/// dashboard), and nothing in another kind's cursor.
#[test]
fn a_stored_cursor_tells_its_step() {
    let stored = serde_json::json!({"step": "build_index", "index": 1, "at": null});
    let step = StepCursor::of(&stored).expect("a step cursor");
    assert_eq!((step.step.as_str(), step.index), ("build_index", 1));
    assert!(StepCursor::of(&serde_json::json!([42])).is_none());
    assert!(StepCursor::of(&serde_json::json!({"step": "x"})).is_none());
    assert!(StepCursor::of(&serde_json::json!({"step": 3, "index": 1})).is_none());
}
