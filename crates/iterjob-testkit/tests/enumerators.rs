//! Resume exactness and edge cases of the built-in enumerators.

use std::cell::Cell;
use std::task::Poll;

use futures::executor::block_on;
use futures::{Stream, StreamExt, stream};
use iterjob::JobError;
use iterjob::enumerator::{
    Batched, BoxEnumerator, ConcatCursor, Enumerator, EnumeratorExt, FileCursor, FileRange,
    NestedCursor, concat, csv_records, from_vec, lines, nested, range,
};
use iterjob_testkit::resume::roundtrip;
use iterjob_testkit::{assert_resume_exact, collect_all, walk_with_interruptions};
use proptest::prelude::*;
use proptest::sample::Index;

/// 64 cases per property, so the suite runs in seconds; `PROPTEST_CASES=N` for more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(64))
}

fn stretches() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..8, 0..6)
}

/// Every step (item and cursor) of a fresh enumerator.
fn steps<I, C>(enumerator: impl Enumerator<I, C>) -> Vec<(I, C)> {
    block_on(
        enumerator
            .map(|s| s.unwrap_or_else(|e| panic!("enumerator failed: {e}")))
            .collect(),
    )
}

/// The first error of an enumerator.
fn first_error<I, C>(enumerator: impl Enumerator<I, C>) -> JobError {
    block_on(async {
        let mut enumerator = std::pin::pin!(enumerator);
        while let Some(step) = enumerator.next().await {
            if let Err(e) = step {
                return e;
            }
        }
        panic!("the enumerator ended without an error")
    })
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn write_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), bytes).expect("write temp file");
    file
}

// ---------------------------------------------------------------------------------
// range / from_vec

proptest! {
    #![proptest_config(config())]

    #[test]
    fn range_resumes_exactly(
        start in -60i64..60,
        len in 0i64..50,
        cursor in prop::option::of(-80i64..130),
        stretches in stretches(),
    ) {
        let end = start + len;
        let first = cursor.map_or(start, |c| c.max(start));
        let expected: Vec<(i64, i64)> = (first..end).map(|i| (i, i + 1)).collect();
        prop_assert_eq!(steps(range(start..end, cursor)), expected);

        block_on(assert_resume_exact(|c| range(start..end, c), &stretches));
        // resuming from any initial cursor is exact too
        block_on(assert_resume_exact(|c| range(start..end, c.or(cursor)), &stretches));
    }

    #[test]
    fn from_vec_resumes_exactly(
        items in prop::collection::vec(any::<u16>(), 0..40),
        cursor in prop::option::of(0usize..50),
        stretches in stretches(),
    ) {
        let skip = cursor.unwrap_or(0);
        let expected: Vec<(u16, usize)> =
            items.iter().enumerate().skip(skip).map(|(i, &x)| (x, i + 1)).collect();
        prop_assert_eq!(steps(from_vec(items.clone(), cursor)), expected);
        block_on(assert_resume_exact(|c| from_vec(items.clone(), c), &stretches));
    }
}

#[test]
fn range_edges() {
    assert_eq!(steps(range(5..5, None)), vec![]);
    // a reversed range is empty
    assert_eq!(
        steps(range(std::ops::Range { start: 5, end: 3 }, None)),
        vec![]
    );
    assert_eq!(steps(range(0..3, Some(3))), vec![]);
    assert_eq!(steps(range(0..3, Some(i64::MAX))), vec![]);
    assert_eq!(
        steps(range(0..3, Some(i64::MIN))),
        vec![(0, 1), (1, 2), (2, 3)]
    );
    assert_eq!(
        steps(range(i64::MAX - 2..i64::MAX, None)),
        vec![(i64::MAX - 2, i64::MAX - 1), (i64::MAX - 1, i64::MAX)]
    );
    assert_eq!(
        steps(range(i64::MIN..i64::MIN + 1, None)),
        vec![(i64::MIN, i64::MIN + 1)]
    );
    assert_eq!(range(0..10, Some(4)).size_hint(), (6, Some(6)));
}

#[test]
fn from_vec_edges() {
    assert_eq!(steps(from_vec(Vec::<u8>::new(), None)), vec![]);
    assert_eq!(steps(from_vec(vec![1, 2], Some(2))), vec![]);
    assert_eq!(steps(from_vec(vec![1, 2], Some(usize::MAX))), vec![]);
    assert_eq!(steps(from_vec(vec!['a'], Some(0))), vec![('a', 1)]);
}

