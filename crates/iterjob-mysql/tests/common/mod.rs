//! Helpers shared by the integration tests: the test server's URL, the CI rule for
//! an unreachable server, and throw-away databases.
//!
//! **Isolation.** Every test works in a database of its own with a random name
//! (`iterjob_test_…`), dropped when its [`TempDb`] is dropped.
//!
//! **The server.** `ITERJOB_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306/test` (MariaDB 10.11 on the project's machines).
//! When it cannot be reached, a test **fails** if the environment variable `CI` is
//! set, and otherwise prints a notice and returns early (skips).

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::time::Duration;

use iterjob_mysql::{MySqlOptions, MySqlStore};
use iterjob_testkit::Guarded;
use sqlx::{Connection, MySqlConnection};

/// The test server's URL (any database on it: tests make their own).
pub fn mysql_url() -> String {
    std::env::var("ITERJOB_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// The URL of database `name` on the test server.
pub fn db_url(name: &str) -> String {
    let mut url = url::Url::parse(&mysql_url()).expect("test URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn reachable() -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        MySqlConnection::connect(&mysql_url()),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out after 5 s".to_string()),
    }
}

/// The CI rule: true when the server is reachable. When it is not, panics if `CI` is
/// set, and otherwise prints a notice and returns false so the test returns early.
pub async fn require_mysql() -> bool {
    match reachable().await {
        Ok(()) => true,
        Err(reason) => {
            let url = mysql_url();
            if std::env::var_os("CI").is_some() {
                panic!(
                    "MySQL test server {url} is unreachable ({reason}) and CI is set: start it \
                     (service mariadb start) or set ITERJOB_TEST_MYSQL_URL"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "notice: skipping MySQL test: {url} is unreachable ({reason}); set \
                 ITERJOB_TEST_MYSQL_URL or start the server (in CI this fails)"
            );
            false
        }
    }
}

/// A fresh database on the test server, dropped on drop.
#[derive(Debug)]
pub struct TempDb {
    pub name: String,
}

impl TempDb {
    /// `None` to skip (see [`require_mysql`]).
    pub async fn new() -> Option<Self> {
        if !require_mysql().await {
            return None;
        }
        let name = format!("iterjob_test_{:016x}", rand::random::<u64>());
        let mut conn = MySqlConnection::connect(&mysql_url())
            .await
            .expect("connect");
        sqlx::query(&format!("CREATE DATABASE `{name}`"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        Some(TempDb { name })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        db_url(&self.name)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // from a thread of its own: a Drop may run inside or outside a runtime
        let joined = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let mut conn = MySqlConnection::connect(&mysql_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(joined, Ok(Ok(()))) {
            eprintln!("warning: could not drop a test database");
        }
    }
}

/// A migrated store in a fresh database; `None` to skip.
pub async fn temp_store(
    adjust: impl FnOnce(MySqlOptions) -> MySqlOptions,
) -> Option<(MySqlStore, TempDb)> {
    let db = TempDb::new().await?;
    let store = MySqlStore::connect_with(adjust(MySqlOptions::new(db.url())))
        .await
        .unwrap_or_else(|err| panic!("open a MySQL store in {}: {err}", db.name));
    Some((store, db))
}

/// For the testkit's macros, which cannot return early: a fresh store, or the whole
/// test binary ends successfully when the server is unreachable outside CI.
pub async fn guarded_store() -> Guarded<MySqlStore, TempDb> {
    match temp_store(|o| o).await {
        Some((store, db)) => Guarded::new(store, db),
        None => std::process::exit(0),
    }
}
