//! In-memory enumerators: integer ranges and vectors.

use std::ops::Range;

use futures::stream;

use super::{Enumerator, Step};

/// Enumerates the integers of `range`, resumably.
///
/// The cursor yielded with `i` is `i + 1`, the next integer to yield. The enumerator
/// walks `cursor.unwrap_or(start)..end`: a cursor before `start` is clamped to
/// `start`, and a cursor at or after `end` yields nothing. Because the cursor is the
/// next integer, the remaining work of a checkpointed run is exactly
/// `cursor..end`, which can be split into sub-ranges for parallel iteration.
///
/// The stream is a plain iterator under the hood: it never returns `Pending`, and it
/// costs a few nanoseconds per item.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::range;
///
/// block_on(async {
///     let steps: Vec<_> = range(0..5, Some(2)).map(|s| s.unwrap()).collect().await;
///     assert_eq!(steps, vec![(2, 3), (3, 4), (4, 5)]);
///
///     // a cursor at the end (or past it) yields nothing
///     assert_eq!(range(0..5, Some(5)).count().await, 0);
/// });
/// ```
pub fn range(range: Range<i64>, cursor: Option<i64>) -> impl Enumerator<i64, i64> {
    let start = cursor.map_or(range.start, |c| c.max(range.start));
    // `i < end <= i64::MAX`, so `i + 1` never overflows.
    stream::iter((start..range.end).map(|i| -> Step<i64, i64> { Ok((i, i + 1)) }))
}

/// Enumerates the items of a vector, resumably.
///
/// The cursor yielded with the item at index `i` is `i + 1`, the index of the next
/// item. A cursor at or past the end yields nothing. Resuming assumes the vector is
/// the same (same items in the same order) as in the run that produced the cursor.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::from_vec;
///
/// block_on(async {
///     let items = vec!["a", "b", "c"];
///     let steps: Vec<_> = from_vec(items, Some(1)).map(|s| s.unwrap()).collect().await;
///     assert_eq!(steps, vec![("b", 2), ("c", 3)]);
/// });
/// ```
pub fn from_vec<T: Send + 'static>(
    items: Vec<T>,
    cursor: Option<usize>,
) -> impl Enumerator<T, usize> {
    let skip = cursor.unwrap_or(0);
    stream::iter(
        items
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(i, item)| -> Step<T, usize> { Ok((item, i + 1)) }),
    )
}
