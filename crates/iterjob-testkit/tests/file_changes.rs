//! Files changed between two runs of a walk: replaced, edited before the cursor or
//! truncated, the resume is refused with a fatal error naming the file; grown at its
//! end, it resumes exactly. For `lines`, `csv_records`, `csv_deserialize` and
//! byte-range partitions, with every cursor passed through JSON as a checkpoint is.

use std::path::Path;

use futures::StreamExt;
use futures::executor::block_on;
use iterjob::JobError;
use iterjob::enumerator::{
    BoxEnumerator, EnumeratorExt, FileCursor, FileRange, csv_deserialize, csv_records, lines,
};
use iterjob::partition::{file_ranges_of, split_file_range};

#[derive(Clone, Copy, Debug)]
enum Walker {
    Lines,
    CsvRecords,
    CsvDeserialize,
}

const WALKERS: [Walker; 3] = [Walker::Lines, Walker::CsvRecords, Walker::CsvDeserialize];

#[derive(serde::Deserialize)]
struct Row {
    id: i64,
    name: String,
}

/// The walker's enumerator, its items as text.
fn enumerator(
    walker: Walker,
    path: &Path,
    range: FileRange,
    cursor: Option<FileCursor>,
) -> BoxEnumerator<String, FileCursor> {
    match walker {
        Walker::Lines => lines(path, range, cursor).boxed_enumerator(),
        Walker::CsvRecords => csv_records(path, range, cursor, true)
            .map(|step| step.map(|(record, c)| (record.iter().collect::<Vec<_>>().join(","), c)))
            .boxed_enumerator(),
        Walker::CsvDeserialize => csv_deserialize::<Row>(path, range, cursor, true)
            .map(|step| step.map(|(row, c)| (format!("{},{}", row.id, row.name), c)))
            .boxed_enumerator(),
    }
}

/// Walks up to `limit` items; the items, the last cursor (through JSON) and the error
/// that ended the walk, if one did.
fn walk(
    walker: Walker,
    path: &Path,
    range: FileRange,
    cursor: Option<FileCursor>,
    limit: usize,
) -> (Vec<String>, Option<FileCursor>, Option<JobError>) {
    let steps: Vec<_> = block_on(
        enumerator(walker, path, range, cursor)
            .take(limit)
            .collect(),
    );
    let (mut items, mut last, mut error) = (Vec::new(), cursor, None);
    for step in steps {
        match step {
            Ok((item, c)) => {
                items.push(item);
                let json = serde_json::to_string(&c).unwrap();
                last = Some(serde_json::from_str(&json).unwrap());
            }
            Err(e) => error = Some(e),
        }
    }
    (items, last, error)
}

/// A CSV export of `ids`.
fn export(ids: impl IntoIterator<Item = i64>) -> String {
    let mut text = String::from("id,name\n");
    for id in ids {
        text.push_str(&format!("{id},name{id}\n"));
    }
    text
}

/// Replaces the file as an export job does: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, path).unwrap();
}

fn assert_refused(error: Option<JobError>, path: &Path, case: &str) {
    let error = error.unwrap_or_else(|| panic!("{case}: the resume was not refused"));
    assert!(error.is_fatal(), "{case}: {error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "{case}: {message}"
    );
    assert!(
        message.contains("changed since the walk started"),
        "{case}: {message}"
    );
}

/// Every walker, a large (24 KB) and a small (under 4 KiB) file, stopped after the
/// first item, in the middle and before the last: each change between the two runs
/// is refused, or resumed exactly when the file only grew.
#[test]
fn changed_files_are_refused_and_grown_files_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    for rows in [2000i64, 20] {
        let original = export(0..rows);
        let cases: Vec<(&str, String, bool)> = vec![
            // (what happened, the file at the resume, resumes?)
            ("appended", export(0..rows + 50), true),
            ("rewritten, same bytes", original.clone(), true),
            (
                "replaced: 500 rows inserted at the top",
                export(-500..rows),
                false,
            ),
            (
                "edited before the cursor: a row made longer",
                original.replacen("\n1,name1\n", "\n1,name1-renamed\n", 1),
                false,
            ),
            (
                "edited before the cursor: a row removed",
                original.replacen("\n1,name1\n", "\n", 1),
                false,
            ),
            (
                "truncated: the last row cut off",
                export(0..rows - 1),
                false,
            ),
            ("truncated: emptied", String::new(), false),
        ];
        for walker in WALKERS {
            std::fs::write(&path, &original).unwrap();
            let everything = walk(walker, &path, FileRange::default(), None, usize::MAX).0;
            let n = everything.len();
            for stop in [3, n / 2, n - 1] {
                for (case, changed, resumes) in &cases {
                    let case = format!("{walker:?}, {rows} rows, stopped after {stop}: {case}");
                    std::fs::write(&path, &original).unwrap();
                    let (first, cursor, error) =
                        walk(walker, &path, FileRange::default(), None, stop);
                    assert!(error.is_none(), "{case}: {error:?}");
                    assert_eq!(first, everything[..stop], "{case}");
                    replace(&path, changed);
                    let (rest, _, error) =
                        walk(walker, &path, FileRange::default(), cursor, usize::MAX);
                    if *resumes {
                        assert!(error.is_none(), "{case}: {error:?}");
                        let now = walk(walker, &path, FileRange::default(), None, usize::MAX).0;
                        assert_eq!([first, rest].concat(), now, "{case}");
                    } else {
                        assert!(rest.is_empty(), "{case}: walked {rest:?} first");
                        assert_refused(error, &path, &case);
                    }
                }
            }
        }
    }
}

