//! Building blocks for [`Job::partition`](crate::Job::partition) and
//! [`Job::split`](crate::Job::split): dividing integer ranges, files, and any
//! collection by the distribution of its data.
//!
//! A partitioned job is walked by many workers at once, one partition (a child job
//! with its own cursor) each. [`int_ranges`] and [`file_ranges`] divide evenly by
//! *position*, which is by data when the data is dense: ids without big gaps, a file
//! of similar lines. For keys that cluster (ids with big gaps, timestamps, names),
//! [`quantile_ranges`] divides at quantiles of the data itself: it walks the
//! collection's keys (a keyset walk that selects only the key columns reads just the
//! index) and cuts where each part holds the same number of items. [`midpoint`] does
//! the same for what is left of a running partition, for dynamic splitting.
//!
//! ```
//! use iterjob::partition::{int_ranges, split_int_range};
//!
//! assert_eq!(int_ranges(0..10, 3), vec![0..4, 4..7, 7..10]);
//!
//! // a partition walking 0..100 has done up to 40 (its cursor, the next id): it keeps
//! // 0..70 and gives 70..100 away
//! assert_eq!(split_int_range(&(0..100), Some(40)), Some((0..70, 70..100)));
//! ```

use std::ops::Range;
use std::path::Path;

use futures::{StreamExt, pin_mut};
use serde::{Deserialize, Serialize};

use crate::enumerator::{Enumerator, FileCursor, FileFingerprint, FileRange};
use crate::error::JobError;

/// A part of a collection walked in cursor order: the items after `after` (all from
/// the start when `None`) up to and including the item whose cursor is `until` (to
/// the end when `None`). For a keyset walk, whose cursor is the last row's key, that
/// is the key range `(after, until]`: apply it with the keyset's `after` and `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange<C> {
    /// Exclusive start: the cursor of the item before the range.
    pub after: Option<C>,
    /// Inclusive end: the cursor of the range's last item.
    pub until: Option<C>,
}

impl<C> Default for KeyRange<C> {
    fn default() -> Self {
        KeyRange {
            after: None,
            until: None,
        }
    }
}

impl<C: Clone> KeyRange<C> {
    /// The whole collection.
    pub fn all() -> Self {
        Self::default()
    }

    /// Cuts the range after `mid` (the cursor of an item in it): `(after, mid]` and
    /// `(mid, until]`.
    pub fn split_at(&self, mid: C) -> (Self, Self) {
        (
            KeyRange {
                after: self.after.clone(),
                until: Some(mid.clone()),
            },
            KeyRange {
                after: Some(mid),
                until: self.until.clone(),
            },
        )
    }
}

/// Divides a collection into at most `n` [`KeyRange`]s holding about the same number
/// of items, by walking it: `walk(None)` must enumerate the collection (only the key
/// columns are needed, which keeps the walk on the index), twice: once to count, once
/// to pick the cursors at the cuts. The ranges meet, so together they walk every item
/// exactly once. An empty collection gives no range (unless `n` is 1: then the one
/// range is the whole collection, found without a walk); a small one fewer than `n`.
///
/// Two passes over the keys cost far less than one over the rows with the work, and
/// happen once, when the partitioned job starts.
///
/// ```
/// use iterjob::enumerator::range;
/// use iterjob::partition::{KeyRange, quantile_ranges};
///
/// # futures::executor::block_on(async {
/// let ids = [3i64, 4, 5, 90, 91, 92, 93, 1000, 1001];
/// let ranges = quantile_ranges(|cursor| range(0..ids.len() as i64, cursor), 3).await?;
/// assert_eq!(ranges.len(), 3);
/// assert_eq!(ranges[0], KeyRange { after: None, until: Some(3) });
/// assert_eq!(ranges[2], KeyRange { after: Some(6), until: None });
/// # Ok::<(), iterjob::JobError>(())
/// # }).unwrap();
/// ```
pub async fn quantile_ranges<I, C, E, F>(mut walk: F, n: u32) -> Result<Vec<KeyRange<C>>, JobError>
where
    C: Clone,
    E: Enumerator<I, C>,
    F: FnMut(Option<C>) -> E,
{
    if n == 0 {
        return Ok(Vec::new());
    }
    if n == 1 {
        return Ok(vec![KeyRange::all()]); // no cut to find: no walk
    }
    let total = count(walk(None)).await?;
    if total == 0 {
        return Ok(Vec::new());
    }
    let parts = u64::from(n).min(total);
    // the item closing part i is the (total * i / parts)-th, 1-based
    let mut cuts = (1..parts).map(|i| total * i / parts).peekable();
    let mut bounds: Vec<C> = Vec::with_capacity(parts as usize - 1);
    let items = walk(None);
    pin_mut!(items);
    let mut position = 0u64;
    while let Some(&cut) = cuts.peek() {
        let Some(step) = items.next().await else {
            break; // the collection shrank between the passes
        };
        let (_, cursor) = step?;
        position += 1;
        if position == cut {
            bounds.push(cursor);
            cuts.next();
        }
    }
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut after = None;
    for bound in bounds {
        ranges.push(KeyRange {
            after: after.take(),
            until: Some(bound.clone()),
        });
        after = Some(bound);
    }
    ranges.push(KeyRange { after, until: None });
    Ok(ranges)
}