// ---------------------------------------------------------------------------------
// batched

/// Walks `0..n` in batches whose size changes on every resume (cycling through
/// `sizes`), interrupting after each stretch of batches, and returns the items of
/// every batch in order.
fn walk_batches_changing_size(n: i64, sizes: &[usize], stretches: &[usize]) -> Vec<i64> {
    let runs = Cell::new(0usize);
    let batches = block_on(walk_with_interruptions(
        |cursor| {
            let size = sizes[runs.get() % sizes.len()];
            runs.set(runs.get() + 1);
            range(0..n, cursor).batched(size)
        },
        stretches,
    ));
    batches.into_iter().flatten().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn batched_resumes_exactly(
        n in 0i64..60,
        size in 1usize..12,
        stretches in stretches(),
    ) {
        let all = steps(range(0..n, None).batched(size));
        let expected_batches = (n as usize).div_ceil(size);
        prop_assert_eq!(all.len(), expected_batches);
        for (i, (batch, cursor)) in all.iter().enumerate() {
            if i + 1 < all.len() {
                prop_assert_eq!(batch.len(), size);
            }
            prop_assert!(!batch.is_empty());
            // the cursor is the last item's cursor
            prop_assert_eq!(*cursor, batch.last().unwrap() + 1);
        }
        let flat: Vec<i64> = all.into_iter().flat_map(|(b, _)| b).collect();
        prop_assert_eq!(flat, (0..n).collect::<Vec<_>>());
        block_on(assert_resume_exact(|c| range(0..n, c).batched(size), &stretches));
    }

    #[test]
    fn batched_size_can_change_between_runs(
        n in 0i64..80,
        sizes in prop::collection::vec(1usize..10, 1..5),
        stretches in prop::collection::vec(0usize..5, 0..6),
    ) {
        let items = walk_batches_changing_size(n, &sizes, &stretches);
        prop_assert_eq!(items, (0..n).collect::<Vec<_>>());
    }
}

#[test]
fn batched_size_change_example() {
    // walk with batches of 3, stop after 2 batches, resume with batches of 4
    let items = walk_batches_changing_size(20, &[3, 4], &[2]);
    assert_eq!(items, (0..20).collect::<Vec<_>>());
}

#[test]
#[should_panic(expected = "batch size must be at least 1")]
fn batched_size_zero_panics() {
    let _ = range(0..3, None).batched(0);
}

fn failing_stream() -> impl Enumerator<u32, u32> {
    stream::iter(vec![
        Ok((1, 1)),
        Ok((2, 2)),
        Err(JobError::fatal("boom")),
        Ok((3, 3)),
    ])
}

#[test]
fn batched_yields_partial_batch_before_error() {
    let out: Vec<_> = block_on(failing_stream().batched(5).collect());
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().unwrap(), &(vec![1, 2], 2));
    let err = out[1].as_ref().unwrap_err();
    assert!(err.is_fatal());
    assert!(err.to_string().contains("boom"));
    assert_eq!(out[2].as_ref().unwrap(), &(vec![3], 3));

    // an error with an empty buffer is yielded at once
    let out: Vec<_> = block_on(failing_stream().batched(2).collect());
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().unwrap(), &(vec![1, 2], 2));
    assert!(out[1].is_err());
    assert_eq!(out[2].as_ref().unwrap(), &(vec![3], 3));
}

#[test]
fn batched_keeps_partial_batch_across_pending() {
    // an inner stream that is pending between items
    let mut pending = false;
    let mut next = 0u32;
    let inner = stream::poll_fn(move |cx| {
        pending = !pending;
        if pending {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        next += 1;
        if next > 5 {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok::<_, JobError>((next, next))))
        }
    });
    let out = steps(Batched::new(inner, 2));
    assert_eq!(out, vec![(vec![1, 2], 2), (vec![3, 4], 4), (vec![5], 5)]);
}

#[test]
fn batched_is_send_and_reports_size() {
    let batched = assert_send(Batched::new(range(0..10, None), 4));
    assert_eq!(batched.size(), 4);
    assert_eq!(batched.size_hint().0, 2);
    let _boxed: BoxEnumerator<Vec<i64>, i64> = batched.boxed_enumerator();
}

#[test]
fn batched_does_not_preallocate_huge_sizes() {
    let out = steps(range(0..3, None).batched(usize::MAX));
    assert_eq!(out, vec![(vec![0, 1, 2], 3)]);
}

