//! With iterjob's `opentelemetry` feature, a job's runs join the trace of whoever
//! enqueued it: the enqueuer's span context is stored with the job (a W3C
//! `traceparent`), and each run's span is its child, on whichever worker and however
//! much later it runs. Checked with OpenTelemetry's in-memory exporter.
//!
//! How a service wires it: install a `tracing-opentelemetry` layer (with the
//! exporter of your choice) in your subscriber; enqueue inside your request's span;
//! nothing else.

use std::sync::Arc;

use iterjob::enumerator::{self, Enumerator};
use iterjob::{
    Job, JobContext, JobError, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig,
};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

/// Logs once per item, inside its run.
struct Export;

impl Job for Export {
    const KIND: &'static str = "export";
    type Params = i64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(&self, n: &i64, c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..*n, c))
    }

    async fn process(&self, _ctx: &JobContext<i64>, row: i64) -> Result<(), JobError> {
        tracing::info!(row, "exported a row");
        Ok(())
    }
}

#[tokio::test]
async fn runs_are_children_of_the_span_that_enqueued_the_job() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("iterjob-test")));
    // a current-thread runtime: the worker's tasks run on this thread, under it
    let _guard = tracing::subscriber::set_default(subscriber);

    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // enqueued while handling a request: its span is the job's parent
    let request = tracing::info_span!("POST /exports");
    let job = request.in_scope(|| NewJob::new("export", serde_json::json!(3)));
    assert!(
        job.trace_context.is_some(),
        "the request's trace is recorded"
    );
    let traced = store.job_insert(&job).await.unwrap();
    drop(request);
    // enqueued outside any trace
    let untraced = store
        .job_insert(&NewJob::new("export", serde_json::json!(2)))
        .await
        .unwrap();
    assert_eq!(
        store
            .job_get(untraced)
            .await
            .unwrap()
            .unwrap()
            .trace_context,
        None
    );

    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(Export),
        WorkerConfig::default(),
    )
    .unwrap();
    worker.run_until_idle().await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let request = spans
        .iter()
        .find(|s| s.name == "POST /exports")
        .expect("the request's span");
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(runs.len(), 2, "{spans:#?}");
    let job_of = |span: &&opentelemetry_sdk::trace::SpanData| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "job")
            .map(|kv| kv.value.to_string())
    };
    let traced_run = runs
        .iter()
        .find(|s| job_of(s).as_deref() == Some(traced.to_string().as_str()))
        .expect("the traced job's run");
    assert_eq!(
        traced_run.span_context.trace_id(),
        request.span_context.trace_id(),
        "the run is in the request's trace"
    );
    assert_eq!(traced_run.parent_span_id, request.span_context.span_id());
    let untraced_run = runs
        .iter()
        .find(|s| job_of(s).as_deref() == Some(untraced.to_string().as_str()))
        .expect("the untraced job's run");
    assert_ne!(
        untraced_run.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(
        untraced_run.parent_span_id,
        SpanId::INVALID,
        "a trace of its own"
    );
    // the job's own events are recorded on its run's span
    assert_eq!(
        traced_run
            .events
            .iter()
            .filter(|e| e.name == "exported a row")
            .count(),
        3
    );
}
