//! What a file walk remembers of its file between runs: a [`FileFingerprint`] taken
//! when the walk starts, and with every cursor a hash of the record read last.
//!
//! See [`FileFingerprint`] for what is checked and why it is enough.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The 64-bit hash of a stretch of bytes that cursors and fingerprints keep: rapidhash
/// V3, whose output its crate keeps stable across versions and platforms, so a cursor
/// saved on one machine checks on another. (CRC-64 from the `crc` crate was measured
/// first: it took the `lines` walk from 0.78x to 0.55x of a raw `read_until` loop;
/// BENCHMARKS.md.)
pub(super) fn hash(bytes: &[u8]) -> u64 {
    rapidhash::v3::rapidhash_v3(bytes)
}

/// Bytes read at the start and at the end of a file for its fingerprint.
pub(super) const WINDOW: u64 = 4096;

/// What identifies a file for a walk: its size when the walk started and hashes of
/// its first and last 4 KiB then.
///
/// Taken by the file enumerators when a walk starts without one, carried in every
/// [`FileCursor`], and shared by the byte-range partitions of one file when they are
/// made by [`partition::file_ranges_of`](crate::partition::file_ranges_of).
///
/// # What is checked, and why it is enough
///
/// A file walk's promise is that the records after the cursor are exactly the ones it
/// has not yet walked. That breaks when bytes before the cursor move (lines inserted
/// or removed above it: a new export under the same name, an editor rewriting the
/// file) or when the file loses bytes (truncated, replaced by a shorter one). It does
/// not break when the file only grows at its end (a log, an export still being
/// written), nor when bytes before the cursor change in place without moving (the
/// records after the cursor are where they were; the changed ones were already walked
/// in their old form, as rows of a table edited behind a keyset walk would be).
///
/// So a resume checks, on the file as it is now:
///
/// * its size is at least the size it had when the walk started (else: truncated or
///   replaced);
/// * its first 4 KiB and the 4 KiB that ended it then are unchanged (a 64-bit hash
///   of each): an insertion or a removal anywhere before the old end moves those last
///   bytes, a replaced file differs at its start;
/// * the record just before the cursor reads the same (a hash of its bytes, or of its
///   fields for CSV), which also covers a walk that went on into bytes appended after
///   the start.
///
/// That reads three short stretches of the file whatever its size. What it cannot see
/// is a change of bytes that neither moves the old end nor touches the checked
/// stretches — an in-place edit of the same length, which the walk's promise survives
/// — or a file rewritten with different content that happens to agree with it on all
/// three stretches, which a 64-bit hash makes unlikely (about one in 2^64) but not impossible; a job that
/// must rule that out should name each export by its own file.
///
/// It errs on the side of stopping: an edit *after* the cursor that changes the
/// length of the file's old part moves its old last bytes too, and is refused,
/// although resuming would have been exact (the check cannot tell where the move
/// began). An in-place edit after the cursor outside the old last 4 KiB is walked as
/// it is now.
///
/// ```
/// use iterjob::enumerator::FileFingerprint;
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "alpha\nbeta\n").unwrap();
/// let before = FileFingerprint::of(file.path()).unwrap();
/// assert_eq!(before.size(), 11);
/// std::fs::write(file.path(), "alpha\nbeta\ngamma\n").unwrap(); // appended: the same file, grown
/// assert!(before.matches(file.path()).unwrap());
/// std::fs::write(file.path(), "new\nalpha\nbeta\ngamma\n").unwrap(); // a line inserted at the top
/// assert!(!before.matches(file.path()).unwrap());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// The file's size in bytes when the fingerprint was taken.
    size: u64,
    /// Hash of bytes `0..min(size, WINDOW)`.
    #[serde(with = "hex64")]
    head: u64,
    /// Hash of bytes `size - min(size, WINDOW)..size`.
    #[serde(with = "hex64")]
    tail: u64,
}