/// A row edited in place after the cursor is simply read as it is now: the walk has
/// not seen it yet, so nothing is skipped or repeated. An edit after the cursor that
/// changes the length moves the file's old last bytes, and the check errs on the side
/// of stopping (documented on `FileFingerprint`).
#[test]
fn edits_after_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    let original = export(0..2000);
    for walker in WALKERS {
        std::fs::write(&path, &original).unwrap();
        let (first, cursor, _) = walk(walker, &path, FileRange::default(), None, 100);
        let edited = original.replacen("\n1000,name1000\n", "\n1000,NAME1000\n", 1);
        replace(&path, &edited);
        let (rest, _, error) = walk(walker, &path, FileRange::default(), cursor, usize::MAX);
        assert!(error.is_none(), "{walker:?}: {error:?}");
        let now = walk(walker, &path, FileRange::default(), None, usize::MAX).0;
        assert_eq!([first, rest].concat(), now, "{walker:?}");
        assert!(now.iter().any(|item| item.ends_with("NAME1000")));

        std::fs::write(&path, &original).unwrap();
        let (_, cursor, _) = walk(walker, &path, FileRange::default(), None, 100);
        let longer = original.replacen("\n1000,name1000\n", "\n1000,name1000-renamed\n", 1);
        replace(&path, &longer);
        let (rest, _, error) = walk(walker, &path, FileRange::default(), cursor, usize::MAX);
        assert!(rest.is_empty());
        assert_refused(
            error,
            &path,
            &format!("{walker:?}: a longer row after the cursor"),
        );
    }
}

/// A log whose last line had no line ending yet when the walk stopped, then grew:
/// the resume goes on (the line's bytes up to the cursor are unchanged).
#[test]
fn a_file_whose_last_line_was_unfinished_grows_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "one\ntwo").unwrap();
    let (first, cursor, _) = walk(Walker::Lines, &path, FileRange::default(), None, 10);
    assert_eq!(first, ["one", "two"]);
    std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
    let (rest, _, error) = walk(Walker::Lines, &path, FileRange::default(), cursor, 10);
    assert!(error.is_none(), "{error:?}");
    // the line ending that finished "two" reads as an empty line, as documented
    assert_eq!(rest, ["", "three"]);
    // the same for CSV: the record is not read again
    std::fs::write(&path, "id,name\n1,a\n2,b").unwrap();
    let (first, cursor, _) = walk(Walker::CsvRecords, &path, FileRange::default(), None, 10);
    assert_eq!(first, ["1,a", "2,b"]);
    std::fs::write(&path, "id,name\n1,a\n2,b\n3,c\n").unwrap();
    let (rest, _, error) = walk(Walker::CsvRecords, &path, FileRange::default(), cursor, 10);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(rest, ["3,c"]);
    // but a record that grew fields is a changed record
    std::fs::write(&path, "id,name\n1,a\n2,b").unwrap();
    let (_, cursor, _) = walk(Walker::CsvRecords, &path, FileRange::default(), None, 10);
    std::fs::write(&path, "id,name\n1,a\n2,bee\n3,c\n").unwrap();
    let (rest, _, error) = walk(Walker::CsvRecords, &path, FileRange::default(), cursor, 10);
    assert!(rest.is_empty());
    assert_refused(error, &path, "a record that grew");
}