// ---------------------------------------------------------------------------------
// lines

/// The lines of a text, as [`lines`] defines them: split after each `\n`, without the
/// `\n` or `\r\n`, and no empty line after a final line ending.
fn reference_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(line) => line.strip_suffix('\r').unwrap_or(line).to_string(),
            None => line.to_string(),
        })
        .collect()
}

/// A text of lines with `\n` or `\r\n` endings, with or without a final line ending.
fn text_of_lines() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(("[a-dé ,\"\r]{0,6}", any::<bool>()), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, trailing)| {
            let mut text = String::new();
            let count = lines.len();
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                // keep a bare `\r` from pairing up with the line ending
                let line = line.trim_end_matches('\r');
                text.push_str(line);
                if i + 1 < count || trailing {
                    text.push_str(if crlf { "\r\n" } else { "\n" });
                }
            }
            text
        })
}

/// Walks every range of a split of the file at `points` (byte offsets, sorted,
/// deduplicated) and returns all the items in order.
/// The items of a file walk with the byte offsets of their cursors.
fn offsets<I>(steps: Vec<(I, FileCursor)>) -> Vec<(I, u64)> {
    steps.into_iter().map(|(i, c)| (i, c.offset())).collect()
}

fn walk_ranges<I, E>(points: &[u64], make: impl Fn(FileRange, Option<FileCursor>) -> E) -> Vec<I>
where
    E: Enumerator<I, FileCursor>,
    I: PartialEq + std::fmt::Debug,
{
    let mut bounds: Vec<u64> = points.to_vec();
    bounds.sort_unstable();
    bounds.dedup();
    let mut starts = vec![0];
    starts.extend(bounds.iter().copied().filter(|&b| b > 0));
    let mut out = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let range = FileRange::new(start, starts.get(i + 1).copied());
        // each range is resume-exact on its own
        block_on(assert_resume_exact(|c| make(range, c), &[1, 2]));
        out.extend(block_on(collect_all(make(range, None))));
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lines_resume_exactly(text in text_of_lines(), stretches in stretches()) {
        let file = write_file(text.as_bytes());
        let path = file.path();
        let all = steps(lines(path, FileRange::default(), None));
        let items: Vec<String> = all.iter().map(|(l, _)| l.clone()).collect();
        prop_assert_eq!(&items, &reference_lines(&text));
        // cursors are the byte offsets just past each line ending
        let mut offset = 0u64;
        for (piece, (_, cursor)) in text.split_inclusive('\n').zip(&all) {
            offset += piece.len() as u64;
            prop_assert_eq!(cursor.offset(), offset);
        }
        block_on(assert_resume_exact(|c| lines(path, FileRange::default(), c), &stretches));
    }

    #[test]
    fn lines_byte_ranges_cover_the_file_exactly_once(
        text in text_of_lines(),
        points in prop::collection::vec(any::<Index>(), 0..5),
    ) {
        let file = write_file(text.as_bytes());
        let path = file.path();
        // arbitrary split points: a point inside a line moves to the next line
        let points: Vec<u64> = points.iter().map(|p| p.index(text.len() + 2) as u64).collect();
        let walked = walk_ranges(&points, |range, c| lines(path, range, c));
        prop_assert_eq!(walked, reference_lines(&text));
    }
}

#[test]
fn lines_edges() {
    let lines_of = |bytes: &[u8]| -> Vec<(String, u64)> {
        let file = write_file(bytes);
        offsets(steps(lines(file.path(), FileRange::default(), None)))
    };
    assert_eq!(lines_of(b""), vec![]);
    assert_eq!(lines_of(b"\n"), vec![(String::new(), 1)]);
    assert_eq!(
        lines_of(b"\r\n\r\n"),
        vec![(String::new(), 2), (String::new(), 4)]
    );
    assert_eq!(lines_of(b"a"), vec![("a".into(), 1)]);
    assert_eq!(lines_of(b"a\rb\n"), vec![("a\rb".into(), 4)]);
    assert_eq!(lines_of(b"a\r"), vec![("a\r".into(), 2)]);
    assert_eq!(
        lines_of("é\nx".as_bytes()),
        vec![("é".into(), 3), ("x".into(), 4)]
    );
}

