//! [`Batched`]: groups an enumerator's items into batches.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::Step;
use crate::error::JobError;

/// Most items reserved up front for a batch, so a huge `size` does not allocate a
/// huge buffer before any item arrives.
const MAX_PREALLOCATED: usize = 1024;

/// An enumerator of batches: groups up to `size` items of an inner enumerator.
///
/// Built by [`EnumeratorExt::batched`](super::EnumeratorExt::batched) or
/// [`Batched::new`]. Each batch is yielded with its **last item's cursor**, so the
/// cursor stays item-granular: resuming from it, with any batch size, neither skips
/// nor repeats an item. The last batch may be shorter than `size`.
///
/// Errors are propagated without losing anything: if the inner enumerator fails
/// after some items of a batch have arrived, those items are yielded first as a short
/// batch (with the cursor of the last of them) and the error comes on the next poll.
/// After an error the inner enumerator is polled again if the caller keeps polling.
///
/// A partial batch is held while the inner enumerator is pending; batches are only
/// yielded when full, before an error, or at the end, so batch boundaries do not
/// depend on timing.
///
/// `Batched` is `Send` when the inner stream, items and cursors are, and `Unpin`
/// always (the inner stream is boxed).
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{EnumeratorExt, range};
///
/// block_on(async {
///     let batches: Vec<_> = range(0..5, None).batched(2).map(|s| s.unwrap()).collect().await;
///     assert_eq!(batches, vec![(vec![0, 1], 2), (vec![2, 3], 4), (vec![4], 5)]);
/// });
/// ```
pub struct Batched<S, I, C> {
    stream: Pin<Box<S>>,
    size: usize,
    buf: Vec<I>,
    last: Option<C>,
    pending_error: Option<JobError>,
    done: bool,
}

// The inner stream is boxed and nothing is pinned structurally, so moving a
// `Batched` never moves anything that is pinned.
impl<S, I, C> Unpin for Batched<S, I, C> {}

impl<S, I, C> Batched<S, I, C>
where
    S: Stream<Item = Step<I, C>>,
{
    /// Wraps `stream`, grouping its items into batches of up to `size`.
    ///
    /// # Panics
    /// If `size` is 0.
    ///
    /// ```
    /// use futures::{StreamExt, executor::block_on};
    /// use iterjob::enumerator::{Batched, from_vec};
    ///
    /// block_on(async {
    ///     let batched = Batched::new(from_vec(vec!['a', 'b', 'c'], Some(1)), 10);
    ///     let batches: Vec<_> = batched.map(|s| s.unwrap()).collect().await;
    ///     assert_eq!(batches, vec![(vec!['b', 'c'], 3)]);
    /// });
    /// ```
    pub fn new(stream: S, size: usize) -> Self {
        assert!(
            size > 0,
            "Batched::new: batch size must be at least 1, got 0"
        );
        Batched {
            stream: Box::pin(stream),
            size,
            buf: Vec::with_capacity(size.min(MAX_PREALLOCATED)),
            last: None,
            pending_error: None,
            done: false,
        }
    }

    /// The batch size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes the buffered items and their last cursor as one batch.
    fn flush(&mut self) -> Option<Step<Vec<I>, C>> {
        let cursor = self.last.take()?;
        let capacity = self.size.min(MAX_PREALLOCATED);
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        Some(Ok((batch, cursor)))
    }
}

impl<S, I, C> Stream for Batched<S, I, C>
where
    S: Stream<Item = Step<I, C>>,
{
    type Item = Step<Vec<I>, C>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(err) = this.pending_error.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok((item, cursor)))) => {
                    this.buf.push(item);
                    this.last = Some(cursor);
                    if this.buf.len() >= this.size {
                        return Poll::Ready(this.flush());
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    return match this.flush() {
                        Some(batch) => {
                            this.pending_error = Some(err);
                            Poll::Ready(Some(batch))
                        }
                        None => Poll::Ready(Some(Err(err))),
                    };
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(this.flush());
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let extra = usize::from(self.pending_error.is_some());
        if self.done {
            return (extra, Some(extra));
        }
        let (lower, upper) = self.stream.size_hint();
        // Each inner step ends at most one batch (a full batch or an error), and the
        // buffered items at most one more.
        let upper = upper
            .and_then(|u| u.checked_add(usize::from(!self.buf.is_empty())))
            .and_then(|u| u.checked_add(extra));
        (lower / self.size + extra, upper)
    }
}

impl<S, I, C> fmt::Debug for Batched<S, I, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batched")
            .field("size", &self.size)
            .field("buffered", &self.buf.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
