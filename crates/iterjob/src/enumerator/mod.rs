//! Enumerators: the collection half of a job.
//!
//! An enumerator is an async [`Stream`] of `Result<(item, cursor), JobError>`, built
//! from an optional cursor. The cursor yielded with an item points **just past** that
//! item: "everything up to and including this item is done". Resuming from that cursor
//! yields the next item, so a job interrupted between any two items resumes with
//! nothing skipped and nothing repeated.
//!
//! Every enumerator in the box has an *item-granular* cursor (an index, a key, a byte
//! offset), never a batch index, so changing a batch size between runs can neither skip
//! nor repeat an item.
//!
//! | enumerator | cursor | bounded range |
//! |---|---|---|
//! | [`range`] over integers | next integer | `start..end` |
//! | [`from_vec`] | next index | — |
//! | [`lines`] / [`csv_records`] over a file | [`FileCursor`]: byte offset of the next record, checked against the file's [`FileFingerprint`] on resume | byte range |
//! | [`nested`] | outer and inner cursor | — |
//! | [`concat()`] | part index and the part's cursor | — |
//! | keyset over SQL (`iterjob_sqlite::Keyset`) | key of the last row | key range |
//!
//! # Writing your own
//!
//! Any `Stream<Item = Result<(Item, Cursor), JobError>> + Send` is an enumerator. Build it
//! from the cursor you are given, and yield with each item the cursor that resumes just
//! after it. [`futures::stream::try_unfold`] makes short work of most:
//!
//! ```
//! use futures::{stream, StreamExt};
//! use iterjob::enumerator::{BoxEnumerator, EnumeratorExt};
//! use iterjob::JobError;
//!
//! /// Pages of an API, resumable by page token.
//! fn pages(cursor: Option<u32>) -> BoxEnumerator<Vec<u32>, u32> {
//!     stream::try_unfold(cursor.unwrap_or(0), |page| async move {
//!         if page == 3 {
//!             return Ok::<_, JobError>(None); // no more pages
//!         }
//!         let items = vec![page * 10, page * 10 + 1]; // fetch the page here
//!         Ok(Some(((items, page + 1), page + 1)))
//!     })
//!     .boxed_enumerator()
//! }
//! # futures::executor::block_on(async {
//! let all: Vec<_> = pages(Some(1)).map(|r| r.unwrap().0).collect().await;
//! assert_eq!(all, vec![vec![10, 11], vec![20, 21]]);
//! # });
//! ```

mod batched;
mod concat;
mod file;
mod nested;
mod range;

pub use batched::Batched;
pub use concat::{ConcatCursor, concat};
pub use file::{FileCursor, FileFingerprint, FileRange, csv_deserialize, csv_records, lines};
pub use nested::{NestedCursor, nested};
pub use range::{from_vec, range};

use std::pin::Pin;

use futures::Stream;

use crate::error::JobError;

/// One step of an enumerator: an item and the cursor just past it.
pub type Step<I, C> = Result<(I, C), JobError>;

/// An enumerator: a stream of items, each with the cursor just past it.
///
/// Implemented for every `Stream<Item = Result<(I, C), JobError>> + Send`.
pub trait Enumerator<I, C>: Stream<Item = Step<I, C>> + Send {}

impl<S, I, C> Enumerator<I, C> for S where S: Stream<Item = Step<I, C>> + Send {}

/// A boxed enumerator, for jobs whose enumerator type is long or chosen at run time.
pub type BoxEnumerator<I, C> = Pin<Box<dyn Stream<Item = Step<I, C>> + Send + 'static>>;

/// Combinators on enumerators.
pub trait EnumeratorExt<I, C>: Enumerator<I, C> + Sized {
    /// Groups items into batches of up to `size`; a batch's cursor is its last
    /// item's cursor, so resuming never splits or repeats a batch's items even when
    /// the size changes between runs. The last batch may be shorter.
    ///
    /// # Panics
    /// If `size` is 0.
    fn batched(self, size: usize) -> Batched<Self, I, C> {
        Batched::new(self, size)
    }

    /// Boxes the enumerator.
    fn boxed_enumerator(self) -> BoxEnumerator<I, C>
    where
        Self: 'static,
    {
        Box::pin(self)
    }
}

impl<S, I, C> EnumeratorExt<I, C> for S where S: Enumerator<I, C> + Sized {}