#[test]
fn lines_range_starting_mid_line_skips_to_the_next_line() {
    let file = write_file(b"one\ntwo\nthree\n");
    let path = file.path();
    let items = |start, end| -> Vec<String> {
        block_on(collect_all(lines(path, FileRange::new(start, end), None)))
    };
    assert_eq!(items(1, None), vec!["two", "three"]);
    assert_eq!(items(4, None), vec!["two", "three"]);
    assert_eq!(items(0, Some(1)), vec!["one"]);
    assert_eq!(items(0, Some(4)), vec!["one"]);
    assert_eq!(items(0, Some(5)), vec!["one", "two"]);
    assert_eq!(items(5, Some(8)), Vec::<String>::new());
    assert_eq!(items(100, None), Vec::<String>::new());
    // a cursor before the range start starts at the range start
    let from_cursor: Vec<String> = block_on(collect_all(lines(
        path,
        FileRange::new(4, None),
        Some(FileCursor::unchecked(0)),
    )));
    assert_eq!(from_cursor, vec!["two", "three"]);
    // a cursor at the end yields nothing
    let last = steps(lines(path, FileRange::default(), None))
        .pop()
        .unwrap()
        .1;
    assert_eq!(last.offset(), 14);
    assert_eq!(steps(lines(path, FileRange::default(), Some(last))), vec![]);
}

#[test]
fn lines_missing_file_is_fatal_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-file.txt");
    let err = first_error(lines(&path, FileRange::default(), None));
    assert!(err.is_fatal(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("no-such-file.txt"), "{message}");
    assert!(message.contains("cannot open"), "{message}");
}

#[test]
fn lines_invalid_utf8_is_fatal_and_names_the_offset() {
    let file = write_file(b"ok\nbad\xff\n");
    let mut out = block_on(lines(file.path(), FileRange::default(), None).collect::<Vec<_>>());
    assert_eq!(out.len(), 2, "the enumerator ends after the error");
    let err = out.pop().unwrap().unwrap_err();
    assert!(err.is_fatal());
    assert!(err.to_string().contains("byte 3"), "{err}");
    let (line, cursor) = out.pop().unwrap().unwrap();
    assert_eq!((line.as_str(), cursor.offset()), ("ok", 3));
}

#[test]
fn file_enumerators_are_send() {
    let file = write_file(b"a\n");
    let _ = assert_send(lines(file.path(), FileRange::default(), None));
    let _ = assert_send(csv_records(file.path(), FileRange::default(), None, false));
}

