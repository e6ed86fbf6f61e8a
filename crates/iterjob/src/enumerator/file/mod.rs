//! File enumerators: the lines or CSV records of a (possibly huge) file, resumable by
//! byte offset, optionally restricted to a byte range. Each cursor carries what
//! identifies the file (`fingerprint`), so a resume on a file that was replaced or
//! edited before the cursor fails instead of walking a different file.
//!
//! Both read with blocking `std` I/O through a buffered reader, on the task that polls
//! them: each poll reads at most one record, which for a local file is a memory copy
//! most of the time. Memory stays flat however large the file is (one buffer and one
//! record). For a slow network file system, run the job on a runtime with spare
//! worker threads.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use csv::StringRecord;
use futures::stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Enumerator;
use crate::error::{BoxError, JobError};

mod fingerprint;

use fingerprint::{Change, LastRecord, hash};
pub use fingerprint::{FileCursor, FileFingerprint};

/// Size of the read buffer of the line reader.
const BUFFER_SIZE: usize = 64 * 1024;

/// A byte range of a file, to split one file between several jobs or workers.
///
/// A record (a line, a CSV record) belongs to the range if the offset of its first
/// byte is in `start..end`; the last record of a range may end after `end`. Ranges
/// that meet (`a..b`, `b..c`) therefore enumerate every record of the file exactly once.
///
/// `start` should be a record boundary: 0, or a cursor yielded by the enumerator. If
/// it falls inside a record, that record belongs to the previous range and the range
/// begins at the next record boundary: after the next `\n` for [`lines`], after the
/// next `\n` or `\r` for [`csv_records`]. (A CSV field in quotes may contain line
/// breaks, so for CSV files whose fields do, only cursors are safe split points.) The
/// blank lines the CSV parser skips belong to no record: a CSV record's first byte is
/// its first byte after them.
///
/// The ranges of one file made by
/// [`partition::file_ranges_of`](crate::partition::file_ranges_of) share its
/// [`FileFingerprint`], taken once when they were made: each partition checks the
/// file against it when it starts, so one replaced between the split and a
/// partition's first run is caught, not walked half old, half new.
///
/// The default is the whole file.
///
/// ```
/// use iterjob::enumerator::FileRange;
///
/// assert_eq!(FileRange::default(), FileRange::new(0, None));
/// let first_mib = FileRange::new(0, Some(1 << 20));
/// assert!(first_mib.contains(0) && !first_mib.contains(1 << 20));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRange {
    /// Offset of the first byte of the range.
    pub start: u64,
    /// Offset just past the last byte of the range; `None` for the end of the file.
    pub end: Option<u64>,
    /// The file the range was cut from, checked when a walk of the range starts;
    /// `None`: the walk takes the fingerprint itself when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<FileFingerprint>,
}

impl FileRange {
    /// The bytes `start..end` (`None`: to the end of the file), with no fingerprint.
    pub fn new(start: u64, end: Option<u64>) -> Self {
        FileRange {
            start,
            end,
            fingerprint: None,
        }
    }

    /// The same range, checked against `fingerprint` when a walk of it starts.
    pub fn with_fingerprint(self, fingerprint: FileFingerprint) -> Self {
        FileRange {
            fingerprint: Some(fingerprint),
            ..self
        }
    }

    /// True if a record whose first byte is at `offset` belongs to the range.
    pub fn contains(&self, offset: u64) -> bool {
        offset >= self.start && self.end.is_none_or(|end| offset < end)
    }

    fn end_or_max(&self) -> u64 {
        self.end.unwrap_or(u64::MAX)
    }
}