/// How a file differs from its fingerprint (or from the record before a cursor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// The file is shorter than it was.
    Shorter { now: u64, then: u64 },
    /// Bytes `start..end` are not the ones the walk saw there.
    Bytes { start: u64, end: u64 },
}

impl FileFingerprint {
    /// Takes the fingerprint of the file at `path` as it is now.
    pub fn of(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::read(&mut File::open(path)?)
    }

    /// True if the file at `path` is the file this fingerprint was taken of, or that
    /// file grown at its end (see above for what is compared).
    pub fn matches(&self, path: impl AsRef<Path>) -> io::Result<bool> {
        Ok(self.check(&mut File::open(path)?)?.is_none())
    }

    /// The file's size in bytes when the fingerprint was taken.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Takes the fingerprint of an open file.
    pub(super) fn read(file: &mut File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        let window = size.min(WINDOW);
        let head = read_at(file, 0, window)?;
        let tail = read_at(file, size - window, window)?;
        // a file that shrank between the size and the reads: read it again
        match (head, tail) {
            (Some(head), Some(tail)) => Ok(FileFingerprint {
                size,
                head: hash(&head),
                tail: hash(&tail),
            }),
            _ => Self::read(file),
        }
    }

    /// Compares an open file with the fingerprint: `None` if it is the same file,
    /// possibly grown.
    pub(super) fn check(&self, file: &mut File) -> io::Result<Option<Change>> {
        let now = file.metadata()?.len();
        let shorter = Change::Shorter {
            now,
            then: self.size,
        };
        if now < self.size {
            return Ok(Some(shorter));
        }
        let window = self.size.min(WINDOW);
        let Some(head) = read_at(file, 0, window)? else {
            return Ok(Some(shorter));
        };
        if hash(&head) != self.head {
            return Ok(Some(Change::Bytes {
                start: 0,
                end: window,
            }));
        }
        let start = self.size - window;
        let Some(tail) = read_at(file, start, window)? else {
            return Ok(Some(shorter));
        };
        if hash(&tail) != self.tail {
            return Ok(Some(Change::Bytes {
                start,
                end: self.size,
            }));
        }
        Ok(None)
    }
}

/// Reads `len` bytes at `start`; `None` if the file ends before.
pub(super) fn read_at(file: &mut File, start: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    match file.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The record a cursor follows: where it starts and a hash of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct LastRecord {
    /// Offset of the record's first byte (for CSV: where the reader stood before it,
    /// blank lines included).
    pub(super) start: u64,
    /// Hash of the record: of its bytes for lines, of its fields for CSV.
    #[serde(with = "hex64")]
    pub(super) hash: u64,
}

/// Where a file walk stands: the byte offset of the next record, the fingerprint of
/// the file being walked and a hash of the record just walked.
///
/// The cursor of [`lines`](super::lines), [`csv_records`](super::csv_records) and
/// [`csv_deserialize`](super::csv_deserialize). Resuming from it checks that the file
/// is still the one walked so far (grown at its end is fine) and ends the walk with a
/// fatal error naming the file and what changed otherwise, before any record is
/// yielded.
///
/// In JSON it is `{"offset": 123, "file": {…}, "last": {…}}`. A bare number, the
/// cursor of earlier versions, reads as [`FileCursor::unchecked`], so a job saved by
/// them resumes (with nothing to check it by) and carries a fingerprint from then on.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use iterjob::enumerator::{FileRange, lines};
///
/// let file = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(file.path(), "alpha\nbeta\n").unwrap();
/// let first = block_on(lines(file.path(), FileRange::default(), None).next()).unwrap().unwrap();
/// let cursor = first.1;
/// assert_eq!(cursor.offset(), 6);
/// // a new export under the same name, a line inserted at the top
/// std::fs::write(file.path(), "new\nalpha\nbeta\n").unwrap();
/// let resumed = block_on(lines(file.path(), FileRange::default(), Some(cursor)).next());
/// let err = resumed.unwrap().unwrap_err().to_string();
/// assert!(err.contains("changed since the walk started"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FileCursor {
    pub(super) offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) file: Option<FileFingerprint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last: Option<LastRecord>,
}

