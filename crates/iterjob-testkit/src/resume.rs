//! Resume exactness: walk an enumerator with interruptions and compare with one
//! uninterrupted walk.

use futures::StreamExt;
use iterjob::enumerator::Enumerator;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Walks a fresh enumerator to the end and returns every item.
///
/// # Panics
/// If the enumerator yields an error.
pub async fn collect_all<I, C, E>(enumerator: E) -> Vec<I>
where
    E: Enumerator<I, C>,
{
    let mut out = Vec::new();
    let mut enumerator = std::pin::pin!(enumerator);
    while let Some(step) = enumerator.next().await {
        let (item, _cursor) = step.unwrap_or_else(|e| panic!("enumerator failed: {e}"));
        out.push(item);
    }
    out
}

/// Round-trips a cursor through JSON, as a store does between runs.
///
/// # Panics
/// If the cursor does not serialize or does not deserialize back.
pub fn roundtrip<C: Serialize + DeserializeOwned>(cursor: &C) -> C {
    let json = serde_json::to_value(cursor).expect("cursor serializes to JSON");
    serde_json::from_value(json).expect("cursor deserializes from its own JSON")
}

/// Walks the collection in stretches: builds the enumerator from the last cursor
/// (round-tripped through JSON, as a store would keep it), takes `stretches[i]`
/// items, drops the enumerator, and resumes; after the last stretch it walks to the
/// end. Returns every item in the order seen, which for a correct enumerator equals
/// [`collect_all`] of a fresh one, whatever the stretches.
///
/// # Panics
/// If the enumerator yields an error or a cursor that does not round-trip through JSON.
pub async fn walk_with_interruptions<I, C, E, F>(make: F, stretches: &[usize]) -> Vec<I>
where
    F: Fn(Option<C>) -> E,
    E: Enumerator<I, C>,
    C: Serialize + DeserializeOwned,
{
    let mut out = Vec::new();
    let mut cursor: Option<C> = None;
    let limits = stretches
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None));
    for limit in limits {
        let enumerator = make(cursor.as_ref().map(roundtrip));
        let mut enumerator = std::pin::pin!(enumerator);
        let mut taken = 0usize;
        while limit.is_none_or(|l| taken < l) {
            let Some(step) = enumerator.next().await else {
                break;
            };
            let (item, next) = step.unwrap_or_else(|e| panic!("enumerator failed: {e}"));
            out.push(item);
            cursor = Some(next);
            taken += 1;
        }
    }
    out
}

/// Asserts that for every interruption point `k` in `0..=n` (n = the collection's
/// length), taking `k` items, persisting the cursor and resuming yields every item
/// exactly once, in order; and that the stretches given (for property tests) do too.
///
/// # Panics
/// On the first interruption point that skips or repeats an item.
pub async fn assert_resume_exact<I, C, E, F>(make: F, stretches: &[usize])
where
    F: Fn(Option<C>) -> E,
    E: Enumerator<I, C>,
    C: Serialize + DeserializeOwned,
    I: PartialEq + std::fmt::Debug,
{
    let full = collect_all(make(None)).await;
    for k in 0..=full.len() {
        let walked = walk_with_interruptions(&make, &[k]).await;
        assert_eq!(
            walked, full,
            "interrupting after {k} items and resuming did not yield every item exactly once"
        );
    }
    let walked = walk_with_interruptions(&make, stretches).await;
    assert_eq!(
        walked, full,
        "interrupting after each of the stretches {stretches:?} did not yield every item exactly once"
    );
}