/// Byte-range partitions share the fingerprint taken when they were cut: a file
/// replaced before a partition's first run is refused there too; a file that grew is
/// walked exactly once across the partitions, appended rows by the last one; a split
/// partition's new half checks the same file.
#[test]
fn partitions_share_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    let original = export(0..3000);
    for walker in WALKERS {
        // grown between runs: every row once
        std::fs::write(&path, &original).unwrap();
        let ranges = file_ranges_of(&path, 3).unwrap();
        assert!(
            ranges
                .iter()
                .all(|r| r.fingerprint == ranges[0].fingerprint)
        );
        assert!(ranges[0].fingerprint.is_some());
        let (mut all, cursor, _) = walk(walker, &path, ranges[0], None, 200);
        replace(&path, &export(0..3100));
        let (rest, _, error) = walk(walker, &path, ranges[0], cursor, usize::MAX);
        assert!(error.is_none(), "{walker:?}: {error:?}");
        all.extend(rest);
        for range in &ranges[1..] {
            let (items, _, error) = walk(walker, &path, *range, None, usize::MAX);
            assert!(error.is_none(), "{walker:?}: {error:?}");
            all.extend(items);
        }
        let now = walk(walker, &path, FileRange::default(), None, usize::MAX).0;
        assert_eq!(all, now, "{walker:?}: grown file across partitions");

        // replaced after the cut: a partition that never ran is refused at its start,
        // one with a cursor at its resume
        std::fs::write(&path, &original).unwrap();
        let ranges = file_ranges_of(&path, 3).unwrap();
        let (_, cursor, _) = walk(walker, &path, ranges[0], None, 200);
        replace(&path, &export(-500..3000));
        let (items, _, error) = walk(walker, &path, ranges[1], None, usize::MAX);
        assert!(items.is_empty());
        assert_refused(
            error,
            &path,
            &format!("{walker:?}: partition 1's first run"),
        );
        let (items, _, error) = walk(walker, &path, ranges[0], cursor, usize::MAX);
        assert!(items.is_empty());
        assert_refused(error, &path, &format!("{walker:?}: partition 0's resume"));

        // a dynamic split: keep and give together are the rest of the partition, and
        // the given half checks the file it was cut from
        std::fs::write(&path, &original).unwrap();
        let ranges = file_ranges_of(&path, 2).unwrap();
        let whole = walk(walker, &path, ranges[0], None, usize::MAX).0;
        let (done, cursor, _) = walk(walker, &path, ranges[0], None, 100);
        let len = std::fs::metadata(&path).unwrap().len();
        let (keep, give) = split_file_range(&ranges[0], len, cursor.as_ref(), 1).unwrap();
        assert_eq!(give.fingerprint, ranges[0].fingerprint);
        let kept = walk(walker, &path, keep, cursor, usize::MAX).0;
        let given = walk(walker, &path, give, None, usize::MAX).0;
        assert_eq!([done, kept, given].concat(), whole, "{walker:?}: split");
        replace(&path, &export(-10..3000));
        let (items, _, error) = walk(walker, &path, give, None, usize::MAX);
        assert!(items.is_empty());
        assert_refused(error, &path, &format!("{walker:?}: the given half"));
    }
}

/// An unpartitioned walk split for the first time: the new half takes the
/// fingerprint the cursor carries.
#[test]
fn a_split_without_a_range_fingerprint_takes_the_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    std::fs::write(&path, export(0..3000)).unwrap();
    let (_, cursor, _) = walk(Walker::Lines, &path, FileRange::default(), None, 100);
    let cursor = cursor.unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let (keep, give) = split_file_range(&FileRange::default(), len, Some(&cursor), 1).unwrap();
    assert_eq!(give.fingerprint.as_ref(), cursor.file());
    assert_eq!(keep.fingerprint.as_ref(), cursor.file());
    replace(&path, &export(1..3000));
    let (_, _, error) = walk(Walker::Lines, &path, give, None, usize::MAX);
    assert_refused(error, &path, "the given half of an unpartitioned walk");
}

/// A cursor saved before cursors carried a fingerprint (a bare byte offset) resumes
/// unchecked, and the cursors after it carry one.
#[test]
fn a_bare_offset_cursor_resumes_and_gains_a_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    std::fs::write(&path, "a\nb\nc\n").unwrap();
    let cursor: FileCursor = serde_json::from_str("2").unwrap();
    assert!(cursor.file().is_none());
    let (items, last, error) = walk(Walker::Lines, &path, FileRange::default(), Some(cursor), 1);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(items, ["b"]);
    assert!(last.unwrap().file().is_some());
    // and a cursor that is no cursor at all is a clear deserialization error
    let err = serde_json::from_str::<FileCursor>(r#""end""#).unwrap_err();
    assert!(err.to_string().contains("a file cursor"), "{err}");
}