/// The cursor in the middle of what is left of a walk: `walk(from)` enumerates the
/// items after `from` (bounded by the partition's own end), twice: once to count
/// them, once to stop at the middle one. `None` when fewer than 2 are left. Pair it
/// with [`KeyRange::split_at`] in [`Job::split`](crate::Job::split).
pub async fn midpoint<I, C, E, F>(mut walk: F, from: Option<C>) -> Result<Option<C>, JobError>
where
    C: Clone,
    E: Enumerator<I, C>,
    F: FnMut(Option<C>) -> E,
{
    let left = count(walk(from.clone())).await?;
    if left < 2 {
        return Ok(None);
    }
    let items = walk(from);
    pin_mut!(items);
    let mut position = 0u64;
    while let Some(step) = items.next().await {
        let (_, cursor) = step?;
        position += 1;
        if position == left / 2 {
            return Ok(Some(cursor));
        }
    }
    Ok(None)
}

async fn count<I, C>(items: impl Enumerator<I, C>) -> Result<u64, JobError> {
    pin_mut!(items);
    let mut n = 0u64;
    while let Some(step) = items.next().await {
        step?;
        n += 1;
    }
    Ok(n)
}

/// Divides `range` into at most `n` contiguous, non-empty ranges of sizes differing by
/// at most one, in order (fewer when the range has fewer than `n` integers; none when
/// it is empty). Pairs with [`enumerator::range`](crate::enumerator::range).
pub fn int_ranges(range: Range<i64>, n: u32) -> Vec<Range<i64>> {
    if range.is_empty() || n == 0 {
        return Vec::new();
    }
    let len = (range.end as i128) - (range.start as i128);
    let parts = i128::from(n).min(len);
    let (base, extra) = (len / parts, len % parts);
    let mut start = range.start as i128;
    (0..parts)
        .map(|i| {
            let size = base + i128::from(i < extra);
            let part = start as i64..(start + size) as i64;
            start += size;
            part
        })
        .collect()
}

/// Divides what is left of a partition walking `range` (with
/// [`enumerator::range`](crate::enumerator::range), whose cursor is the next integer)
/// in two halves: `(range.start..mid, mid..range.end)`. `None` when fewer than 2
/// integers are left.
pub fn split_int_range(
    range: &Range<i64>,
    cursor: Option<i64>,
) -> Option<(Range<i64>, Range<i64>)> {
    let next = cursor.map_or(range.start, |c| c.max(range.start));
    if next >= range.end {
        return None;
    }
    let left = (range.end as i128) - (next as i128);
    if left < 2 {
        return None;
    }
    let mid = (next as i128 + left / 2) as i64;
    Some((range.start..mid, mid..range.end))
}

/// Divides a file of `len` bytes into at most `n` byte ranges of about equal size, for
/// [`lines`](crate::enumerator::lines) or [`csv_records`](crate::enumerator::csv_records):
/// a record belongs to the range its first byte is in, so the ranges walk every
/// record exactly once wherever they cut (see [`FileRange`] for CSV fields with line
/// breaks). The last range is open-ended, so lines appended later are walked too.
///
/// The ranges carry no fingerprint: each partition takes the file's own when it
/// starts, so a file replaced between this call and a partition's first run is not
/// caught. Prefer [`file_ranges_of`], which fingerprints the file once for all of them.
pub fn file_ranges(len: u64, n: u32) -> Vec<FileRange> {
    if n == 0 {
        return Vec::new();
    }
    let parts = u64::from(n).min(len.max(1));
    let size = len.div_ceil(parts).max(1);
    (0..parts)
        .map(|i| FileRange::new(i * size, (i + 1 < parts).then_some((i + 1) * size)))
        .collect()
}