/// Enumerates the lines of a text file, resumably by byte offset.
///
/// Each item is one line without its line ending (`\n` or `\r\n`; a `\r` not
/// followed by `\n` is kept). Empty lines are items too; a final line without a line
/// ending is an item, and a file ending with a line ending has no empty last line.
/// The cursor yielded with a line is a [`FileCursor`]: the byte offset of the next
/// line, so resuming from it seeks straight there, with the file's fingerprint and a
/// hash of the line. A resume first checks that the file is the one walked so far
/// (grown at its end is fine: a log) — see [`FileFingerprint`].
///
/// Only lines starting in `range` are yielded (see [`FileRange`]). A cursor before
/// `range.start` starts at the range start.
///
/// Errors: a file that cannot be opened, a line that is not UTF-8, or a file that
/// changed since the walk started (replaced, truncated, edited before the cursor) is
/// [`JobError::Fatal`] naming the path and what changed; other read errors are
/// retryable. The enumerator ends after an error.
///
/// The file is read with blocking `std` I/O through a 64 KiB buffer, on the task
/// that polls the enumerator: each poll reads one line, which for a local file is a
/// memory copy most of the time. Memory stays flat however large the file is (one
/// buffer and one line); only the bytes from the cursor on are read.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{FileRange, lines};
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "alpha\r\n\nbeta\ngamma").unwrap();
/// block_on(async {
///     let all: Vec<_> = lines(file.path(), FileRange::default(), None)
///         .map(|s| s.unwrap())
///         .collect()
///         .await;
///     let items: Vec<_> = all.iter().map(|(line, cursor)| (line.as_str(), cursor.offset())).collect();
///     assert_eq!(items, [("alpha", 7), ("", 8), ("beta", 13), ("gamma", 18)]);
///     // resume after "beta"
///     let rest: Vec<_> = lines(file.path(), FileRange::default(), Some(all[2].1))
///         .map(|s| s.unwrap().0)
///         .collect()
///         .await;
///     assert_eq!(rest, vec!["gamma"]);
/// });
/// ```
pub fn lines(
    path: impl Into<PathBuf>,
    range: FileRange,
    cursor: Option<FileCursor>,
) -> impl Enumerator<String, FileCursor> + 'static {
    stream::iter(Lines {
        path: path.into(),
        range,
        cursor,
        reader: None,
        fingerprint: None,
        pos: 0,
        done: false,
    })
}

/// The iterator behind [`lines`].
struct Lines {
    path: PathBuf,
    range: FileRange,
    cursor: Option<FileCursor>,
    reader: Option<BufReader<File>>,
    /// The file's fingerprint, carried by every cursor.
    fingerprint: Option<FileFingerprint>,
    /// Byte offset of the next line.
    pos: u64,
    done: bool,
}

impl Lines {
    /// Opens the file, checks it is the one the walk started on and positions the
    /// reader at the first line to yield.
    fn open(&mut self) -> Result<(), JobError> {
        let mut file = open(&self.path)?;
        self.fingerprint = Some(walk_fingerprint(
            &self.path,
            &mut file,
            &self.range,
            self.cursor.as_ref(),
        )?);
        file.rewind().map_err(|e| read_error(&self.path, 0, e))?;
        let mut reader = BufReader::with_capacity(BUFFER_SIZE, file);
        let start = self.range.start;
        self.pos = match self.cursor {
            Some(cursor) if cursor.offset > start => {
                let offset = cursor.offset;
                match cursor.last {
                    // read the line before the cursor again: the same bytes, ending
                    // at the cursor (a line that had no line ending then may have one
                    // now: only the bytes up to the cursor are compared)
                    Some(last) if last.start < offset => {
                        reader
                            .seek(SeekFrom::Start(last.start))
                            .map_err(|e| read_error(&self.path, last.start, e))?;
                        let mut buf = vec![0; usize::try_from(offset - last.start).unwrap_or(0)];
                        let same = match reader.read_exact(&mut buf) {
                            Ok(()) => hash(&buf) == last.hash,
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
                            Err(e) => return Err(read_error(&self.path, last.start, e)),
                        };
                        if !same {
                            return Err(changed(
                                &self.path,
                                Change::Bytes {
                                    start: last.start,
                                    end: offset,
                                },
                            ));
                        }
                    }
                    _ => {
                        reader
                            .seek(SeekFrom::Start(offset))
                            .map_err(|e| read_error(&self.path, offset, e))?;
                    }
                }
                offset
            }
            _ if start == 0 => 0,
            _ => {
                // The next line boundary at or after `start`: just past the first
                // `\n` from `start - 1` on.
                reader
                    .seek(SeekFrom::Start(start - 1))
                    .map_err(|e| read_error(&self.path, start, e))?;
                let mut skipped = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut skipped)
                    .map_err(|e| read_error(&self.path, start, e))?;
                (start - 1 + n as u64).max(start)
            }
        };
        self.reader = Some(reader);
        Ok(())
    }

    fn read_line(&mut self) -> Option<Result<(String, FileCursor), JobError>> {
        if self.reader.is_none()
            && let Err(err) = self.open()
        {
            return Some(Err(err));
        }
        let reader = self.reader.as_mut()?;
        let line_start = self.pos;
        if line_start >= self.range.end_or_max() {
            return None;
        }
        let mut buf = Vec::new();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(Err(read_error(&self.path, line_start, e))),
        };
        self.pos += n as u64;
        let cursor = FileCursor {
            offset: self.pos,
            file: self.fingerprint,
            last: Some(LastRecord {
                start: line_start,
                hash: hash(&buf),
            }),
        };
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        match String::from_utf8(buf) {
            Ok(line) => Some(Ok((line, cursor))),
            Err(e) => Some(Err(JobError::fatal(FileError::new(
                &self.path,
                format!("line at byte {line_start} is not valid UTF-8"),
                Some(e.utf8_error().into()),
            )))),
        }
    }
}

