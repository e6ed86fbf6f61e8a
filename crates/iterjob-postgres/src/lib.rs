//! The PostgreSQL store for iterjob, for running workers on many machines against one
//! database, and a keyset enumerator over PostgreSQL tables.
//!
//! * [`PgStore`]: an [`iterjob::store::Store`] in a schema of its own (default
//!   `iterjob`), created and migrated on [`PgStore::connect`]. Claims take several jobs
//!   per round trip with `FOR UPDATE SKIP LOCKED`, every write of a run is fenced by
//!   its token, leases are measured with the database server's clock, and
//!   `LISTEN`/`NOTIFY` wakes idle workers as soon as a job is enqueued (with polling as
//!   the fallback).
//! * [`Keyset`]: walks a table or query in key order, a page per query
//!   (`WHERE (keys) > (cursor) ORDER BY keys LIMIT n`), resumable from the last row's
//!   key ([`KeysetCursor`], typed: a `timestamptz` key comes back as a time).
//! * [`Transactional`]: runs a [`TransactionalJob`], whose work for each item is
//!   done in a transaction that also advances the job's cursor, so each item's
//!   effect on the database commits exactly once, across crashes (see
//!   [`transactional`]).
//!
//! # Quick start
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob::store::{NewJob, Store};
//! use iterjob_postgres::{Keyset, PgStore};
//! use sqlx::Row;
//!
//! # async fn demo() -> Result<(), iterjob::JobError> {
//! // the store: schema `iterjob` created and migrated if needed
//! let store = PgStore::connect("postgres://app@db.internal:5432/shop").await?;
//! store
//!     .job_insert_many(&[NewJob::new("reprice", serde_json::json!({"percent": 5}))])
//!     .await?;
//!
//! // a job's collection: the products, in id order, resumable from any row
//! let products = Keyset::table("products").key("id").filter("archived = false");
//! let saved = None; // the job's last checkpointed cursor
//! let mut rows = std::pin::pin!(products.rows(store.pool(), saved));
//! while let Some((row, cursor)) = rows.try_next().await? {
//!     let id: i64 = row.get("id");
//!     sqlx::query("UPDATE products SET price = price * 1.05 WHERE id = $1")
//!         .bind(id)
//!         .execute(store.pool()) // the same database as the store
//!         .await?;
//!     // the runtime checkpoints `cursor` now and then; resuming from it yields the
//!     // next product
//! #   let _ = cursor;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! With the command line, pass the URL: `iterjob worker --database-url
//! postgres://app@db.internal/shop` (or set `ITERJOB_DATABASE_URL`); add
//! `?schema=NAME` to use another schema than `iterjob`.
//!
//! # Workers on several machines
//!
//! Start as many worker processes as you like, on as many machines, with the same URL
//! (and schema). Nothing else is shared or configured:
//!
//! * **Starting together is safe.** Each process migrates on connect, under a
//!   transaction-scoped advisory lock (`pg_advisory_xact_lock`), so they migrate one
//!   after the other; the lock is released with the transaction. A schema written by
//!   a newer iterjob is refused with an error saying so, never used.
//! * **A job runs on one worker at a time.** A claim locks the rows it takes with
//!   `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's jobs instead
//!   of waiting or double-claiming, and gives each job a fresh random run token.
//!   Every checkpoint, heartbeat and release is `WHERE id = $1 AND run_token = $2`:
//!   once a job was rescued and claimed by another worker, the old worker's writes are
//!   rejected ([`Error::LeaseLost`](iterjob::Error::LeaseLost)) and it stops the run.
//! * **Leases use one clock.** Every timestamp is taken from the database server's
//!   `clock_timestamp()`, so workers whose clocks drift still agree on when a lease
//!   expired. Only the `run_at` the runtime computes for a retry or an interruption
//!   comes from the worker's clock (a few seconds of skew delay or advance a retry by
//!   as much; keep the machines' clocks synced with NTP as usual).
//! * **A lost worker holds nothing.** No transaction and no session lock lives as long
//!   as a run: a worker killed with SIGKILL, or cut off by the network, leaves only a
//!   lease. Any worker's rescuer requeues the job after the lease expires, from its
//!   last checkpoint (one `UPDATE`; a heartbeat that commits first keeps the job).
//!   A job whose workers lose their lease 3 times in a row without progress fails
//!   instead of crash-looping.
//! * **Wake-ups.** Enqueueing, resuming, retrying, and releasing a job back to its
//!   queue send `NOTIFY` from the same statement or transaction (delivered at commit,
//!   never for a rollback). Each store `LISTEN`s on one extra connection, started by
//!   the first worker that waits, reconnecting with backoff; idle workers claim
//!   within milliseconds. Notifications are a hint only: workers also poll, so a lost
//!   notification (or [`PgOptions::notify`] off) costs at most one poll interval.
//! * **Connections.** Each process opens up to [`PgOptions::max_connections`]
//!   (default 10) plus one for `LISTEN`. Size the server's `max_connections` for
//!   all workers, or put PgBouncer in front: in session mode everything works; in
//!   transaction mode set `notify: false` (or `?notify=false` in the URL: `LISTEN`
//!   needs a session) and rely on polling, and run PgBouncer 1.21 or later with
//!   `max_prepared_statements` set (e.g. 200): sqlx prepares every query under a
//!   name, which a pooler that does not track them hands to other clients (the store
//!   then fails with a message saying so). Claims, releases, heartbeats and checkpoints keep up to two idle
//!   connections out of the pool for the next one (never more than half the pool),
//!   skipping the two liveness pings of a pool checkout; a kept connection whose
//!   statement failed goes back to the pool, which closes it if it is broken, and
//!   closing the pool (through [`PgStore::close`] or directly) gives them back.
//!
//! # Tuning
//!
//! The runtime's settings (`iterjob worker --…`, or
//! [`WorkerConfig`](iterjob::runtime::WorkerConfig)) trade load on the database
//! against latency:
//!
//! | setting | default | on PostgreSQL |
//! |---|---|---|
//! | lease | 30 s | how long a vanished worker's jobs wait before another worker takes them over; longer survives longer network blips and GC pauses |
//! | heartbeat interval | 5 s | one `UPDATE` per running job per interval (a HOT update: no index changes); keep it well under the lease |
//! | checkpoint interval | 1 s | one `UPDATE` per running job per interval (also HOT); longer means fewer writes but more work redone after a crash |
//! | poll interval | 500 ms | one claim query per idle worker per interval; with `notify` on, raising it to several seconds costs no latency |
//! | concurrency | 4 | jobs per worker process; each checkpoints on its own, so keep [`PgOptions::max_connections`] at least this plus 2 |
//! | [`PgOptions::notify`] | on | `LISTEN`/`NOTIFY` wake-ups; off behind transaction-pooling proxies |
//!
//! # Schema and bloat
//!
//! All of iterjob's objects live in the store's schema (`iterjob.jobs`,
//! `iterjob.rate_limits`, `iterjob.schema_migrations`), never among the application's tables, so the
//! application's own migrations and iterjob's cannot collide. The SQL files use a
//! `{schema}` placeholder, replaced by the schema name — validated as a plain
//! identifier and double-quoted — when the store is built.
//!
//! A running job's row is rewritten at every checkpoint and heartbeat. The table is
//! created with `fillfactor = 70`, and none of the columns those writes change
//! (cursor, progress, lease, checkpoint time) is indexed, so they are HOT updates:
//! the new row version stays in the same page and no index grows. The claim reads a
//! partial index that holds only claimable jobs. Autovacuum is told to visit the
//! table early (`autovacuum_vacuum_scale_factor = 0.02`).
//!
//! Claiming and completing a job change its `state`, so those updates cannot be HOT.
//! To keep them cheap, completed jobs (the bulk of the table) are left out of the
//! indexes by state and by kind: a completion adds an entry to the primary key
//! only. Listing completed jobs reads the table in id order instead. The claim
//! statement is prepared with its row limit as a literal (one statement per claim
//! size up to 32, then per multiple of 16 up to 256, then per power of two), so
//! PostgreSQL plans it once per connection instead of at every claim.
//!
//! Every job leaves three dead row versions behind (its claim's, its completion's and
//! its deletion by retention's), so a table that turns over thousands of jobs a
//! second needs autovacuum on, and soon: keep it on, and set the server's
//! `autovacuum_naptime` to about 10 s (a table cannot set it). In a soak of a million
//! jobs at 5,000 a second (`benches/soak/run`, in BENCHMARKS.md), that held the heap at
//! 83–107 MiB and the indexes at 30–40 MiB, against 171–208 and 89–98 MiB at the
//! default minute. The store refreshes the table's planner statistics itself after
//! every 1,000 jobs enqueued (then every tenth of the table's rows), with
//! `ANALYZE (SKIP_LOCKED)`, which never waits for (and so never cancels) an
//! autovacuum.
//!
//! Rate limits ([`iterjob::RateLimit`]) keep one row per bucket in `rate_limits`: each
//! reservation is one upsert of a non-indexed column on the server's clock (a HOT
//! update), about ten per second per rate-limited running job.
//!
//! # Errors
//!
//! Opening the store says what is wrong and what to do: a URL that does not parse, an
//! invalid schema name, or a database that does not exist
//! ([`Error::Config`](iterjob::Error::Config)); a server that cannot be reached (the
//! message names host and port and suggests `pg_isready`), a refused login, or a user
//! without permission on the schema (the message names the `GRANT`s)
//! ([`Error::Backend`](iterjob::Error::Backend)); a schema from a newer iterjob
//! ([`Error::Corrupt`](iterjob::Error::Corrupt)). Messages name the server as
//! `postgres://user@host:port/database`, never with the password.

mod dialect;
mod error;
mod events;
mod keyset;
mod migrate;
pub mod replica;
mod store;
pub mod transactional;

pub use dialect::{PgDialect, PgKeyKind};
pub use keyset::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_SIZE, DEFAULT_MAX_PAGE_TIME, KeyValue, Keyset,
    KeysetCursor, KeysetError,
};
pub use migrate::{DEFAULT_SCHEMA, MAX_SCHEMA_LEN, SCHEMA_VERSION};
pub use replica::ReplicaLag;
pub use store::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, PgOptions, PgStore,
    notify_channel,
};
pub use transactional::{Transactional, TransactionalJob};

/// Re-exported so users need not depend on sqlx to configure the store or read rows.
pub use sqlx;
pub use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