/// Divides the file at `path` into at most `n` byte ranges as [`file_ranges`] does,
/// all carrying the file's [`FileFingerprint`] taken now: every partition checks the
/// file against it before its first record, so partitions never walk two versions
/// of a file. The usual body of [`Job::partition`](crate::Job::partition) for a file
/// job.
///
/// A file that cannot be read is a [`JobError::Fatal`] naming it.
///
/// ```
/// use iterjob::partition::file_ranges_of;
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "a\nb\nc\nd\n").unwrap();
/// let ranges = file_ranges_of(file.path(), 2).unwrap();
/// assert_eq!((ranges[0].start, ranges[0].end, ranges[1].end), (0, Some(4), None));
/// assert_eq!(ranges[0].fingerprint, ranges[1].fingerprint);
/// ```
pub fn file_ranges_of(path: impl AsRef<Path>, n: u32) -> Result<Vec<FileRange>, JobError> {
    let path = path.as_ref();
    let fingerprint = FileFingerprint::of(path).map_err(|e| {
        JobError::fatal(format!(
            "{}: cannot read the file to divide it into ranges: {e}",
            path.display()
        ))
    })?;
    Ok(file_ranges(fingerprint.size(), n)
        .into_iter()
        .map(|range| range.with_fingerprint(fingerprint))
        .collect())
}

