//! `peers-worker`: the iterjob CLI with one PostgreSQL-backed job kind whose items
//! take `PEERS_ITEM_MS` milliseconds each (default 10), for the SIGTERM and SIGKILL
//! measurements of `peers`.
//!
//! `peers-worker --database-url postgres://… worker --concurrency 1`

use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError};

struct SlowItems {
    item: Duration,
}

impl Job for SlowItems {
    const KIND: &'static str = "slow_items";
    type Params = i64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        n: &i64,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..*n, cursor))
    }

    async fn process(&self, _ctx: &JobContext<i64>, _item: i64) -> Result<(), JobError> {
        tokio::time::sleep(self.item).await;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let ms = std::env::var("PEERS_ITEM_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    iterjob_cli::App::new("peers-worker")
        .register(SlowItems {
            item: Duration::from_millis(ms),
        })
        .run()
}