#[test]
fn file_range_serde_and_contains() {
    let range = FileRange::new(10, Some(20));
    assert_eq!(roundtrip(&range), range);
    // with a fingerprint, and a range saved before fingerprints existed
    let file = write_file(b"a\n");
    let fingerprint = iterjob::enumerator::FileFingerprint::of(file.path()).unwrap();
    let stamped = range.with_fingerprint(fingerprint);
    assert_eq!(roundtrip(&stamped), stamped);
    let old: FileRange = serde_json::from_str(r#"{"start":10,"end":20}"#).unwrap();
    assert_eq!(old, range);
    assert_eq!(roundtrip(&FileRange::default()), FileRange::default());
    assert!(range.contains(10) && range.contains(19));
    assert!(!range.contains(9) && !range.contains(20));
    assert!(FileRange::default().contains(u64::MAX));
}

// ---------------------------------------------------------------------------------
// CSV

#[derive(Debug, Clone)]
struct CsvFile {
    text: String,
    has_headers: bool,
    /// The data rows (without the header row).
    rows: Vec<Vec<String>>,
    /// True if some field holds a line break.
    multiline: bool,
}

fn quote(field: &str, single_field: bool, force: bool) -> String {
    let special = field.contains([',', '"', '\n', '\r']) || (single_field && field.is_empty());
    if special || force {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A CSV file: random fields (with commas, quotes, line breaks), `\n` or `\r\n`
/// endings, blank lines between records, with or without a final line ending.
fn csv_file() -> impl Strategy<Value = CsvFile> {
    (1usize..4).prop_flat_map(|width| {
        (
            prop::collection::vec(
                (
                    prop::collection::vec("[a-cé ,\"\n\r]{0,5}", width),
                    any::<bool>(),
                    0usize..3,
                    any::<bool>(),
                ),
                0..10,
            ),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(records, has_headers, trailing)| {
                let mut text = String::new();
                let count = records.len();
                let mut rows = Vec::new();
                let mut multiline = false;
                for (i, (fields, crlf, blanks, force)) in records.into_iter().enumerate() {
                    let ending = if crlf { "\r\n" } else { "\n" };
                    let line: Vec<String> =
                        fields.iter().map(|f| quote(f, width == 1, force)).collect();
                    text.push_str(&line.join(","));
                    multiline |= fields.iter().any(|f| f.contains(['\n', '\r']));
                    if i + 1 < count || trailing {
                        text.push_str(ending);
                        if i + 1 < count {
                            for _ in 0..blanks {
                                text.push_str(ending);
                            }
                        }
                    }
                    rows.push(fields);
                }
                if has_headers && !rows.is_empty() {
                    rows.remove(0);
                }
                CsvFile {
                    text,
                    has_headers,
                    rows,
                    multiline,
                }
            })
    })
}

/// The fields of a CSV record (without naming the `csv` crate, not a dependency here).
fn fields<'a>(record: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    record.into_iter().map(str::to_owned).collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_records_resume_exactly(csv in csv_file(), stretches in stretches()) {
        let file = write_file(csv.text.as_bytes());
        let path = file.path();
        let h = csv.has_headers;
        let all = steps(csv_records(path, FileRange::default(), None, h));
        let rows: Vec<Vec<String>> = all.iter().map(|(r, _)| fields(r)).collect();
        prop_assert_eq!(&rows, &csv.rows, "file: {:?}", csv.text);
        // cursors increase and the last one is the end of the file
        prop_assert!(all.windows(2).all(|w| w[0].1.offset() < w[1].1.offset()));
        // (after `\r\n` the csv parser ends a record at the `\r`, and the cursor
        // points at the `\n`, which the next read skips as a blank line)
        if let Some((_, last)) = all.last() {
            let last = last.offset();
            let len = csv.text.len() as u64;
            let crlf = csv.text.ends_with("\r\n");
            prop_assert!(last == len || (crlf && last == len - 1), "{} of {}", last, len);
        }
        block_on(assert_resume_exact(|c| csv_records(path, FileRange::default(), c, h), &stretches));
    }

    #[test]
    fn csv_batch_size_can_change_between_runs(
        csv in csv_file(),
        sizes in prop::collection::vec(1usize..5, 1..4),
        stretches in prop::collection::vec(0usize..4, 0..5),
    ) {
        let file = write_file(csv.text.as_bytes());
        let path = file.path();
        let runs = Cell::new(0usize);
        let batches = block_on(walk_with_interruptions(
            |c| {
                let size = sizes[runs.get() % sizes.len()];
                runs.set(runs.get() + 1);
                csv_records(path, FileRange::default(), c, csv.has_headers).batched(size)
            },
            &stretches,
        ));
        let rows: Vec<Vec<String>> = batches.iter().flatten().map(fields).collect();
        prop_assert_eq!(rows, csv.rows);
    }

    #[test]
    fn csv_byte_ranges_cover_the_file_exactly_once(
        csv in csv_file(),
        points in prop::collection::vec(any::<Index>(), 0..5),
    ) {
        let file = write_file(csv.text.as_bytes());
        let path = file.path();
        let h = csv.has_headers;
        let cursors: Vec<u64> = steps(csv_records(path, FileRange::default(), None, h))
            .into_iter()
            .map(|(_, c)| c.offset())
            .collect();
        // split at record boundaries (cursors); without line breaks in fields any
        // offset will do, and one inside a record moves to the next record
        let points: Vec<u64> = if csv.multiline {
            if cursors.is_empty() {
                Vec::new()
            } else {
                points.iter().map(|p| *p.get(&cursors)).collect()
            }
        } else {
            points.iter().map(|p| p.index(csv.text.len() + 2) as u64).collect()
        };
        let walked = walk_ranges(&points, |range, c| csv_records(path, range, c, h));
        let rows: Vec<Vec<String>> = walked.iter().map(fields).collect();
        prop_assert_eq!(rows, csv.rows, "file: {:?}, points: {:?}", csv.text, points);
    }
}

#[test]
fn csv_quoted_newlines_crlf_and_blank_lines() {
    let text = "id,text\r\n1,\"a\r\nb\"\r\n\r\n\r\n2,\"x,\"\"y\"\"\"\r\n3,z";
    let file = write_file(text.as_bytes());
    let all = steps(csv_records(file.path(), FileRange::default(), None, true));
    let rows: Vec<Vec<String>> = all.iter().map(|(r, _)| fields(r)).collect();
    assert_eq!(
        rows,
        vec![vec!["1", "a\r\nb"], vec!["2", "x,\"y\""], vec!["3", "z"]]
    );
    assert_eq!(all.last().unwrap().1.offset(), text.len() as u64); // no final line ending
    // a range ending inside the blank lines before record 2 does not take it
    let blank = text.find("\r\n\r\n2").unwrap() as u64 + 2;
    let first: Vec<Vec<String>> = steps(csv_records(
        file.path(),
        FileRange::new(0, Some(blank)),
        None,
        true,
    ))
    .iter()
    .map(|(r, _)| fields(r))
    .collect();
    assert_eq!(first, vec![vec!["1", "a\r\nb"]]);
    let rest: Vec<Vec<String>> = steps(csv_records(
        file.path(),
        FileRange::new(blank, None),
        None,
        true,
    ))
    .iter()
    .map(|(r, _)| fields(r))
    .collect();
    assert_eq!(rest, vec![vec!["2", "x,\"y\""], vec!["3", "z"]]);
}

#[test]
fn csv_header_is_read_on_every_open() {
    let file = write_file(b"a,b\n1,2\n3,4\n");
    let path = file.path();
    // a range starting inside the header starts after it
    let rows: Vec<Vec<String>> = steps(csv_records(path, FileRange::new(1, None), None, true))
        .iter()
        .map(|(r, _)| fields(r))
        .collect();
    assert_eq!(rows, vec![vec!["1", "2"], vec!["3", "4"]]);
    // without headers the first row is a record
    let rows = steps(csv_records(path, FileRange::default(), None, false));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1.offset(), 4);
    // resuming without headers from a cursor
    let rows = steps(csv_records(
        path,
        FileRange::default(),
        Some(rows[0].1),
        false,
    ));
    assert_eq!(
        rows.iter().map(|(r, _)| fields(r)).collect::<Vec<_>>(),
        vec![vec!["1", "2"], vec!["3", "4"]]
    );
    // the positions of records hold their byte offsets
    let with_headers = steps(csv_records(path, FileRange::default(), None, true));
    assert_eq!(with_headers[0].1.offset(), 8);
    let rows = steps(csv_records(
        path,
        FileRange::default(),
        Some(with_headers[0].1),
        true,
    ));
    assert_eq!(rows[0].0.position().unwrap().byte(), 8);
}

