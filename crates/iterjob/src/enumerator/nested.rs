//! [`nested`]: an inner collection for each item of an outer one.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};

use super::{Enumerator, Step};

/// The cursor of a [`nested`] enumerator.
///
/// `outer` is the outer cursor positioned **at** the current outer item: the cursor
/// the outer enumerator yielded with the item *before* it (`None` while in the first
/// outer item). `inner` is the inner cursor within the current outer item (`None` for
/// its start).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NestedCursor<OC, IC> {
    /// Outer cursor from before the current outer item; `None` for the first one.
    pub outer: Option<OC>,
    /// Inner cursor within the current outer item; `None` for its start.
    pub inner: Option<IC>,
}

/// Enumerates, for each item of an outer enumerator, an inner enumerator built from
/// it, resumably: for example the orders of each customer, or the lines of each file.
///
/// Yields `(outer_item, inner_item)` pairs, cloning the outer item for each of its
/// inner items (wrap it in an `Arc` if cloning is expensive), with a
/// [`NestedCursor`].
///
/// * `outer` builds the outer enumerator from an outer cursor. It is called once,
///   when `nested` is called.
/// * `inner` builds the inner enumerator of an outer item from an inner cursor. It is
///   called once per outer item, when the walk reaches it.
///
/// Resuming from `NestedCursor { outer, inner }` builds the outer enumerator from
/// `outer`, takes its first item and builds that item's inner enumerator from `inner`;
/// when an inner enumerator is exhausted the walk advances to the next outer item, and
/// outer items whose inner enumerator is empty are skipped. Resuming right after the
/// last inner item of an outer item finds that inner enumerator empty and moves on,
/// so nothing is repeated or skipped. Resuming assumes the outer item found at the
/// outer cursor is the same one as in the run that produced the cursor.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{NestedCursor, from_vec, nested};
///
/// let shelves = vec![vec!["a", "b"], vec![], vec!["c"]];
/// let walk = |cursor| {
///     nested(
///         |c| from_vec(shelves.clone(), c),
///         |shelf: &Vec<&'static str>, c| from_vec(shelf.clone(), c),
///         cursor,
///     )
/// };
/// block_on(async {
///     let all: Vec<_> = walk(None).map(|s| s.unwrap()).collect().await;
///     assert_eq!(all[1], ((vec!["a", "b"], "b"), NestedCursor { outer: None, inner: Some(2) }));
///     assert_eq!(all[2], ((vec!["c"], "c"), NestedCursor { outer: Some(2), inner: Some(1) }));
///
///     // resume after "b": the empty shelf is skipped
///     let rest: Vec<_> = walk(Some(all[1].1.clone())).map(|s| s.unwrap().0.1).collect().await;
///     assert_eq!(rest, vec!["c"]);
/// });
/// ```
pub fn nested<OI, OC, OE, II, IC, IE>(
    outer: impl FnOnce(Option<OC>) -> OE,
    inner: impl Fn(&OI, Option<IC>) -> IE + Send,
    cursor: Option<NestedCursor<OC, IC>>,
) -> impl Enumerator<(OI, II), NestedCursor<OC, IC>>
where
    OE: Enumerator<OI, OC>,
    IE: Enumerator<II, IC>,
    OI: Clone + Send,
    OC: Clone + Send,
    II: Send,
    IC: Send,
{
    let (outer_cursor, inner_cursor) = match cursor {
        Some(NestedCursor { outer, inner }) => (outer, inner),
        None => (None, None),
    };
    Nested {
        outer_stream: Box::pin(outer(outer_cursor.clone())),
        outer_done: false,
        outer_before: outer_cursor,
        inner_start: inner_cursor,
        make_inner: inner,
        current: None,
    }
}

/// The current outer item: the item, the outer cursor just past it, and its inner
/// enumerator.
type Current<OI, OC, IE> = (OI, OC, Pin<Box<IE>>);

/// The stream behind [`nested`].
struct Nested<OI, OC, OE, IC, IE, FI> {
    outer_stream: Pin<Box<OE>>,
    outer_done: bool,
    /// The outer cursor positioned at the current outer item.
    outer_before: Option<OC>,
    /// The inner cursor to build the first inner enumerator from.
    inner_start: Option<IC>,
    make_inner: FI,
    current: Option<Current<OI, OC, IE>>,
}

// Nothing is pinned structurally: both enumerators are boxed.
impl<OI, OC, OE, IC, IE, FI> Unpin for Nested<OI, OC, OE, IC, IE, FI> {}

impl<OI, OC, OE, II, IC, IE, FI> Stream for Nested<OI, OC, OE, IC, IE, FI>
where
    OE: Stream<Item = Step<OI, OC>>,
    IE: Stream<Item = Step<II, IC>>,
    FI: Fn(&OI, Option<IC>) -> IE,
    OI: Clone,
    OC: Clone,
{
    type Item = Step<(OI, II), NestedCursor<OC, IC>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.current.is_none() {
                if this.outer_done {
                    return Poll::Ready(None);
                }
                match this.outer_stream.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        this.outer_done = true;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                    Poll::Ready(Some(Ok((outer_item, outer_after)))) => {
                        let inner = (this.make_inner)(&outer_item, this.inner_start.take());
                        this.current = Some((outer_item, outer_after, Box::pin(inner)));
                    }
                }
            }
            let (outer_item, _, inner) = this
                .current
                .as_mut()
                .expect("the current outer item was just set");
            match inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok((inner_item, inner_cursor)))) => {
                    let cursor = NestedCursor {
                        outer: this.outer_before.clone(),
                        inner: Some(inner_cursor),
                    };
                    return Poll::Ready(Some(Ok(((outer_item.clone(), inner_item), cursor))));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => {
                    if let Some((_, outer_after, _)) = this.current.take() {
                        this.outer_before = Some(outer_after);
                    }
                }
            }
        }
    }
}
