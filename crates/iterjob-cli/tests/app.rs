//! A user's own `App`, driven in-process: `enqueue KIND` without `--params` takes
//! the kind's defaults when its parameters have them.

use std::process::ExitCode;

use clap::Parser;
use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, Store};
use iterjob_cli::{App, Cli};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
struct Limits {
    up_to: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { up_to: 10 }
    }
}

struct Count;

impl Job for Count {
    const KIND: &'static str = "count";
    type Params = Limits;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &Limits,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.up_to, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Limits>, _n: i64) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_without_params_takes_the_kinds_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let cli =
        Cli::try_parse_from(["myapp", "--database-url", &url, "enqueue", "count"]).expect("parse");
    let code = App::new("myapp").register(Count).run_cli(cli).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let store = iterjob_sqlite::SqliteStore::connect(&url)
        .await
        .expect("open");
    let job = store.job_get(1).await.expect("get").expect("enqueued");
    assert_eq!(job.kind, "count");
    let params: Limits = serde_json::from_value(job.params).expect("params");
    assert_eq!(params.up_to, 10, "the defaults");
}
