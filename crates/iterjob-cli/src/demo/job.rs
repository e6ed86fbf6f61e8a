//! The demo's job kind, [`SyncProducts`], on whichever database its parameters
//! name: SQLite, PostgreSQL or MySQL, each with its own store, keyset and
//! transactional work, written once over the database's dialect.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::{BoxEnumerator, Enumerator, EnumeratorExt};
use iterjob::partition::KeyRange;
use iterjob::{Job, JobContext, JobError, SplitParams};
use iterjob_sql::dialect::Dialect;
use iterjob_sql::{KeysetCursor, Transactional, TransactionalJob, TransactionalStore};
use serde::{Deserialize, Serialize};
use sqlx::Transaction;

use super::products::{self, Product};

/// The demo's job kind: syncs and refreshes every product, 100 at a time, walking
/// `demo_products` with the keyset enumerator. Parameters name the database, so any
/// `iterjob worker` on the same database can run (and resume) it.
///
/// The products live in the job store's own database (SQLite, PostgreSQL or MySQL),
/// so by default (`exactly_once: true`) each batch's updates and the cursor past the
/// batch commit in one transaction ([`Transactional`]): every product is synced
/// exactly once, even when a worker is killed mid-batch. With `"exactly_once":
/// false` the updates commit on their own and the runtime checkpoints the cursor
/// every second, so a crash repeats the products synced since the last checkpoint
/// (at least once).
#[derive(Debug, Default)]
pub struct SyncProducts {
    backends: Mutex<HashMap<String, Backend>>,
}

/// Parameters of [`SyncProducts`].
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// The database holding `demo_products`: the job store's own
    /// (`sqlite://…`, `postgres://…`, `mysql://…`).
    pub database_url: String,
    /// Products per batch (one transaction each).
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 10_000))]
    pub batch_size: u32,
    /// Simulated API latency per batch, in milliseconds.
    #[serde(default)]
    pub api_latency_ms: u64,
    /// Commit each batch's updates together with the cursor past it (default), so
    /// every product is synced exactly once even across crashes; `false` syncs at
    /// least once (a crash repeats the batches since the last checkpoint).
    #[serde(default = "default_exactly_once")]
    pub exactly_once: bool,
    /// Abort the whole process when this product id comes up, as a crash would
    /// (for trying out crash recovery and poison-job detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_at_product: Option<i64>,
    /// The products this job (a partition) walks: ids in `(after, until]`; all of
    /// them by default.
    #[serde(default, skip_serializing_if = "is_all")]
    #[schemars(skip)] // set by partitioning, not typed by an operator
    pub range: KeyRange<KeysetCursor>,
}

fn is_all(range: &KeyRange<KeysetCursor>) -> bool {
    range.after.is_none() && range.until.is_none()
}

fn default_batch() -> u32 {
    100
}

fn default_exactly_once() -> bool {
    true
}

/// Connections the demo kind's own store opens for a database its parameters name
/// (when the worker did not hand it the store): enough for a walk and a transaction
/// per slot of a busy worker.
const OWN_POOL: u32 = 16;

/// A store the demo's work runs on: a [`TransactionalStore`] with its dialect.
pub(crate) trait DemoStore: TransactionalStore + fmt::Debug {
    /// The database's dialect.
    type Dialect: Dialect<Database = Self::Database>;
}

#[cfg(feature = "sqlite")]
impl DemoStore for iterjob_sqlite::SqliteStore {
    type Dialect = iterjob_sqlite::SqliteDialect;
}

#[cfg(feature = "postgres")]
impl DemoStore for iterjob_postgres::PgStore {
    type Dialect = iterjob_postgres::PgDialect;
}

#[cfg(feature = "mysql")]
impl DemoStore for iterjob_mysql::MySqlStore {
    type Dialect = iterjob_mysql::MySqlDialect;
}

/// The store of one database.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(iterjob_sqlite::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(iterjob_postgres::PgStore),
    #[cfg(feature = "mysql")]
    MySql(iterjob_mysql::MySqlStore),
}

/// Runs `$body` with `$store` bound to the backend's store, whatever its database.
macro_rules! with_store {
    ($backend:expr, $store:ident => $body:expr) => {
        match $backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($store) => $body,
            #[cfg(feature = "postgres")]
            Backend::Postgres($store) => $body,
            #[cfg(feature = "mysql")]
            Backend::MySql($store) => $body,
        }
    };
}
pub(crate) use with_store;

