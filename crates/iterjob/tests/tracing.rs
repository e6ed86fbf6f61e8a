//! Every event of a run carries the run's span (job id, kind, attempt, run,
//! partition, queue), so a job's own logs inside `process` are attributed; the run's
//! end is logged at a level that fits it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use iterjob::enumerator::{self, Enumerator};
use iterjob::{
    Job, JobContext, JobError, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig,
};

/// A writer into a shared buffer, for the subscriber.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
}

struct Chatty;

impl Job for Chatty {
    const KIND: &'static str = "chatty";
    type Params = i64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(&self, n: &i64, c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..*n, c))
    }

    async fn process(&self, _ctx: &JobContext<i64>, item: i64) -> Result<(), JobError> {
        tracing::info!(item, "inside process");
        if item == 2 {
            return Err(JobError::fatal("item 2 is malformed"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_runs_events_carry_its_job_and_its_end_has_a_fitting_level() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    // a current-thread runtime: the worker's tasks run on this thread, under it
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Arc::new(MemoryStore::new());
    let ok = store
        .job_insert(&NewJob::new("chatty", serde_json::json!(2)))
        .await
        .unwrap();
    let bad = store
        .job_insert(&NewJob::new("chatty", serde_json::json!(5)).queue("slow"))
        .await
        .unwrap();
    let mut config = WorkerConfig::default();
    config.queues = vec!["default".into(), "slow".into()];
    let worker = Worker::new(store, Registry::new().with(Chatty), config).unwrap();
    worker.run_until_idle().await.unwrap();

    let lines = buffer.lines();
    let inside: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "inside process")
        .collect();
    assert_eq!(inside.len(), 2 + 3, "{lines:#?}");
    for line in &inside {
        let span = &line["span"];
        assert_eq!(span["name"], "run", "{line}");
        assert_eq!(span["kind"], "chatty", "{line}");
        assert_eq!(span["attempt"], 1, "{line}");
        assert_eq!(span["run"], 1, "{line}");
        let job = span["job"].as_i64().expect("job id");
        let queue = if job == ok { "default" } else { "slow" };
        assert_eq!(span["queue"], queue, "{line}");
    }
    let ended = |message: &str, job: i64| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["span"]["job"] == job)
            .unwrap_or_else(|| panic!("no `{message}` for job {job}: {lines:#?}"))
    };
    assert_eq!(ended("job completed", ok)["level"], "INFO");
    assert_eq!(ended("job completed", ok)["items"], 2);
    assert_eq!(ended("job failed for good", bad)["level"], "ERROR");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "claimed" && l["level"] == "DEBUG"),
        "{lines:#?}"
    );
}

/// A partitionable kind that cannot count its items.
struct Uncounted;

impl Job for Uncounted {
    const KIND: &'static str = "uncounted";
    const PARTITIONABLE: bool = true;
    type Params = (i64, i64);
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &(i64, i64),
        c: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(p.0..p.1, c))
    }

    async fn process(&self, _ctx: &JobContext<(i64, i64)>, _item: i64) -> Result<(), JobError> {
        Ok(())
    }

    async fn partition(&self, p: &(i64, i64), n: u32) -> Result<Vec<(i64, i64)>, JobError> {
        let step = (p.1 - p.0) / i64::from(n);
        Ok((0..i64::from(n))
            .map(|i| {
                (
                    p.0 + i * step,
                    if i + 1 == i64::from(n) {
                        p.1
                    } else {
                        p.0 + (i + 1) * step
                    },
                )
            })
            .collect())
    }
}

#[tokio::test]
async fn a_partitioned_kind_without_a_total_is_named_once_in_the_log() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Arc::new(MemoryStore::new());
    for _ in 0..2 {
        store
            .job_insert(&NewJob::new("uncounted", serde_json::json!([0, 40])).partitions(4))
            .await
            .unwrap();
    }
    let registry = Registry::new().with(Uncounted);
    registry.check_partitions("uncounted", 4).unwrap();
    let worker = Worker::new(store, registry, WorkerConfig::default()).unwrap();
    worker.run_until_idle().await.unwrap();

    let said: Vec<_> = buffer
        .lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("job kind `uncounted` has no `Job::total`"))
        })
        .collect();
    assert_eq!(said.len(), 1, "once for 8 partitions: {said:#?}");
    assert_eq!(said[0]["level"], "WARN");
}
