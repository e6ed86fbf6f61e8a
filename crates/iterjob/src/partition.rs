//! Building blocks for [`Job::partition`](crate::Job::partition) and
//! [`Job::split`](crate::Job::split): dividing integer ranges and files.
//!
//! A partitioned job is walked by many workers at once, one partition (a child job
//! with its own cursor) each. The functions here divide evenly by *position*, which
//! is by data when the data is dense: ids without big gaps, a file of similar lines.
//! For keys that cluster, divide at quantiles of the key instead
//! (`Keyset::partition_bounds` in `iterjob-sqlite` and `iterjob-postgres`).
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

use crate::enumerator::FileRange;

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
pub fn split_int_range(range: &Range<i64>, cursor: Option<i64>) -> Option<(Range<i64>, Range<i64>)> {
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
pub fn file_ranges(len: u64, n: u32) -> Vec<FileRange> {
    if n == 0 {
        return Vec::new();
    }
    let parts = u64::from(n).min(len.max(1));
    let size = len.div_ceil(parts).max(1);
    (0..parts)
        .map(|i| FileRange {
            start: i * size,
            end: (i + 1 < parts).then_some((i + 1) * size),
        })
        .collect()
}

/// Divides what is left of a partition walking `range` of a file of `len` bytes,
/// whose cursor is the byte offset of the next record, in two halves by bytes. `None`
/// when fewer than `min_bytes` are left (the rest is too small to be worth a job).
pub fn split_file_range(
    range: &FileRange,
    len: u64,
    cursor: Option<u64>,
    min_bytes: u64,
) -> Option<(FileRange, FileRange)> {
    let next = cursor.map_or(range.start, |c| c.max(range.start));
    let end = range.end.unwrap_or(len).min(len.max(range.start));
    let left = end.checked_sub(next)?;
    if left < min_bytes.max(2) {
        return None;
    }
    let mid = next + left / 2;
    Some((
        FileRange {
            start: range.start,
            end: Some(mid),
        },
        FileRange {
            start: mid,
            end: range.end,
        },
    ))
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

    #[test]
    fn extremes() {
        assert_eq!(int_ranges(i64::MIN..i64::MAX, 2).len(), 2);
        assert_eq!(int_ranges(5..5, 4), Vec::<Range<i64>>::new());
        assert_eq!(int_ranges(0..3, 8), vec![0..1, 1..2, 2..3]);
        assert_eq!(split_int_range(&(0..10), Some(9)), None);
        assert_eq!(split_int_range(&(0..10), Some(8)), Some((0..9, 9..10)));
        assert_eq!(
            split_file_range(&FileRange { start: 0, end: None }, 1000, Some(200), 100),
            Some((
                FileRange { start: 0, end: Some(600) },
                FileRange { start: 600, end: None }
            ))
        );
        assert_eq!(split_file_range(&FileRange::default(), 1000, Some(950), 100), None);
    }
}