impl Iterator for Lines {
    type Item = Result<(String, FileCursor), JobError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.read_line();
        if !matches!(step, Some(Ok(_))) {
            self.done = true;
            self.reader = None;
        }
        step
    }
}

/// Enumerates the records of a CSV file, resumably by byte offset.
///
/// Parses with the [`csv`] crate's defaults (comma delimiter, `"` quotes, `\n`, `\r`
/// or `\r\n` line endings; blank lines are skipped; all records must have as many
/// fields as the first). If `has_headers`, the first record of the file is the header
/// row: it is read from the start of the file on every open and never yielded.
///
/// The cursor yielded with a record is a [`FileCursor`]: the byte offset of the next
/// record, so resuming seeks straight there and batching the records with any batch
/// size can neither skip nor repeat a row, with the file's fingerprint and a hash of
/// the record's fields. A resume first checks that the file is the one walked so
/// far (grown at its end is fine) — see [`FileFingerprint`]. (After a record ending in `\r\n` the cursor points
/// at the `\n`: the parser ends the record at the `\r` and skips the `\n` as a blank
/// line when resuming.) Only records starting in `range` are yielded (see
/// [`FileRange`]); a cursor before `range.start` starts at the range start.
///
/// Errors: a file that cannot be opened, a malformed record (unequal field counts,
/// invalid UTF-8) is [`JobError::Fatal`], naming the path and the byte offset of the
/// record, and so is a file that changed since the walk started (replaced,
/// truncated, edited before the cursor), naming what changed; other read errors are
/// retryable. The enumerator ends after an error.
///
/// Each record's [`StringRecord::position`] holds its exact byte offset, but its line
/// and record numbers count from where this run began reading (the csv reader seeks
/// straight to the cursor), so they are exact only when that was the start of the
/// file; error messages give a line number only then.
///
/// The file is read with blocking `std` I/O through the csv reader's buffer, on the
/// task that polls the enumerator, one record per poll. Memory stays flat however
/// large the file is (one buffer and one record); only the header row and the bytes
/// from the cursor on are read.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{FileRange, csv_records};
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "name,note\nada,\"two\nlines\"\nbob,x\n").unwrap();
/// block_on(async {
///     let all: Vec<_> = csv_records(file.path(), FileRange::default(), None, true)
///         .map(|s| s.unwrap())
///         .collect()
///         .await;
///     assert_eq!(all.len(), 2);
///     assert_eq!(all[0].0, vec!["ada", "two\nlines"]);
///     let after_ada = all[0].1;
///     // resume after "ada"; the header is still read (and skipped)
///     let rest: Vec<_> = csv_records(file.path(), FileRange::default(), Some(after_ada), true)
///         .map(|s| s.unwrap().0)
///         .collect()
///         .await;
///     assert_eq!(rest, vec![all[1].0.clone()]);
/// });
/// ```
pub fn csv_records(
    path: impl Into<PathBuf>,
    range: FileRange,
    cursor: Option<FileCursor>,
    has_headers: bool,
) -> impl Enumerator<StringRecord, FileCursor> + 'static {
    stream::iter(CsvRows::new(
        path.into(),
        range,
        cursor,
        has_headers,
        |record, _| Ok(record),
    ))
}

