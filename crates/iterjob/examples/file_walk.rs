//! Side by side: the file enumerators against the raw loops they are built on, over
//! the same files, interleaved round by round; prints medians and ratios.
//!
//! * `lines` against a `BufReader::read_until(b'\n')` loop (64 KiB buffer, each line
//!   turned into a `String`): the floor of any line walk;
//! * `csv_records` against a `csv::Reader::read_record` loop: the floor of any CSV walk.
//!
//! Each enumerator yields a [`FileCursor`] per record: the byte offset, the file's
//! fingerprint and a 64-bit hash of the record, what a resume checks the file by.
//!
//! ```text
//! cargo run --release -p iterjob --example file_walk -- [LINES] [ROUNDS]
//! ```
//! Defaults: 1,000,000 lines (about 40 MB), 5 rounds. The files live in a temporary
//! directory (page cache warm after the first round).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::executor::block_on;
use iterjob::enumerator::{FileCursor, FileRange, csv_records, lines};

fn raw_lines(path: &Path) -> u64 {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path).expect("open"));
    let mut buf = Vec::new();
    let mut sum = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).expect("read");
        if n == 0 {
            return sum;
        }
        let line = String::from_utf8(std::mem::take(&mut buf)).expect("utf-8");
        sum += line.len() as u64;
    }
}

fn enumerated_lines(path: &Path) -> u64 {
    block_on(async {
        let mut walk = std::pin::pin!(lines(path, FileRange::default(), None));
        let mut sum = 0u64;
        let mut last: Option<FileCursor> = None;
        while let Some(step) = walk.next().await {
            let (line, cursor) = step.expect("line");
            sum += line.len() as u64 + 1;
            last = Some(cursor);
        }
        assert!(last.is_some());
        sum
    })
}

fn raw_csv(path: &Path) -> u64 {
    let mut reader = csv::Reader::from_path(path).expect("open");
    let mut record = csv::StringRecord::new();
    let mut sum = 0u64;
    while reader.read_record(&mut record).expect("record") {
        sum += record.len() as u64;
    }
    sum
}

fn enumerated_csv(path: &Path) -> u64 {
    block_on(async {
        let mut walk = std::pin::pin!(csv_records(path, FileRange::default(), None, true));
        let mut sum = 0u64;
        while let Some(step) = walk.next().await {
            let (record, _cursor) = step.expect("record");
            sum += record.len() as u64;
        }
        sum
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let text_path = dir.path().join("lines.txt");
    let csv_path = dir.path().join("records.csv");
    {
        let mut text = std::io::BufWriter::new(File::create(&text_path).expect("create"));
        let mut csv = std::io::BufWriter::new(File::create(&csv_path).expect("create"));
        writeln!(csv, "id,name,price").expect("write");
        for i in 0..n {
            writeln!(text, "{i} the quick brown fox jumps over {}", i * 7).expect("write");
            writeln!(csv, "{i},product {i},{}.{:02}", i % 1000, i % 100).expect("write");
        }
    }
    let size = |p: &Path| std::fs::metadata(p).expect("metadata").len();
    println!(
        "{n} lines ({} MB) and {n} CSV records ({} MB), {rounds} interleaved rounds, medians",
        size(&text_path) / 1_000_000,
        size(&csv_path) / 1_000_000
    );
    type Variant = (&'static str, fn(&Path) -> u64, bool);
    let variants: [Variant; 4] = [
        ("raw BufReader::read_until loop", raw_lines, false),
        (
            "enumerator::lines (checked cursors)",
            enumerated_lines,
            false,
        ),
        ("raw csv::Reader::read_record loop", raw_csv, true),
        (
            "enumerator::csv_records (checked cursors)",
            enumerated_csv,
            true,
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut sums = vec![0u64; variants.len()];
    for _ in 0..rounds {
        for (i, (_, run, is_csv)) in variants.iter().enumerate() {
            let path = if *is_csv { &csv_path } else { &text_path };
            let start = Instant::now();
            sums[i] = run(path);
            times[i].push(start.elapsed());
        }
    }
    assert_eq!(sums[0], sums[1], "lines: the two walks saw the same bytes");
    assert_eq!(sums[2], sums[3], "csv: the two walks saw the same fields");
    println!(
        "{:<44} {:>9} {:>12} {:>14}",
        "variant", "time", "records/s", "vs its floor"
    );
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    for (i, (name, _, _)) in variants.iter().enumerate() {
        let floor = medians[i - i % 2];
        println!(
            "{name:<44} {:>7}ms {:>12.0} {:>13.2}x",
            medians[i].as_millis(),
            n as f64 / medians[i].as_secs_f64(),
            floor.as_secs_f64() / medians[i].as_secs_f64()
        );
    }
}
