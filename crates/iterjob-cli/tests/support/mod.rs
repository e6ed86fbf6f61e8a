//! Helpers for running the real `iterjob` binary in a temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary working directory with its own `iterjob.db`, or a database URL its
/// commands use instead.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            url: None,
        }
    }

    /// A sandbox whose commands use the store at `url`.
    pub fn with_url(url: &str) -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            url: Some(url.to_string()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("iterjob.db")
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.db().display())
    }

    /// A command for the binary, run in the sandbox, without inherited database URL.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iterjob"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("ITERJOB_DATABASE_URL")
            .env_remove("ITERJOB_LOG");
        if let Some(url) = &self.url {
            cmd.env("ITERJOB_DATABASE_URL", url);
        }
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run iterjob")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run printed one readable `error:` line containing each of `parts`.
pub fn assert_error(o: &Output, code: i32, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
    for part in parts {
        assert!(err.contains(part), "stderr should mention {part:?}: {err}");
    }
    if code == 1 {
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "one error line: {err}");
    }
}

/// True when `CI` is set: a test whose server is unreachable fails instead of
/// skipping.
fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Skips (outside CI) or fails (under CI) a test whose server is unreachable.
pub fn unreachable(what: &str, err: impl std::fmt::Display) -> Option<std::convert::Infallible> {
    if under_ci() {
        panic!("{what} is unreachable ({err}) and CI is set: start it");
    }
    eprintln!("notice: skipping: {what} is unreachable ({err}); in CI this fails");
    None
}

/// Drops a PostgreSQL schema or a MySQL database when the test ends.
pub struct DropOnExit {
    pub url: String,
    pub statement: String,
}

impl Drop for DropOnExit {
    fn drop(&mut self) {
        let (url, statement) = (self.url.clone(), self.statement.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sqlx::Connection;
                if url.starts_with("postgres") {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(&statement).execute(&mut conn).await;
                    }
                } else if let Ok(mut conn) = sqlx::MySqlConnection::connect(&url).await {
                    let _ = sqlx::query(&statement).execute(&mut conn).await;
                }
            })
        })
        .join();
    }
}

/// A fresh PostgreSQL schema on the test server: the store's URL (the schema is the
/// store's and the session's `search_path`, so the demo's products land there too),
/// a pool on it, the schema's name, and the guard that drops it.
pub(crate) async fn postgres_target() -> Option<(String, sqlx::PgPool, String, DropOnExit)> {
    let server = std::env::var("ITERJOB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("iterjob_cli_{:016x}", rand_u64());
    let pool = match sqlx::PgPool::connect(&server).await {
        Ok(pool) => pool,
        Err(err) => {
            unreachable(&format!("PostgreSQL at {server}"), err)?;
            return None;
        }
    };
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    let url = format!("{server}?schema={schema}&options=-c%20search_path%3D{schema}");
    let pool = sqlx::PgPool::connect(&url.replace(&format!("schema={schema}&"), ""))
        .await
        .expect("connect to the schema");
    let guard = DropOnExit {
        url: server,
        statement: format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
    };
    Some((url, pool, schema, guard))
}

/// A fresh MySQL/MariaDB database on the test server: its URL, a pool on it, and the
/// guard that drops it.
pub(crate) async fn mysql_target() -> Option<(String, sqlx::MySqlPool, DropOnExit)> {
    let server = std::env::var("ITERJOB_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    let name = format!("iterjob_cli_{:016x}", rand_u64());
    let pool = match sqlx::MySqlPool::connect(&server).await {
        Ok(pool) => pool,
        Err(err) => {
            unreachable(&format!("MySQL at {server}"), err)?;
            return None;
        }
    };
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    let pool = sqlx::MySqlPool::connect(&url)
        .await
        .expect("connect to the database");
    let guard = DropOnExit {
        url: server,
        statement: format!("DROP DATABASE IF EXISTS `{name}`"),
    };
    Some((url, pool, guard))
}

/// A random number from the clock and the process id (no rand dependency).
pub fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