/// Enumerates the records of a CSV file deserialized into `T`, resumably by byte
/// offset.
///
/// Like [`csv_records`] (same cursor, range and header handling), but each record is
/// deserialized with [`StringRecord::deserialize`]: by header name if `has_headers`
/// (so `T` is typically a struct deriving `Deserialize`), by position otherwise
/// (a tuple, for example). A record that does not deserialize is a
/// [`JobError::Fatal`] naming the path and the byte offset of the record.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{FileRange, csv_deserialize};
///
/// #[derive(Debug, PartialEq, serde::Deserialize)]
/// struct Row {
///     id: u32,
///     name: String,
/// }
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "id,name\n1,ada\n2,bob\n").unwrap();
/// block_on(async {
///     let rows: Vec<Row> = csv_deserialize(file.path(), FileRange::default(), None, true)
///         .map(|s| s.unwrap().0)
///         .collect()
///         .await;
///     assert_eq!(rows[1], Row { id: 2, name: "bob".into() });
/// });
/// ```
pub fn csv_deserialize<T>(
    path: impl Into<PathBuf>,
    range: FileRange,
    cursor: Option<FileCursor>,
    has_headers: bool,
) -> impl Enumerator<T, FileCursor> + 'static
where
    T: DeserializeOwned + Send + 'static,
{
    stream::iter(CsvRows::new(
        path.into(),
        range,
        cursor,
        has_headers,
        |record: StringRecord, headers: Option<&StringRecord>| record.deserialize(headers),
    ))
}

/// Turns a parsed record into an item.
type Decode<T> = fn(StringRecord, Option<&StringRecord>) -> Result<T, csv::Error>;

/// The iterator behind [`csv_records`] and [`csv_deserialize`].
struct CsvRows<T> {
    path: PathBuf,
    range: FileRange,
    cursor: Option<FileCursor>,
    /// The file's fingerprint, carried by every cursor.
    fingerprint: Option<FileFingerprint>,
    has_headers: bool,
    decode: Decode<T>,
    reader: Option<csv::Reader<File>>,
    headers: Option<StringRecord>,
    /// True if the reader's line numbers are right (it read from the file start).
    lines_exact: bool,
    done: bool,
}

impl<T> CsvRows<T> {
    fn new(
        path: PathBuf,
        range: FileRange,
        cursor: Option<FileCursor>,
        has_headers: bool,
        decode: Decode<T>,
    ) -> Self {
        CsvRows {
            path,
            range,
            cursor,
            fingerprint: None,
            has_headers,
            decode,
            reader: None,
            headers: None,
            lines_exact: true,
            done: false,
        }
    }