impl Backend {
    /// The store of the database `url` names, its pool connecting on first use.
    fn open(url: &str) -> Result<Backend, JobError> {
        let bad = |e: iterjob::Error| JobError::fatal(format!("database_url `{url}`: {e}"));
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = iterjob_postgres::PgOptions::new(url).max_connections(OWN_POOL);
            return iterjob_postgres::PgStore::lazy(options)
                .map(Backend::Postgres)
                .map_err(bad);
        }
        #[cfg(feature = "mysql")]
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = iterjob_mysql::MySqlOptions::new(url).max_connections(OWN_POOL);
            return iterjob_mysql::MySqlStore::lazy(options)
                .map(Backend::MySql)
                .map_err(bad);
        }
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") || !url.contains("://") {
            let options = iterjob_sqlite::SqliteStore::options(url)
                .map_err(bad)?
                .create_if_missing(false);
            return iterjob_sqlite::SqliteStore::lazy(options, OWN_POOL)
                .map(Backend::Sqlite)
                .map_err(bad);
        }
        Err(JobError::fatal(format!(
            "database_url `{url}` names a database this binary was built without (its \
             features: {})",
            crate::store::built_with()
        )))
    }
}

impl SyncProducts {
    /// Uses `backend` for jobs whose parameters name `database_url`.
    pub(crate) fn with_backend(database_url: &str, backend: Backend) -> Self {
        let job = SyncProducts::default();
        job.lock().insert(database_url.to_string(), backend);
        job
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backend>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store of the database `url` names, opened on first use.
    fn backend(&self, url: &str) -> Result<Backend, JobError> {
        if let Some(backend) = self.lock().get(url) {
            return Ok(backend.clone());
        }
        let backend = Backend::open(url)?;
        self.lock().insert(url.to_string(), backend.clone());
        Ok(backend)
    }
}

/// The batches of a store's products, each with the cursor just past it.
fn batches<S: DemoStore>(
    store: &S,
    params: &SyncParams,
    cursor: Option<KeysetCursor>,
) -> BoxEnumerator<(Vec<Product>, KeysetCursor), KeysetCursor> {
    products::keyset::<S::Dialect>(params.batch_size, &params.range)
        .batches(store.pool(), cursor)
        .map(|step| {
            let (rows, cursor) = step?;
            let batch = rows
                .iter()
                .map(products::product::<S::Dialect>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(JobError::fatal)?;
            Ok(((batch, cursor.clone()), cursor))
        })
        .boxed_enumerator()
}

impl Job for SyncProducts {
    const KIND: &'static str = "demo_sync_products";
    const PARTITIONABLE: bool = true;
    const DESCRIPTION: &'static str = "Syncs every product of `demo_products` to a (simulated) \
        partner API in keyset-paged batches, each batch's updates committed with the cursor past \
        it. Seed the table with `iterjob demo` first.";
    type Params = SyncParams;
    type Cursor = KeysetCursor;
    /// A batch of products and the cursor just past it.
    type Item = (Vec<Product>, KeysetCursor);

    fn enumerate(
        &self,
        params: &SyncParams,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Self::Item, KeysetCursor>, JobError> {
        if params.batch_size == 0 || params.batch_size > 10_000 {
            return Err(JobError::fatal(format!(
                "batch_size {} is out of range; use 1..=10000",
                params.batch_size
            )));
        }
        let backend = self.backend(&params.database_url)?;
        Ok(with_store!(&backend, store => batches(store, params, cursor)))
    }

    fn params_schema() -> Option<serde_json::Value> {
        iterjob::params_schema::<SyncParams>()
    }

    fn count_items(&self, (batch, _): &Self::Item) -> u64 {
        batch.len() as u64
    }

    /// Splits the products at quantiles of their ids: each partition gets as many.
    async fn partition(&self, params: &SyncParams, n: u32) -> Result<Vec<SyncParams>, JobError> {
        let backend = self.backend(&params.database_url)?;
        let ranges = with_store!(&backend, store => quantiles(store, params, n).await?);
        Ok(ranges
            .into_iter()
            .map(|range| SyncParams {
                range,
                ..params.clone()
            })
            .collect())
    }

    /// Gives the second half of the products left after `cursor` to a new partition.
    async fn split(
        &self,
        params: &SyncParams,
        cursor: Option<&KeysetCursor>,
    ) -> Result<SplitParams<SyncParams>, JobError> {
        let backend = self.backend(&params.database_url)?;
        let mid = with_store!(&backend, store => midpoint(store, params, cursor).await?);
        let Some(mid) = mid else {
            return Ok(None);
        };
        let (keep, give) = params.range.split_at(mid);
        Ok(Some((
            SyncParams {
                range: keep,
                ..params.clone()
            },
            SyncParams {
                range: give,
                ..params.clone()
            },
        )))
    }

    async fn total(&self, params: &SyncParams) -> Result<Option<u64>, JobError> {
        let backend = self.backend(&params.database_url)?;
        with_store!(&backend, store => total(store, params).await)
    }

    async fn process(
        &self,
        ctx: &JobContext<SyncParams>,
        (batch, cursor): Self::Item,
    ) -> Result<(), JobError> {
        // "sync": the remote API call this stands for, outside any transaction
        if ctx.params.api_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.api_latency_ms)).await;
        }
        // "refresh": write the result back, one transaction per batch
        let backend = self.backend(&ctx.params.database_url)?;
        with_store!(&backend, store => refresh(store, ctx, batch, cursor).await)
    }
}

