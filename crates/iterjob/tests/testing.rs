//! The test harness offered to users (`iterjob::testing`) catches what it promises
//! to: a cursor that skips or repeats an item on resume fails it, with a message
//! naming where; a correct enumerator passes at every cursor position.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use iterjob::enumerator::{self, Enumerator};
use iterjob::testing::{assert_resumes_exactly, run_to_end};
use iterjob::{Job, JobContext, JobError, JobState};

/// Words with ties in their sort key, walked by (length, word): correct.
struct ByLength;

const WORDS: [&str; 7] = ["fig", "kiwi", "pear", "plum", "apple", "mango", "banana"];

impl Job for ByLength {
    const KIND: &'static str = "by_length";
    type Params = ();
    type Cursor = (usize, String);
    type Item = String;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<(usize, String)>,
    ) -> Result<impl Enumerator<String, (usize, String)>, JobError> {
        let mut words: Vec<(usize, String)> =
            WORDS.iter().map(|w| (w.len(), (*w).to_string())).collect();
        words.sort();
        let rest: Vec<_> = words
            .into_iter()
            .filter(|key| cursor.as_ref().is_none_or(|c| key > c))
            .map(|key| Ok((key.1.clone(), key)))
            .collect();
        Ok(futures::stream::iter(rest))
    }

    async fn process(&self, _: &JobContext<()>, _word: String) -> Result<(), JobError> {
        Ok(())
    }
}

/// Walked by length alone: words of the same length as the cursor's are skipped on
/// resume (the classic keyset bug with ties).
struct ByLengthOnly;

impl Job for ByLengthOnly {
    const KIND: &'static str = "by_length_only";
    type Params = ();
    type Cursor = usize;
    type Item = String;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<usize>,
    ) -> Result<impl Enumerator<String, usize>, JobError> {
        let mut words: Vec<&str> = WORDS.to_vec();
        words.sort_by_key(|w| (w.len(), *w));
        let rest: Vec<_> = words
            .into_iter()
            .filter(|w| cursor.is_none_or(|c| w.len() > c))
            .map(|w| Ok((w.to_string(), w.len())))
            .collect();
        Ok(futures::stream::iter(rest))
    }

    async fn process(&self, _: &JobContext<()>, _word: String) -> Result<(), JobError> {
        Ok(())
    }
}

/// Resumes *at* its cursor instead of after it: repeats an item.
struct Inclusive;

impl Job for Inclusive {
    const KIND: &'static str = "inclusive";
    type Params = i64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        n: &i64,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        // range(…, Some(c)) starts at c; this cursor names the item just done
        let start = cursor.unwrap_or(0);
        Ok(futures::stream::iter((start..*n).map(|i| Ok((i, i)))))
    }

    async fn process(&self, _: &JobContext<i64>, _i: i64) -> Result<(), JobError> {
        Ok(())
    }
}

async fn failure_of(check: impl std::future::Future<Output = ()>) -> String {
    match std::panic::AssertUnwindSafe(check).catch_unwind().await {
        Ok(()) => panic!("the harness passed a broken enumerator"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[tokio::test]
async fn a_correct_enumerator_passes_at_every_cursor_position() {
    assert_resumes_exactly(ByLength, &()).await;
    let walk = run_to_end(ByLength, &()).await.unwrap();
    assert_eq!(
        walk.items,
        ["fig", "kiwi", "pear", "plum", "apple", "mango", "banana"]
    );
    assert_eq!(walk.job.state, JobState::Completed);
    assert_eq!(walk.job.items_done, 7);
    // the library's own range enumerator, over a longer walk (a spread of points)
    struct Range;
    impl Job for Range {
        const KIND: &'static str = "range";
        type Params = i64;
        type Cursor = i64;
        type Item = i64;
        fn enumerate(
            &self,
            n: &i64,
            c: Option<i64>,
        ) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..*n, c))
        }
        async fn process(&self, _: &JobContext<i64>, _i: i64) -> Result<(), JobError> {
            Ok(())
        }
    }
    assert_resumes_exactly(Range, &1000).await;
}

#[tokio::test]
async fn a_cursor_that_skips_ties_fails_naming_where() {
    let message = failure_of(assert_resumes_exactly(ByLengthOnly, &())).await;
    assert!(
        message.contains("job kind `by_length_only`")
            && message.contains("did not process every item exactly once"),
        "{message}"
    );
    assert!(
        message.contains("interrupted after 2 items"),
        "the first bad point: {message}"
    );
}

#[tokio::test]
async fn a_cursor_that_repeats_an_item_fails() {
    let message = failure_of(assert_resumes_exactly(Inclusive, &10)).await;
    assert!(message.contains("job kind `inclusive`"), "{message}");
    assert!(message.contains("11 items instead of 10"), "{message}");
}

#[tokio::test]
async fn run_to_end_returns_a_failed_job_with_its_error() {
    struct Picky(Arc<AtomicU64>);
    impl Job for Picky {
        const KIND: &'static str = "picky";
        type Params = i64;
        type Cursor = i64;
        type Item = i64;
        fn enumerate(
            &self,
            n: &i64,
            c: Option<i64>,
        ) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..*n, c))
        }
        async fn process(&self, _: &JobContext<i64>, i: i64) -> Result<(), JobError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if i == 3 {
                return Err(JobError::fatal("item 3 is malformed"));
            }
            Ok(())
        }
    }
    let calls = Arc::new(AtomicU64::new(0));
    let walk = run_to_end(Picky(Arc::clone(&calls)), &10).await.unwrap();
    assert_eq!(walk.items, vec![0, 1, 2], "processed items only");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(walk.job.state, JobState::Failed);
    assert!(
        walk.job
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("item 3 is malformed")),
        "{:?}",
        walk.job.last_error
    );
}