    /// Opens the file, checks it is the one the walk started on, reads the header row
    /// and seeks to the first record to yield.
    fn open(&mut self) -> Result<(), JobError> {
        let mut file = open(&self.path)?;
        self.fingerprint = Some(walk_fingerprint(
            &self.path,
            &mut file,
            &self.range,
            self.cursor.as_ref(),
        )?);
        let start = self.range.start;
        // resuming after a record: read that record again first, to check it
        let mut check = None;
        let mut from = match self.cursor {
            Some(cursor) if cursor.offset > start => match cursor.last {
                Some(last) if last.start < cursor.offset => {
                    check = Some((last, cursor.offset));
                    last.start
                }
                _ => cursor.offset,
            },
            _ => {
                next_csv_boundary(&mut file, start).map_err(|e| read_error(&self.path, start, e))?
            }
        };
        file.rewind().map_err(|e| read_error(&self.path, 0, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(self.has_headers)
            .from_reader(file);
        if self.has_headers {
            let headers = reader.headers().map_err(|e| self.csv_error(0, e))?.clone();
            self.headers = Some(headers);
            from = from.max(reader.position().byte());
        }
        if self.has_headers || from > 0 {
            let mut pos = reader.position().clone();
            if pos.byte() != from {
                self.lines_exact = from == 0;
                if from == 0 {
                    pos = csv::Position::new();
                } else {
                    pos.set_byte(from);
                }
            }
            reader.seek(pos).map_err(|e| self.csv_error(from, e))?;
        }
        if let Some((last, offset)) = check {
            self.check_last_record(&mut reader, last, offset)?;
        }
        self.reader = Some(reader);
        Ok(())
    }

    /// Reads the record the cursor follows again (the reader stands at its start) and
    /// checks it has the same fields and ends at the cursor (or only line endings lie
    /// between its end and the cursor, when it was the file's last record without one
    /// and the file grew since).
    fn check_last_record(
        &self,
        reader: &mut csv::Reader<File>,
        last: LastRecord,
        offset: u64,
    ) -> Result<(), JobError> {
        let moved = || {
            changed(
                &self.path,
                Change::Bytes {
                    start: last.start,
                    end: offset,
                },
            )
        };
        let mut record = StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Err(moved()),
            Err(e) if e.is_io_error() => return Err(self.csv_error(last.start, e)),
            // no longer a record there, or not one like those around it
            Err(_) => return Err(moved()),
        }
        let end = reader.position().byte();
        if record_hash(&record) != last.hash || end < offset {
            return Err(moved());
        }
        if end > offset {
            // read on a handle of its own: the reader's file position is its buffer's
            let between = File::open(&self.path)
                .and_then(|mut file| fingerprint::read_at(&mut file, offset, end - offset))
                .map_err(|e| read_error(&self.path, offset, e))?;
            if !between.is_some_and(|b| b.iter().all(|&c| c == b'\n' || c == b'\r')) {
                return Err(moved());
            }
        }
        Ok(())
    }

    fn read_record(&mut self) -> Option<Result<(T, FileCursor), JobError>> {
        if self.reader.is_none()
            && let Err(err) = self.open()
        {
            return Some(Err(err));
        }
        let end = self.range.end_or_max();
        let reader = self.reader.as_mut()?;
        let record_pos = reader.position().byte();
        if record_pos >= end {
            return None;
        }
        let mut record = StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(self.csv_error(record_pos, e))),
        }
        let next = reader.position().byte();
        if next > end {
            // The record straddles the end of the range: it belongs to the range if
            // its first byte, after any blank lines before it, is in it.
            match first_record_byte(&self.path, record_pos) {
                Ok(first) if first >= end => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(read_error(&self.path, record_pos, e))),
            }
        }
        let cursor = FileCursor {
            offset: next,
            file: self.fingerprint,
            last: Some(LastRecord {
                start: record_pos,
                hash: record_hash(&record),
            }),
        };
        match (self.decode)(record, self.headers.as_ref()) {
            Ok(item) => Some(Ok((item, cursor))),
            Err(e) => Some(Err(self.csv_error(record_pos, e))),
        }
    }

    /// A CSV error while reading at `offset`: I/O errors are retryable, the rest
    /// (malformed data) fatal.
    fn csv_error(&self, offset: u64, e: csv::Error) -> JobError {
        if e.is_io_error() {
            let csv::ErrorKind::Io(io) = e.into_kind() else {
                unreachable!("is_io_error")
            };
            return read_error(&self.path, offset, io);
        }
        let line = match e.position() {
            Some(p) if self.lines_exact => format!(" (line {})", p.line()),
            _ => String::new(),
        };
        let what = match e.kind() {
            csv::ErrorKind::Deserialize { .. } => "does not deserialize",
            _ => "is malformed",
        };
        JobError::fatal(FileError::new(
            &self.path,
            format!("CSV record at byte {offset}{line} {what}"),
            Some(csv_error_detail(e)),
        ))
    }
}

impl<T> Iterator for CsvRows<T> {
    type Item = Result<(T, FileCursor), JobError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.read_record();
        if !matches!(step, Some(Ok(_))) {
            self.done = true;
            self.reader = None;
        }
        step
    }
}