/// The product ids that cut a job's range into `n` parts of about as many products.
async fn quantiles<S: DemoStore>(
    store: &S,
    params: &SyncParams,
    n: u32,
) -> Result<Vec<KeyRange<KeysetCursor>>, JobError> {
    products::keyset::<S::Dialect>(params.batch_size, &params.range)
        .quantile_ranges(store.pool(), n)
        .await
}

/// The product id in the middle of what is left of a job's range after `cursor`.
async fn midpoint<S: DemoStore>(
    store: &S,
    params: &SyncParams,
    cursor: Option<&KeysetCursor>,
) -> Result<Option<KeysetCursor>, JobError> {
    products::keyset::<S::Dialect>(params.batch_size, &params.range)
        .midpoint(store.pool(), cursor)
        .await
}

/// The products a job's range holds.
async fn total<S: DemoStore>(store: &S, params: &SyncParams) -> Result<Option<u64>, JobError> {
    let mut conn = store.pool().acquire().await?;
    let n = products::count::<S::Dialect>(&mut conn, &params.range).await?;
    Ok(Some(n))
}

/// Writes a batch back: with the cursor past it in one transaction (exactly once), or
/// alone (at least once).
async fn refresh<S: DemoStore>(
    store: &S,
    ctx: &JobContext<SyncParams>,
    batch: Vec<Product>,
    cursor: KeysetCursor,
) -> Result<(), JobError> {
    let job = Transactional::new(
        ProductSync {
            store: store.clone(),
        },
        store.clone(),
    );
    if ctx.params.exactly_once {
        // the updates and the cursor past the batch commit together
        job.process(ctx, (batch, cursor)).await
    } else {
        // the updates commit alone; the runtime checkpoints the cursor later
        let mut tx = store.pool().begin().await?;
        job.job().process(ctx, batch, &mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The demo's work for one batch, in a transaction on the products' database.
#[derive(Debug)]
struct ProductSync<S> {
    store: S,
}

impl<S: DemoStore> TransactionalJob<S::Database> for ProductSync<S> {
    const KIND: &'static str = SyncProducts::KIND;
    type Params = SyncParams;
    type Cursor = KeysetCursor;
    type Item = Vec<Product>;

    fn enumerate(
        &self,
        params: &SyncParams,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Vec<Product>, KeysetCursor>, JobError> {
        Ok(batches(&self.store, params, cursor)
            .map(|step| step.map(|((batch, _), cursor)| (batch, cursor))))
    }

    fn count_items(&self, batch: &Vec<Product>) -> u64 {
        batch.len() as u64
    }

    async fn total(&self, params: &SyncParams) -> Result<Option<u64>, JobError> {
        total(&self.store, params).await
    }

    async fn process(
        &self,
        ctx: &JobContext<SyncParams>,
        batch: Vec<Product>,
        tx: &mut Transaction<'_, S::Database>,
    ) -> Result<(), JobError> {
        let now = iterjob::store::now_millis();
        for product in &batch {
            if ctx.params.abort_at_product == Some(product.id) {
                eprintln!(
                    "aborting the process at product {}, as asked (abort_at_product)",
                    product.id
                );
                std::process::abort();
            }
            products::update::<S::Dialect>(&mut **tx, product, now).await?;
        }
        Ok(())
    }
}
