//! [`concat()`]: several enumerators one after another.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};

use super::{BoxEnumerator, Enumerator, Step};

/// The cursor of a [`concat()`] enumerator: which part, and where inside it.
///
/// `inner` is the part's own cursor, `None` for the start of the part. A `part` at or
/// past the number of parts means everything is done.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConcatCursor<C> {
    /// Index of the current part in the `parts` given to [`concat()`].
    pub part: usize,
    /// The cursor within that part; `None` for its start.
    pub inner: Option<C>,
}

/// Enumerates several parts one after another, resumably.
///
/// Each part is a function that builds its enumerator from an optional cursor (all
/// parts share the item and cursor types; box them with
/// [`EnumeratorExt::boxed_enumerator`](super::EnumeratorExt::boxed_enumerator)). The
/// cursor yielded with an item is `ConcatCursor { part, inner: Some(c) }` where `c` is
/// the part's own cursor. When a part is exhausted the next one is built from `None`;
/// a part that yields nothing is skipped. Parts are built lazily, one at a time.
///
/// Resuming assumes the list of parts is the same as in the run that produced the
/// cursor: appending parts is fine, inserting or removing earlier ones is not.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{BoxEnumerator, ConcatCursor, EnumeratorExt, concat, from_vec};
///
/// type Part = Box<dyn Fn(Option<usize>) -> BoxEnumerator<&'static str, usize> + Send + Sync>;
/// let parts = || -> Vec<Part> {
///     vec![
///         Box::new(|c| from_vec(vec!["a", "b"], c).boxed_enumerator()),
///         Box::new(|c| from_vec(vec!["c"], c).boxed_enumerator()),
///     ]
/// };
/// block_on(async {
///     let all: Vec<_> = concat(parts(), None).map(|s| s.unwrap()).collect().await;
///     assert_eq!(all[1], ("b", ConcatCursor { part: 0, inner: Some(2) }));
///     assert_eq!(all[2], ("c", ConcatCursor { part: 1, inner: Some(1) }));
///
///     // resume after "b": the rest of part 0 is empty, then part 1
///     let cursor = ConcatCursor { part: 0, inner: Some(2) };
///     let rest: Vec<_> = concat(parts(), Some(cursor)).map(|s| s.unwrap().0).collect().await;
///     assert_eq!(rest, vec!["c"]);
/// });
/// ```
#[allow(clippy::type_complexity)]
pub fn concat<I, C>(
    parts: Vec<Box<dyn Fn(Option<C>) -> BoxEnumerator<I, C> + Send + Sync>>,
    cursor: Option<ConcatCursor<C>>,
) -> impl Enumerator<I, ConcatCursor<C>>
where
    I: Send + 'static,
    C: Send + 'static,
{
    let (part, inner) = match cursor {
        Some(ConcatCursor { part, inner }) => (part, inner),
        None => (0, None),
    };
    Concat {
        parts,
        part,
        start: inner,
        current: None,
    }
}

/// A part of a [`concat()`]: builds its enumerator from a cursor.
type Part<I, C> = Box<dyn Fn(Option<C>) -> BoxEnumerator<I, C> + Send + Sync>;

/// The stream behind [`concat()`].
struct Concat<I, C> {
    parts: Vec<Part<I, C>>,
    /// Index of the current part.
    part: usize,
    /// The cursor to build the current part from, until it is built.
    start: Option<C>,
    /// The current part's enumerator, once built.
    current: Option<BoxEnumerator<I, C>>,
}

// Nothing is pinned structurally: the parts' enumerators are boxed.
impl<I, C> Unpin for Concat<I, C> {}

impl<I, C> Stream for Concat<I, C> {
    type Item = Step<I, ConcatCursor<C>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.current.is_none() {
                let Some(make) = this.parts.get(this.part) else {
                    return Poll::Ready(None);
                };
                this.current = Some(make(this.start.take()));
            }
            let current = this
                .current
                .as_mut()
                .expect("the current part was just built");
            match current.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok((item, inner)))) => {
                    let cursor = ConcatCursor {
                        part: this.part,
                        inner: Some(inner),
                    };
                    return Poll::Ready(Some(Ok((item, cursor))));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => {
                    this.current = None;
                    this.part += 1;
                }
            }
        }
    }
}