#[test]
fn csv_missing_file_is_fatal_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.csv");
    let err = first_error(csv_records(&path, FileRange::default(), None, true));
    assert!(err.is_fatal(), "{err:?}");
    assert!(err.to_string().contains("missing.csv"), "{err}");
}

#[test]
fn csv_malformed_record_is_fatal_and_names_the_offset() {
    let file = write_file(b"a,b\n1,2\n3\n");
    let err = first_error(csv_records(file.path(), FileRange::default(), None, true));
    assert!(err.is_fatal(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("byte 8"), "{message}");
    assert!(message.contains("1 fields"), "{message}");
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );

    let file = write_file(b"a\n\xff\n");
    let after_a = steps(csv_records(file.path(), FileRange::default(), None, false).take(1))[0].1;
    let err = first_error(csv_records(
        file.path(),
        FileRange::default(),
        Some(after_a),
        false,
    ));
    assert!(err.is_fatal());
    assert!(err.to_string().contains("byte 2"), "{err}");
}

// ---------------------------------------------------------------------------------
// nested

type Shape = Vec<(usize, Vec<u8>)>;

fn nested_of(
    shape: &Shape,
    cursor: Option<NestedCursor<usize, usize>>,
) -> impl Enumerator<((usize, Vec<u8>), u8), NestedCursor<usize, usize>> + use<> {
    let outer = shape.clone();
    nested(
        move |c| from_vec(outer, c),
        |(_, inner): &(usize, Vec<u8>), c| from_vec(inner.clone(), c),
        cursor,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nested_resumes_exactly(
        lists in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4), 0..7),
        stretches in stretches(),
    ) {
        let shape: Shape = lists.into_iter().enumerate().collect();
        let expected: Vec<((usize, Vec<u8>), u8)> = shape
            .iter()
            .flat_map(|outer| outer.1.iter().map(move |&x| (outer.clone(), x)))
            .collect();
        prop_assert_eq!(block_on(collect_all(nested_of(&shape, None))), expected);
        block_on(assert_resume_exact(|c| nested_of(&shape, c), &stretches));
    }
}

