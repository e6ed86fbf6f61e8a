//! Bad input, tried as a new user would: each gives one readable error line and a
//! non-zero exit, and nothing else is lost.

mod support;

use support::{Sandbox, assert_error, stdout};

#[test]
fn unknown_kind_names_the_registered_ones() {
    let s = Sandbox::new();
    let o = s.run(&["enqueue", "send_invoices", "--params", "{}"]);
    assert_error(
        &o,
        1,
        &["unknown job kind `send_invoices`", "demo_sync_products"],
    );
}

#[test]
fn params_that_do_not_fit_name_the_field() {
    let s = Sandbox::new();
    let o = s.run(&[
        "enqueue",
        "demo_sync_products",
        "--params",
        r#"{"database_url": "sqlite://x.db", "batch_size": "big"}"#,
    ]);
    assert_error(
        &o,
        1,
        &["demo_sync_products", "field `batch_size`", "invalid type"],
    );
    let o = s.run(&["enqueue", "demo_sync_products", "--params", "{}"]);
    assert_error(&o, 1, &["missing field `database_url`"]);
    let o = s.run(&["enqueue", "demo_sync_products", "--params", "{not json"]);
    assert_error(&o, 1, &["--params is not valid JSON"]);
    // nothing was enqueued by the failed attempts
    let o = s.run(&["jobs"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "no jobs");
}

#[test]
fn missing_and_finished_jobs_give_clear_errors() {
    let s = Sandbox::new();
    assert!(s.run(&["migrate"]).status.success());
    assert_error(&s.run(&["show", "999"]), 1, &["job 999 not found"]);
    assert_error(&s.run(&["pause", "999"]), 1, &["job 999 not found"]);
    let o = s.run(&[
        "enqueue",
        "demo_sync_products",
        "--params",
        r#"{"database_url": "sqlite://x.db"}"#,
    ]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(s.run(&["cancel", "1"]).status.success());
    assert_error(
        &s.run(&["resume", "1"]),
        1,
        &["job 1 is cancelled", "cannot resume"],
    );
    assert_error(
        &s.run(&["jobs", "--state", "done"]),
        2,
        &["`done` is not a job state", "completed"],
    );
    // a typo is a usage error with the closest state suggested
    assert_error(
        &s.run(&["jobs", "--state", "runing"]),
        2,
        &["did you mean `running`?"],
    );
}

/// Commands that look at stored jobs, run where there is no database, say which
/// file they looked for and how to get one, and create nothing.
#[test]
fn read_only_commands_never_create_a_database() {
    let s = Sandbox::new();
    for args in [
        &["show", "2"][..],
        &["jobs"],
        &["pause", "1"],
        &["queues", "--json"],
        &["throttle", "list"],
        &["prune", "--older-than", "1d"],
    ] {
        let o = s.run(args);
        assert_error(&o, 1, &["no iterjob database at", "iterjob.db", "migrate"]);
        assert!(!s.db().exists(), "{args:?} created the database");
    }
    assert_eq!(
        std::fs::read_dir(s.path()).expect("read dir").count(),
        0,
        "nothing created"
    );
}

/// `enqueue` without --params takes the kind's defaults when it has them, and names
/// the missing field otherwise.
#[test]
fn enqueue_without_params_names_what_is_missing() {
    let s = Sandbox::new();
    let o = s.run(&["enqueue", "demo_sync_products"]);
    assert_error(
        &o,
        1,
        &[
            "job kind `demo_sync_products` needs parameters",
            "missing field `database_url`",
            "--params",
        ],
    );
    let o = s.run(&["enqueue", "no_such_kind"]);
    assert_error(&o, 1, &["unknown job kind `no_such_kind`"]);
}

#[test]
fn corrupt_database_file_is_reported_not_overwritten() {
    let s = Sandbox::new();
    let garbage = b"this is not a sqlite database, it is a shopping list\n".repeat(100);
    std::fs::write(s.db(), &garbage).expect("write");
    let o = s.run(&["jobs"]);
    assert_error(&o, 1, &["iterjob.db"]);
    let err = support::stderr(&o).to_lowercase();
    assert!(
        err.contains("not a database") || err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(s.db()).expect("read"),
        garbage,
        "the file was left untouched"
    );
}

#[test]
fn database_in_missing_directory_names_the_path() {
    let s = Sandbox::new();
    let url = format!("sqlite://{}/no/such/dir/jobs.db", s.path().display());
    let o = s.run(&["--database-url", &url, "jobs"]);
    assert_error(&o, 1, &["no/such/dir/jobs.db"]);
}

#[test]
fn unsupported_url_is_explained() {
    let s = Sandbox::new();
    let o = s.run(&["--database-url", "redis://localhost/db", "jobs"]);
    assert_error(
        &o,
        1,
        &["unsupported database URL", "sqlite://", "mysql://"],
    );
    // a MySQL database that does not exist is named, with how to create it
    let o = s.run(&[
        "--database-url",
        "mysql://root@127.0.0.1:3306/iterjob_no_such_database",
        "jobs",
    ]);
    if !String::from_utf8_lossy(&o.stderr).contains("connecting timed out")
        && !String::from_utf8_lossy(&o.stderr).contains("cannot reach")
    {
        assert_error(&o, 1, &["iterjob_no_such_database", "CREATE DATABASE"]);
    }
}

#[test]
fn absurd_flag_values_are_refused_by_name() {
    let s = Sandbox::new();
    let o = s.run(&["worker", "--concurrency", "0"]);
    assert_error(&o, 2, &["--concurrency"]);
    let o = s.run(&["demo", "--products", "-5"]);
    assert_error(&o, 2, &["--products"]);
    let o = s.run(&["demo", "--products", "999999999999"]);
    assert_error(&o, 2, &["--products"]);
    let o = s.run(&["demo", "--interrupt-after", "soon"]);
    assert_error(&o, 2, &["--interrupt-after", "not a duration"]);
    let o = s.run(&["worker", "--lease", "1s", "--heartbeat-interval", "5s"]);
    assert_error(&o, 1, &["heartbeat interval", "shorter than the lease"]);
    assert!(!s.db().exists() || s.run(&["jobs"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_times_out_with_a_clear_error() {
    use sqlx::Connection;
    let s = Sandbox::new();
    assert!(s.run(&["migrate"]).status.success());
    let mut conn = sqlx::SqliteConnection::connect(&s.db_url())
        .await
        .expect("connect");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .expect("lock");
    let o = s.run(&[
        "enqueue",
        "demo_sync_products",
        "--params",
        r#"{"database_url": "sqlite://x.db"}"#,
    ]);
    assert_error(&o, 1, &["locked"]);
    sqlx::query("ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("unlock");
}

#[test]
fn huge_malformed_params_are_not_echoed_whole() {
    let s = Sandbox::new();
    let junk = format!("{{{}", "x".repeat(120_000));
    let o = s.run(&["enqueue", "demo_sync_products", "--params", &junk]);
    assert_error(
        &o,
        1,
        &["--params is not valid JSON", "120001 bytes in all"],
    );
    let err = support::stderr(&o);
    assert!(err.len() < 1_000, "{} bytes of error", err.len());
}

#[test]
fn queue_names_are_checked_when_enqueued() {
    let s = Sandbox::new();
    let params = r#"{"database_url": "sqlite://x.db"}"#;
    let long = "q".repeat(65_536);
    let enqueue = |queue: &str| {
        s.run(&[
            "enqueue",
            "demo_sync_products",
            "--params",
            params,
            "--queue",
            queue,
        ])
    };
    assert_error(
        &enqueue(&long),
        1,
        &["--queue", "65536 characters long", "at most 200"],
    );
    assert_error(
        &enqueue("red\u{1b}[31mqueue"),
        1,
        &["--queue", "control character \\u{1b}"],
    );
    assert_error(&enqueue("  "), 1, &["--queue", "must not be empty"]);
}

/// Jobs written by another program or an older version, with a 65,536-character
/// queue and escape codes in a name, list and show without a panic and without
/// reaching the terminal raw; output cut short by a closed pipe (`| head -c 1`) ends
/// quietly with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_survive_odd_names_and_closed_pipes() {
    use iterjob::Store;
    use std::io::Read;

    let s = Sandbox::new();
    let store = iterjob_sqlite::SqliteStore::connect(&s.db_url())
        .await
        .expect("store");
    let mut odd = iterjob::NewJob::new("demo\u{1b}[2Jkind", serde_json::json!({}));
    odd.queue = "q".repeat(65_536);
    store.job_insert(&odd).await.expect("insert");
    let many: Vec<iterjob::NewJob> = (0..400)
        .map(|i| iterjob::NewJob::new("demo_sync_products", serde_json::json!({ "n": i })))
        .collect();
    store.job_insert_many(&many).await.expect("insert many");

    let o = s.run(&["jobs", "--limit", "1000"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let listed = stdout(&o);
    assert!(listed.contains("qqq…"), "the long queue is cut");
    assert!(
        !listed.contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );
    assert!(listed.contains("demo\\u{1b}[2Jkind"), "{listed}");
    let o = s.run(&["show", "1"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(!stdout(&o).contains('\u{1b}'));

    let mut child = s
        .cmd(&["jobs", "--json", "--limit", "1000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("one byte");
    // the pipe is closed here, as `head -c 1` closes it
    let output = child.wait_with_output().expect("wait");
    let err = support::stderr(&output);
    assert!(!err.contains("panicked"), "{err}");
    assert!(output.status.success(), "{:?}: {err}", output.status);
}