/// Divides what is left of a partition walking `range` of a file of `len` bytes, at
/// `cursor`, in two halves by bytes. `None` when fewer than `min_bytes` are left (the
/// rest is too small to be worth a job). Both halves carry the fingerprint of the
/// range, or failing that the cursor's, so the new partition checks it walks the
/// same file.
pub fn split_file_range(
    range: &FileRange,
    len: u64,
    cursor: Option<&FileCursor>,
    min_bytes: u64,
) -> Option<(FileRange, FileRange)> {
    let next = cursor.map_or(range.start, |c| c.offset().max(range.start));
    let end = range.end.unwrap_or(len).min(len.max(range.start));
    let left = end.checked_sub(next)?;
    if left < min_bytes.max(2) {
        return None;
    }
    let mid = next + left / 2;
    let fingerprint = range
        .fingerprint
        .or_else(|| cursor.and_then(|c| c.file().copied()));
    let cut = |start, end| FileRange {
        start,
        end,
        fingerprint,
    };
    Some((cut(range.start, Some(mid)), cut(mid, range.end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn int_ranges_cover_the_range_exactly(start in -1000i64..1000, len in 0i64..500, n in 1u32..40) {
            let parts = int_ranges(start..start + len, n);
            let all: Vec<i64> = parts.iter().flat_map(|r| r.clone()).collect();
            prop_assert_eq!(all, (start..start + len).collect::<Vec<_>>());
            prop_assert!(parts.len() <= n as usize);
            prop_assert!(parts.iter().all(|r| !r.is_empty()));
            let sizes: Vec<i64> = parts.iter().map(|r| r.end - r.start).collect();
            if let (Some(max), Some(min)) = (sizes.iter().max(), sizes.iter().min()) {
                prop_assert!(max - min <= 1);
            }
        }

        #[test]
        fn split_keeps_every_item_once(start in -100i64..100, len in 0i64..300, done in 0i64..320) {
            let range = start..start + len;
            let cursor = start + done;
            match split_int_range(&range, Some(cursor)) {
                None => prop_assert!(range.end - cursor.max(range.start) < 2),
                Some((keep, give)) => {
                    prop_assert_eq!(keep.start, range.start);
                    prop_assert_eq!(keep.end, give.start);
                    prop_assert_eq!(give.end, range.end);
                    prop_assert!(keep.end > cursor, "keep must still have work after the cursor");
                    prop_assert!(!give.is_empty());
                }
            }
        }

        #[test]
        fn file_ranges_meet(len in 0u64..10_000, n in 1u32..20) {
            let ranges = file_ranges(len, n);
            prop_assert!(!ranges.is_empty());
            prop_assert_eq!(ranges[0].start, 0);
            prop_assert_eq!(ranges.last().unwrap().end, None);
            for pair in ranges.windows(2) {
                prop_assert_eq!(pair[0].end, Some(pair[1].start));
                prop_assert!(pair[1].start > pair[0].start);
            }
        }
    }

    /// Walks `ids` in order from a cursor (the cursor is the last id walked) up to an
    /// inclusive end: what a keyset walk over the ids does.
    fn keys(ids: &[i64], after: Option<i64>, until: Option<i64>) -> Vec<i64> {
        ids.iter()
            .copied()
            .filter(|&i| after.is_none_or(|a| i > a) && until.is_none_or(|u| i <= u))
            .collect()
    }

    type Walk = futures::stream::Iter<std::vec::IntoIter<Result<(i64, i64), JobError>>>;

    fn walk(ids: &[i64], until: Option<i64>) -> impl FnMut(Option<i64>) -> Walk + '_ {
        move |after| {
            futures::stream::iter(
                keys(ids, after, until)
                    .into_iter()
                    .map(|i| Ok((i, i)))
                    .collect::<Vec<_>>(),
            )
        }
    }

    proptest! {
        #[test]
        fn quantile_ranges_cover_clustered_keys_evenly(
            mut ids in proptest::collection::vec(0i64..100_000, 0..400),
            n in 1u32..12,
            cuts in proptest::collection::vec(0usize..400, 0..4),
        ) {
            ids.sort_unstable();
            ids.dedup();
            let ranges = futures::executor::block_on(quantile_ranges(walk(&ids, None), n)).unwrap();
            prop_assert_eq!(ranges.is_empty(), ids.is_empty() && n > 1);
            let parts: Vec<Vec<i64>> = ranges.iter().map(|r| keys(&ids, r.after, r.until)).collect();
            prop_assert_eq!(parts.concat(), ids.clone(), "every key once, in order");
            if let (Some(max), Some(min)) = (parts.iter().map(Vec::len).max(), parts.iter().map(Vec::len).min()) {
                prop_assert!(max - min <= 1, "even parts by count: {:?}", parts.iter().map(Vec::len).collect::<Vec<_>>());
            }
            // and splitting any part at any cursor, again and again, keeps every key once
            let mut live: Vec<KeyRange<i64>> = ranges;
            for cut in cuts {
                if live.is_empty() { break; }
                let at = cut % live.len();
                let range = live[at].clone();
                let done = keys(&ids, range.after, range.until);
                let cursor = done.get(cut % (done.len() + 1)).copied().or(range.after);
                let mid = futures::executor::block_on(midpoint(walk(&ids, range.until), cursor)).unwrap();
                let left = keys(&ids, cursor, range.until).len();
                match mid {
                    None => prop_assert!(left < 2),
                    Some(mid) => {
                        let (keep, give) = range.split_at(mid);
                        let kept_rest = keys(&ids, cursor, keep.until).len();
                        prop_assert!(kept_rest >= 1 && !keys(&ids, give.after, give.until).is_empty());
                        prop_assert!(kept_rest.abs_diff(left - kept_rest) <= 1);
                        live[at] = keep;
                        live.push(give);
                    }
                }
            }
            let mut all: Vec<i64> = live.iter().flat_map(|r| keys(&ids, r.after, r.until)).collect();
            all.sort_unstable();
            prop_assert_eq!(all, ids);
        }
    }

    #[test]
    fn extremes() {
        assert_eq!(int_ranges(i64::MIN..i64::MAX, 2).len(), 2);
        assert_eq!(int_ranges(5..5, 4), Vec::<Range<i64>>::new());
        assert_eq!(int_ranges(0..3, 8), vec![0..1, 1..2, 2..3]);
        assert_eq!(split_int_range(&(0..10), Some(9)), None);
        assert_eq!(split_int_range(&(0..10), Some(8)), Some((0..9, 9..10)));
        assert_eq!(
            split_file_range(
                &FileRange::new(0, None),
                1000,
                Some(&FileCursor::unchecked(200)),
                100
            ),
            Some((FileRange::new(0, Some(600)), FileRange::new(600, None)))
        );
        assert_eq!(
            split_file_range(
                &FileRange::default(),
                1000,
                Some(&FileCursor::unchecked(950)),
                100
            ),
            None
        );
    }
}