#[test]
fn nested_cursors() {
    let shape: Shape = vec![(0, vec![]), (1, vec![7, 8]), (2, vec![]), (3, vec![9])];
    let all = steps(nested_of(&shape, None));
    let cursors: Vec<_> = all.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        cursors,
        vec![
            NestedCursor {
                outer: Some(1),
                inner: Some(1)
            },
            NestedCursor {
                outer: Some(1),
                inner: Some(2)
            },
            NestedCursor {
                outer: Some(3),
                inner: Some(1)
            },
        ]
    );
    // resuming at the exact end of an inner collection moves on
    let rest = steps(nested_of(&shape, Some(cursors[1].clone())));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, ((3, vec![9]), 9));
    // resuming at the end of everything yields nothing
    assert_eq!(steps(nested_of(&shape, Some(cursors[2].clone()))).len(), 0);
    assert_eq!(roundtrip(&cursors[0]), cursors[0]);
    let _ = assert_send(nested_of(&shape, None));
}

#[test]
fn nested_propagates_errors() {
    let out: Vec<_> = block_on(
        nested(
            |c| range(0..2, c),
            |_: &i64, _: Option<u32>| {
                stream::iter(vec![Err::<(u8, u32), _>(JobError::fatal("inner failed"))])
            },
            None,
        )
        .collect(),
    );
    assert!(
        out[0]
            .as_ref()
            .is_err_and(|e| e.to_string().contains("inner failed"))
    );
}

// ---------------------------------------------------------------------------------
// concat

type Part = Box<dyn Fn(Option<usize>) -> BoxEnumerator<u8, usize> + Send + Sync>;

fn parts_of(lists: &[Vec<u8>]) -> Vec<Part> {
    lists
        .iter()
        .map(|list| {
            let list = list.clone();
            Box::new(move |c| from_vec(list.clone(), c).boxed_enumerator()) as Part
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn concat_resumes_exactly(
        lists in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..5), 0..6),
        stretches in stretches(),
    ) {
        let expected: Vec<u8> = lists.iter().flatten().copied().collect();
        prop_assert_eq!(block_on(collect_all(concat(parts_of(&lists), None))), expected);
        block_on(assert_resume_exact(|c| concat(parts_of(&lists), c), &stretches));
    }
}

#[test]
fn concat_cursors_and_edges() {
    let lists = vec![vec![1], vec![], vec![2, 3]];
    let all = steps(concat(parts_of(&lists), None));
    assert_eq!(
        all,
        vec![
            (
                1,
                ConcatCursor {
                    part: 0,
                    inner: Some(1)
                }
            ),
            (
                2,
                ConcatCursor {
                    part: 2,
                    inner: Some(1)
                }
            ),
            (
                3,
                ConcatCursor {
                    part: 2,
                    inner: Some(2)
                }
            ),
        ]
    );
    assert_eq!(steps(concat(parts_of(&[]), None)), vec![]);
    // a part index past the end yields nothing
    let past = ConcatCursor {
        part: 9,
        inner: None,
    };
    assert_eq!(steps(concat(parts_of(&lists), Some(past))), vec![]);
    // the start of a later part
    let at_part = ConcatCursor {
        part: 2,
        inner: None,
    };
    assert_eq!(steps(concat(parts_of(&lists), Some(at_part))).len(), 2);
    assert_eq!(roundtrip(&all[1].1), all[1].1);
    let _ = assert_send(concat(parts_of(&lists), None));
}

#[test]
fn enumerators_compose() {
    // batches of the lines of two files, one after the other
    let a = write_file(b"a1\na2\n");
    let b = write_file(b"b1\n");
    let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
    type LinePart =
        Box<dyn Fn(Option<FileCursor>) -> BoxEnumerator<String, FileCursor> + Send + Sync>;
    let parts: Vec<LinePart> = vec![
        Box::new(move |c| lines(&pa, FileRange::default(), c).boxed_enumerator()),
        Box::new(move |c| lines(&pb, FileRange::default(), c).boxed_enumerator()),
    ];
    let batches = steps(concat(parts, None).batched(2));
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].0, vec!["b1"]);
    assert_eq!(batches[1].1.part, 1);
    assert_eq!(batches[1].1.inner.map(|c| c.offset()), Some(3));
}