/// The part of a CSV error that does not repeat its position (which is given by the
/// caller, and whose line number may be counted from a seek point).
fn csv_error_detail(e: csv::Error) -> BoxError {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => err.to_string().into(),
        csv::ErrorKind::Deserialize { err, .. } => err.to_string().into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "found a record with {len} fields, but the previous record has {expected_len} fields"
        )
        .into(),
        _ => Box::new(e),
    }
}

/// The next CSV record boundary at or after `start`: `start` itself if it is 0 or
/// follows a `\n` or `\r`, otherwise just past the next `\n` or `\r`.
fn next_csv_boundary(file: &mut File, start: u64) -> io::Result<u64> {
    if start == 0 {
        return Ok(0);
    }
    file.seek(SeekFrom::Start(start - 1))?;
    let mut reader = BufReader::with_capacity(8 * 1024, file);
    let mut offset = start - 1;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(offset.max(start));
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            return Ok((offset + i as u64 + 1).max(start));
        }
        let n = buf.len();
        offset += n as u64;
        reader.consume(n);
    }
}

/// The offset of the first byte at or after `offset` that is not a line ending: where
/// the record the CSV reader reports at `offset` really starts (it skips blank lines).
fn first_record_byte(path: &Path, offset: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(8 * 1024, file);
    let mut first = offset;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(first);
        }
        if let Some(i) = buf.iter().position(|&b| b != b'\n' && b != b'\r') {
            return Ok(first + i as u64);
        }
        let n = buf.len();
        first += n as u64;
        reader.consume(n);
    }
}

/// Hash of a CSV record's fields: of their bytes one after the other, then of that
/// and their lengths (so `a,bc` and `ab,c` differ), without allocating.
fn record_hash(record: &StringRecord) -> u64 {
    let bytes = hash(record.as_slice().as_bytes());
    let lengths = record.iter().fold(record.len() as u64, |acc, field| {
        acc.wrapping_mul(0x0000_0100_0000_01b3) ^ field.len() as u64
    });
    let mut both = [0u8; 16];
    both[..8].copy_from_slice(&bytes.to_le_bytes());
    both[8..].copy_from_slice(&lengths.to_le_bytes());
    hash(&both)
}

/// Checks the open file against what the walk knows of it (the cursor's fingerprint,
/// or the range's) and returns the fingerprint its cursors carry: the known one, or
/// one taken now when the walk has none yet.
fn walk_fingerprint(
    path: &Path,
    file: &mut File,
    range: &FileRange,
    cursor: Option<&FileCursor>,
) -> Result<FileFingerprint, JobError> {
    let known = match (cursor.and_then(|c| c.file), range.fingerprint) {
        (Some(walked), Some(cut)) if walked != cut => {
            return Err(JobError::fatal(FileError::new(
                path,
                format!(
                    "the cursor was saved walking a different file than the one the range \
                     was cut from ({} bytes then, the range's file {} bytes): the cursor and \
                     the range do not belong together; resume each partition with its own \
                     cursor, or enqueue a new job",
                    walked.size(),
                    cut.size()
                ),
                None,
            )));
        }
        (walked, cut) => walked.or(cut),
    };
    match known {
        Some(fingerprint) => match fingerprint.check(file) {
            Ok(None) => Ok(fingerprint),
            Ok(Some(change)) => Err(changed(path, change)),
            Err(e) => Err(read_error(path, 0, e)),
        },
        None => FileFingerprint::read(file).map_err(|e| read_error(path, 0, e)),
    }
}

/// The fatal error of a file that changed since the walk started.
fn changed(path: &Path, change: Change) -> JobError {
    let what = match change {
        Change::Shorter { now, then } => format!(
            "it is {now} bytes long, shorter than the {then} bytes it had when the walk started: \
             it was truncated or replaced"
        ),
        Change::Bytes { start, end } => format!(
            "bytes {start}..{end} are not those the walk read there: the file was replaced, \
             or edited before the cursor"
        ),
    };
    JobError::fatal(FileError::new(
        path,
        format!(
            "changed since the walk started: {what}. Resuming would skip or repeat records, \
             so the walk stops here. Enqueue a new job for the file as it is now (a file that \
             only grows at its end, like a log, resumes normally)"
        ),
        None,
    ))
}

