//! Transactional iteration on MySQL and MariaDB: an item's work and the cursor
//! advance past it commit in one InnoDB transaction. The adapter is the shared
//! [`iterjob_sql::Transactional`] (see there for the guarantee, its cost and the
//! shutdown deadline); this module gives it the MySQL store.
//!
//! The item's transaction begins on the store's pool (sessions at `READ COMMITTED`)
//! and its first statement updates the job's row, fenced by the run token, which
//! locks that row until the transaction ends. Write the item's work through `tx`.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use iterjob::enumerator::{Enumerator, EnumeratorExt};
//! use iterjob::{JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
//! use iterjob_mysql::sqlx::{self, MySql, Row, Transaction};
//! use iterjob_mysql::{Keyset, KeysetCursor, MySqlRow, MySqlStore, Transactional, TransactionalJob};
//!
//! /// Credits every account's monthly interest, exactly once per account.
//! struct CreditInterest {
//!     store: MySqlStore,
//! }
//!
//! impl TransactionalJob<MySql> for CreditInterest {
//!     const KIND: &'static str = "credit_interest";
//!     type Params = ();
//!     type Cursor = KeysetCursor;
//!     type Item = Vec<MySqlRow>;
//!
//!     fn enumerate(
//!         &self,
//!         _params: &(),
//!         cursor: Option<KeysetCursor>,
//!     ) -> Result<impl Enumerator<Vec<MySqlRow>, KeysetCursor>, JobError> {
//!         Ok(Keyset::table("accounts").key("id").batch_size(200).batches(self.store.pool(), cursor))
//!     }
//!
//!     fn count_items(&self, batch: &Vec<MySqlRow>) -> u64 {
//!         batch.len() as u64
//!     }
//!
//!     async fn process(
//!         &self,
//!         _ctx: &JobContext<()>,
//!         batch: Vec<MySqlRow>,
//!         tx: &mut Transaction<'_, MySql>,
//!     ) -> Result<(), JobError> {
//!         for row in &batch {
//!             let id: i64 = row.try_get("id")?;
//!             sqlx::query("UPDATE accounts SET balance = balance * 1.001 WHERE id = ?")
//!                 .bind(id)
//!                 .execute(&mut **tx) // through the transaction, not the pool
//!                 .await?;
//!         }
//!         Ok(()) // the adapter writes the cursor and commits
//!     }
//! }
//!
//! # async fn run() -> iterjob::Result<()> {
//! let store = MySqlStore::connect("mysql://app@localhost/bank").await?;
//! let job = Transactional::new(CreditInterest { store: store.clone() }, store.clone());
//! store.job_insert(&NewJob::of(&job, &())?).await?;
//! let worker = Worker::new(Arc::new(store), Registry::new().with(job), WorkerConfig::default())?;
//! worker.run_until_idle().await?;
//! # Ok(())
//! # }
//! ```

use iterjob::store::{JobId, RunToken};
use iterjob_sql::TransactionalStore;
use sqlx::{MySql, Transaction};

use crate::error::map_sqlx;
use crate::store::MySqlStore;

pub use iterjob_sql::TransactionalJob;

/// The [`Job`](iterjob::Job) that runs a [`TransactionalJob<MySql>`]: each item's
/// work and the cursor past it commit in one transaction on the [`MySqlStore`]'s
/// database, which must be the database the worker's store uses. See the [module
/// docs](crate::transactional).
pub type Transactional<J> = iterjob_sql::Transactional<J, MySqlStore>;

impl TransactionalStore for MySqlStore {
    type Database = MySql;

    fn pool(&self) -> &sqlx::Pool<MySql> {
        MySqlStore::pool(self)
    }

    fn describe(&self) -> String {
        format!("MySQL store {}", self.target())
    }

    fn map_error(&self, what: &'static str, err: sqlx::Error) -> iterjob::Error {
        map_sqlx(self.target(), what, err)
    }

    fn classify(&self, err: &sqlx::Error) -> iterjob_sql::ErrorClass {
        <crate::dialect::MySqlDialect as iterjob_sql::Dialect>::classify(err)
    }

    async fn checkpoint_in_transaction<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, MySql>,
        job: JobId,
        token: RunToken,
        cursor: &'t str,
        count: i64,
        lease_ms: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(self.checkpoint_in_tx_sql())
            .bind(cursor)
            .bind(count)
            .bind(count)
            .bind(lease_ms)
            .bind(job)
            .bind(token.0)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    async fn job_exists_in<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, MySql>,
        job: JobId,
    ) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(self.exists_sql())
            .bind(job)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }
}
