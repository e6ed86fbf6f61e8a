//! [`ReplicaLag`]: the default backpressure's replica-lag signal for PostgreSQL
//! streaming replication (`iterjob worker --replica-url postgres://…`).

use std::time::Duration;

use iterjob::{BoxError, Health, HealthCheck};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The replay lag, measured on the server the URL names:
/// * on a standby (`pg_is_in_recovery()`): zero when it has replayed all the WAL it
///   received, else how long ago the last transaction it replayed committed on the
///   primary (`now() - pg_last_xact_replay_timestamp()`): the standard measure, which
///   reads high when the primary was idle for a while before the WAL waiting now;
/// * on a primary: the largest `replay_lag` in `pg_stat_replication` (what its
///   standbys report), an error when it has none.
const LAG: &str = "\
SELECT pg_is_in_recovery() AS standby, \
       CASE WHEN pg_is_in_recovery() THEN \
            CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
                 THEN 0::float8 \
                 ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 0) \
            END \
            ELSE (SELECT COALESCE(MAX(EXTRACT(EPOCH FROM replay_lag)), 0)::float8 FROM pg_stat_replication) \
       END AS lag, \
       (SELECT count(*) FROM pg_stat_replication) AS standbys";

/// A [`HealthCheck`] on a PostgreSQL replica's lag: every kind that obeys the
/// default backpressure backs off while the replica replays more than `max_lag`
/// behind its primary, so a backfill never leaves the application's replica reads
/// stale. Give the replica's URL (or the primary's, to go by the lag its standbys
/// report in `pg_stat_replication`).
///
/// ```no_run
/// # fn demo() -> iterjob::Result<()> {
/// use std::time::Duration;
/// use iterjob::Registry;
/// use iterjob_postgres::ReplicaLag;
///
/// let mut registry = Registry::new();
/// registry.health_check(ReplicaLag::new(
///     "postgres://replica.internal/app",
///     Duration::from_secs(2),
/// )?);
/// # Ok(()) }
/// ```
///
/// The connection is made at the first check (a replica down at start throttles,
/// it does not stop the worker), with a pool of one.
pub struct ReplicaLag {
    name: String,
    pool: PgPool,
    max_lag: Duration,
}

impl std::fmt::Debug for ReplicaLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaLag")
            .field("name", &self.name)
            .field("max_lag", &self.max_lag)
            .finish_non_exhaustive()
    }
}

impl ReplicaLag {
    /// A check on the server at `url`, throttling above `max_lag`.
    ///
    /// # Errors
    /// [`iterjob::Error::Config`] for a URL that does not parse.
    pub fn new(url: &str, max_lag: Duration) -> iterjob::Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(iterjob::Error::Config(format!(
                "replica URL `{}` is not a PostgreSQL URL; give postgres://user@host:port/database",
                redact(url)
            )));
        }
        let options: PgConnectOptions = url.parse().map_err(|e| {
            iterjob::Error::Config(format!(
                "replica URL `{}` is not a PostgreSQL URL ({e}); give \
                 postgres://user@host:port/database",
                redact(url)
            ))
        })?;
        let name = format!(
            "replica-lag:{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(ReplicaLag {
            name,
            pool,
            max_lag,
        })
    }

    /// The lag now: how far the replica's replay is behind its primary.
    ///
    /// # Errors
    /// The server cannot be reached, or it is a primary with no standby.
    pub async fn lag(&self) -> Result<Duration, BoxError> {
        let row = sqlx::query(LAG).fetch_one(&self.pool).await?;
        let standby: bool = row.try_get("standby")?;
        let standbys: i64 = row.try_get("standbys")?;
        if !standby && standbys == 0 {
            return Err(format!(
                "{} is a primary with no standby streaming from it: name a replica's URL \
                 (--replica-url), or the primary of one",
                self.server()
            )
            .into());
        }
        let lag: f64 = row.try_get("lag")?;
        Ok(Duration::from_secs_f64(lag.max(0.0)))
    }

    fn server(&self) -> &str {
        self.name.trim_start_matches("replica-lag:")
    }
}

#[async_trait::async_trait]
impl HealthCheck for ReplicaLag {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Health, BoxError> {
        let lag = self.lag().await?;
        Ok(if lag > self.max_lag {
            Health::Throttle(format!(
                "replica {} replays {:.1} s behind its primary, above the {:?} allowed \
                 (--max-replica-lag)",
                self.server(),
                lag.as_secs_f64(),
                self.max_lag
            ))
        } else {
            Health::Healthy
        })
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme && url[scheme + 3..at].contains(':') => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
