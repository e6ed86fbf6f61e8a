//! Testing your own job kind with `iterjob::testing`: the kind here pages through
//! an API by an `after` cursor, the way many sync jobs do. The harness runs it on
//! the real runtime and checks that stopping it after any number of items and
//! resuming processes every item exactly once, in order.
//!
//! ```text
//! cargo test -p iterjob-examples --test resume
//! ```

use iterjob::enumerator::Enumerator;
use iterjob::testing::{assert_resumes_exactly, run_to_end};
use iterjob::{Job, JobContext, JobError, JobState};
use serde::{Deserialize, Serialize};

/// A page of customers from the "API": ids after `after`, at most `limit`.
fn page(after: Option<u32>, limit: usize) -> Vec<u32> {
    // ids with gaps, as real ids have
    (1..=90u32)
        .filter(|id| id % 7 != 0)
        .filter(|id| after.is_none_or(|a| *id > a))
        .take(limit)
        .collect()
}

/// Syncs every customer, page by page.
struct SyncCustomers;

#[derive(Serialize, Deserialize)]
struct Params {
    page_size: usize,
}

impl Job for SyncCustomers {
    const KIND: &'static str = "sync_customers";
    type Params = Params;
    /// The last customer id done: the next page starts after it.
    type Cursor = u32;
    type Item = u32;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<u32>,
    ) -> Result<impl Enumerator<u32, u32>, JobError> {
        let size = params.page_size;
        // fetch a page after the cursor; yield its ids, each with itself as cursor
        let pages = futures::stream::unfold(cursor, move |after| async move {
            let ids = page(after, size);
            let last = *ids.last()?;
            Some((
                futures::stream::iter(ids.into_iter().map(|id| Ok((id, id)))),
                Some(last),
            ))
        });
        Ok(futures::StreamExt::flatten(pages))
    }

    async fn process(&self, _ctx: &JobContext<Params>, _customer: u32) -> Result<(), JobError> {
        Ok(()) // upsert the customer
    }
}

#[tokio::test]
async fn sync_customers_walks_every_customer_once() {
    let walk = run_to_end(SyncCustomers, &Params { page_size: 10 })
        .await
        .unwrap();
    assert_eq!(walk.job.state, JobState::Completed);
    assert_eq!(
        walk.items,
        page(None, usize::MAX),
        "every customer, in order"
    );
}

#[tokio::test]
async fn sync_customers_resumes_exactly_after_any_number_of_items() {
    // 78 customers: interrupted after 0, 1, … 78 items, each resumed to the end
    assert_resumes_exactly(SyncCustomers, &Params { page_size: 10 }).await;
}