/// Opens a file for an enumerator; failing to is fatal (a retry will not create it).
fn open(path: &Path) -> Result<File, JobError> {
    File::open(path).map_err(|e| {
        JobError::fatal(FileError::new(
            path,
            "cannot open file".into(),
            Some(e.into()),
        ))
    })
}

/// A read error at `offset`: retryable, as I/O errors often are transient.
fn read_error(path: &Path, offset: u64, e: io::Error) -> JobError {
    JobError::retryable(FileError::new(
        path,
        format!("read failed at byte {offset}"),
        Some(e.into()),
    ))
}

/// An error reading a file: the path, what failed, and why.
#[derive(Debug)]
struct FileError {
    path: PathBuf,
    what: String,
    source: Option<BoxError>,
}

impl FileError {
    fn new(path: &Path, what: String, source: Option<BoxError>) -> Self {
        FileError {
            path: path.to_path_buf(),
            what,
            source,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use futures::executor::block_on;

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Row {
        id: u32,
        name: String,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn csv_deserialize_by_header_and_resume() {
        let file = write("name,id\nada,1\nbob,2\n");
        let all: Vec<(Row, FileCursor)> = block_on(
            csv_deserialize(file.path(), FileRange::default(), None, true)
                .map(|s| s.unwrap())
                .collect(),
        );
        let rows: Vec<(&str, u64)> = all
            .iter()
            .map(|(row, cursor)| (row.name.as_str(), cursor.offset()))
            .collect();
        assert_eq!(rows, [("ada", 14), ("bob", 20)]);
        let rest: Vec<(Row, FileCursor)> = block_on(
            csv_deserialize(file.path(), FileRange::default(), Some(all[0].1), true)
                .map(|s| s.unwrap())
                .collect(),
        );
        assert_eq!(rest, all[1..]);
    }

    #[test]
    fn csv_deserialize_by_position() {
        let file = write("1,a\n2,b");
        let all: Vec<(u8, String)> = block_on(
            csv_deserialize(file.path(), FileRange::default(), None, false)
                .map(|s| s.unwrap().0)
                .collect(),
        );
        assert_eq!(all, vec![(1, "a".into()), (2, "b".into())]);
    }

    #[test]
    fn csv_deserialize_error_is_fatal_and_names_the_offset() {
        let file = write("id,name\n1,ada\nx,bob\n");
        let steps: Vec<_> = block_on(
            csv_deserialize::<Row>(file.path(), FileRange::default(), None, true).collect(),
        );
        assert_eq!(steps.len(), 2, "the enumerator ends after the error");
        let err = steps[1].as_ref().unwrap_err();
        assert!(err.is_fatal());
        let message = err.to_string();
        assert!(
            message.contains("byte 14 (line 3) does not deserialize"),
            "{message}"
        );
        assert!(message.contains("field 0"), "{message}");

        // resumed from a cursor: the byte offset is exact (and so is the line here,
        // as the check of the record before the cursor starts right after the header)
        let after_ada = steps[0].as_ref().unwrap().1;
        let steps: Vec<_> = block_on(
            csv_deserialize::<Row>(file.path(), FileRange::default(), Some(after_ada), true)
                .collect(),
        );
        let message = steps[0].as_ref().unwrap_err().to_string();
        assert!(
            message.contains("byte 14 (line 3) does not deserialize"),
            "{message}"
        );
        // from a cursor further in, line numbers would count from the seek: none given
        let file = write("id,name\n1,ada\n2,bob\nx,cid\n");
        let steps: Vec<_> = block_on(
            csv_deserialize::<Row>(file.path(), FileRange::default(), None, true).collect(),
        );
        let after_bob = steps[1].as_ref().unwrap().1;
        let steps: Vec<_> = block_on(
            csv_deserialize::<Row>(file.path(), FileRange::default(), Some(after_bob), true)
                .collect(),
        );
        let message = steps[0].as_ref().unwrap_err().to_string();
        assert!(
            message.contains("byte 20 does not deserialize"),
            "{message}"
        );
    }
}
