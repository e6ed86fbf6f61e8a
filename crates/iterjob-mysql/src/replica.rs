//! [`ReplicaLag`]: the default backpressure's replica-lag signal for MySQL and
//! MariaDB replication (`iterjob worker --replica-url mysql://…`).

use std::time::Duration;

use iterjob::{BoxError, Health, HealthCheck};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Column, Row};

/// A [`HealthCheck`] on a MySQL or MariaDB replica's lag, as the replica reports it
/// in `SHOW REPLICA STATUS` (MySQL 8.0.22+, MariaDB 10.5.1+): `Seconds_Behind_Source`
/// (MySQL) or `Seconds_Behind_Master` (MariaDB). Every kind that obeys the default
/// backpressure backs off while it is above `max_lag`, while the replica's SQL
/// thread is stopped (the lag is then unknown: NULL), and while the server cannot
/// be asked.
///
/// ```no_run
/// # fn demo() -> iterjob::Result<()> {
/// use std::time::Duration;
/// use iterjob::Registry;
/// use iterjob_mysql::ReplicaLag;
///
/// let mut registry = Registry::new();
/// registry.health_check(ReplicaLag::new("mysql://monitor@replica.internal/app", Duration::from_secs(2))?);
/// # Ok(()) }
/// ```
///
/// The account needs the `REPLICATION CLIENT` privilege (MySQL) or
/// `REPLICA MONITOR` (MariaDB 10.5.9+). The connection is made at the first check,
/// with a pool of one.
pub struct ReplicaLag {
    name: String,
    pool: MySqlPool,
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
    /// A check on the replica at `url`, throttling above `max_lag`.
    ///
    /// # Errors
    /// [`iterjob::Error::Config`] for a URL that does not parse.
    pub fn new(url: &str, max_lag: Duration) -> iterjob::Result<Self> {
        let options: MySqlConnectOptions = url.parse().map_err(|e| {
            iterjob::Error::Config(format!(
                "replica URL is not a MySQL URL ({e}); give mysql://user@host:port/database"
            ))
        })?;
        let name = format!("replica-lag:{}:{}", options.get_host(), options.get_port());
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(ReplicaLag {
            name,
            pool,
            max_lag,
        })
    }

    /// The lag now, as the replica reports it.
    ///
    /// # Errors
    /// The server cannot be reached, is not a replica, or its replication is
    /// stopped (the message says which, with the replica's last error).
    pub async fn lag(&self) -> Result<Duration, BoxError> {
        let rows = sqlx::query("SHOW REPLICA STATUS")
            .fetch_all(&self.pool)
            .await?;
        let Some(row) = rows.first() else {
            return Err(format!(
                "{} is not a replica (SHOW REPLICA STATUS returned no row): name a replica's \
                 URL (--replica-url)",
                self.server()
            )
            .into());
        };
        let seconds = int_column(row, &["Seconds_Behind_Source", "Seconds_Behind_Master"]);
        match seconds {
            Some(seconds) => Ok(Duration::from_secs(seconds)),
            None => {
                let error = text_column(row, &["Last_SQL_Error", "Last_Error"])
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "no error reported".into());
                Err(format!(
                    "{} does not know its lag (Seconds_Behind_Master is NULL): its \
                     replication threads are stopped or reconnecting ({error})",
                    self.server()
                )
                .into())
            }
        }
    }

    fn server(&self) -> &str {
        self.name.trim_start_matches("replica-lag:")
    }
}

/// The first of `names` the row has, as an integer (whatever the server's type).
fn int_column(row: &MySqlRow, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|name| {
        row.columns()
            .iter()
            .any(|c| c.name() == *name)
            .then_some(())?;
        if let Ok(v) = row.try_get::<Option<u64>, _>(*name) {
            return v;
        }
        if let Ok(v) = row.try_get::<Option<i64>, _>(*name) {
            return v.map(|v| v.max(0) as u64);
        }
        text_column(row, &[name]).and_then(|s| s.trim().parse().ok())
    })
}

/// The first of `names` the row has, as text.
fn text_column(row: &MySqlRow, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        row.columns()
            .iter()
            .any(|c| c.name() == *name)
            .then_some(())?;
        row.try_get::<Option<String>, _>(*name)
            .ok()
            .flatten()
            .or_else(|| {
                row.try_get::<Option<Vec<u8>>, _>(*name)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
    })
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
                "replica {} is {} s behind its source, above the {:?} allowed \
                 (--max-replica-lag)",
                self.server(),
                lag.as_secs(),
                self.max_lag
            ))
        } else {
            Health::Healthy
        })
    }
}