impl FileCursor {
    /// A cursor at byte `offset` with nothing to check the file by: resuming from it
    /// trusts that the file holds what the walk saw up to there. For cursors saved by
    /// earlier versions (a bare offset); to start a walk at an offset, use
    /// [`FileRange::start`](super::FileRange::start) instead.
    pub fn unchecked(offset: u64) -> Self {
        FileCursor {
            offset,
            file: None,
            last: None,
        }
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The fingerprint of the file the walk started on (`None` for an
    /// [unchecked](FileCursor::unchecked) cursor).
    pub fn file(&self) -> Option<&FileFingerprint> {
        self.file.as_ref()
    }
}

impl<'de> Deserialize<'de> for FileCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a file cursor: {\"offset\": …} or a byte offset"
        )]
        enum Repr {
            Offset(u64),
            Full {
                offset: u64,
                #[serde(default)]
                file: Option<FileFingerprint>,
                #[serde(default)]
                last: Option<LastRecord>,
            },
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Offset(offset) => FileCursor::unchecked(offset),
            Repr::Full { offset, file, last } => FileCursor { offset, file, last },
        })
    }
}

/// A `u64` hash as 16 hex digits: exact in any JSON reader (a JSON number above
/// 2^53 is not, in JavaScript).
mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:016x}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u64::from_str_radix(&text, 16)
            .map_err(|e| D::Error::custom(format!("hash `{text}` is not 16 hex digits: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_through_json_and_reads_a_bare_offset() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "x".repeat(10_000)).unwrap();
        let cursor = FileCursor {
            offset: 7,
            file: Some(FileFingerprint::of(file.path()).unwrap()),
            last: Some(LastRecord {
                start: 3,
                hash: u64::MAX - 1,
            }),
        };
        let json = serde_json::to_string(&cursor).unwrap();
        assert!(json.contains("\"hash\":\"fffffffffffffffe\""), "{json}");
        assert_eq!(serde_json::from_str::<FileCursor>(&json).unwrap(), cursor);
        assert_eq!(
            serde_json::from_str::<FileCursor>("42").unwrap(),
            FileCursor::unchecked(42)
        );
        let err = serde_json::from_str::<FileCursor>("\"x\"").unwrap_err();
        assert!(err.to_string().contains("a file cursor"), "{err}");
    }

    #[test]
    fn growth_matches_and_every_other_change_does_not() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path();
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(path, &text).unwrap();
        let fp = FileFingerprint::of(path).unwrap();
        assert_eq!(fp.size(), text.len() as u64);
        assert!(fp.matches(path).unwrap());
        std::fs::write(path, format!("{text}more\n")).unwrap();
        assert!(fp.matches(path).unwrap(), "appended");
        // a line removed or inserted in the middle moves the old end
        std::fs::write(path, text.replacen("line 1000\n", "", 1) + "line 1000\n").unwrap();
        assert!(
            !fp.matches(path).unwrap(),
            "removed in the middle, same size"
        );
        std::fs::write(path, text.replacen("line 1000\n", "line 1000\nextra\n", 1)).unwrap();
        assert!(!fp.matches(path).unwrap(), "inserted in the middle");
        std::fs::write(path, format!("first\n{text}")).unwrap();
        assert!(!fp.matches(path).unwrap(), "inserted at the top");
        std::fs::write(path, &text[..text.len() - 1]).unwrap();
        assert!(!fp.matches(path).unwrap(), "truncated");
        std::fs::write(path, "").unwrap();
        assert!(!fp.matches(path).unwrap(), "emptied");
        // an empty file's fingerprint matches whatever it grows into
        let empty = FileFingerprint::of(path).unwrap();
        std::fs::write(path, "a\n").unwrap();
        assert!(empty.matches(path).unwrap());
    }
}
