//! `dashboard`, and `worker --dashboard`: the web dashboard of `iterjob-dashboard`,
//! served against the command line's store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use iterjob::{CancellationToken, Registry, Store};
use iterjob_dashboard::Dashboard;

/// Arguments of `dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to listen on. Anything but loopback requires --token.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ITERJOB_DASHBOARD_BIND")]
    pub bind: SocketAddr,
    /// Token, CSV uploads.
    #[command(flatten)]
    pub options: DashboardOptions,
}

/// Dashboard options shared by `dashboard` and `worker --dashboard`.
#[derive(Debug, Args)]
pub struct DashboardOptions {
    /// Auth token every request must carry (bearer header, or log in with it in the
    /// browser); at least 16 characters. Required to bind a non-loopback address.
    #[arg(
        long = "token",
        env = "ITERJOB_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A kind whose jobs read a CSV file, as KIND=PARAM: its enqueue form takes an
    /// upload and passes the stored file's path in parameter PARAM (repeatable).
    #[arg(long = "csv-upload", value_name = "KIND=PARAM", value_parser = parse_csv_kind, env = "ITERJOB_CSV_UPLOADS", value_delimiter = ',')]
    pub csv_upload: Vec<(String, String)>,
    /// Where uploaded CSV files are stored: a directory the workers read at the same
    /// path (a shared volume when they run on other machines).
    #[arg(long, default_value = "uploads", env = "ITERJOB_UPLOAD_DIR")]
    pub upload_dir: PathBuf,
    /// A host name (without port) the dashboard answers to besides localhost,
    /// 127.0.0.1 and [::1] (repeatable). Without a token only those loopback names
    /// are served, which stops DNS-rebinding pages; with a token any name is served
    /// unless this is given.
    #[arg(
        long = "allowed-host",
        value_name = "NAME",
        env = "ITERJOB_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Believe `X-Forwarded-Host` from a reverse proxy that rewrites `Host` (only if
    /// the proxy sets that header itself and never passes a client's through).
    #[arg(long, env = "ITERJOB_TRUST_FORWARDED_HEADERS")]
    pub trust_forwarded_headers: bool,
    /// Browsers reach the dashboard over HTTPS (a TLS-terminating proxy in front):
    /// its cookies are marked `Secure` and actions must come from an https:// page.
    #[arg(long, env = "ITERJOB_HTTPS")]
    pub https: bool,
}

fn parse_csv_kind(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((kind, param)) if !kind.trim().is_empty() && !param.trim().is_empty() => {
            Ok((kind.trim().to_string(), param.trim().to_string()))
        }
        _ => Err(format!(
            "`{s}` is not KIND=PARAM (e.g. import_customers=path)"
        )),
    }
}

/// The dashboard for this store and registry, with these options.
pub(crate) fn build(
    store: Arc<dyn Store>,
    registry: &Registry,
    options: &DashboardOptions,
) -> Result<Dashboard> {
    let mut dashboard = Dashboard::new(store)
        .registry(registry.clone())
        .allowed_hosts(options.allowed_hosts.iter().cloned())
        .trust_forwarded_headers(options.trust_forwarded_headers)
        .served_over_https(options.https);
    if let Some(token) = &options.token {
        dashboard = dashboard.token(token.clone());
    }
    for (kind, param) in &options.csv_upload {
        if !registry.contains(kind) {
            bail!(
                "--csv-upload names kind `{kind}`, which this binary does not register (known: {})",
                registry.kinds().join(", ")
            );
        }
        dashboard = dashboard.csv_upload(kind, param, &options.upload_dir);
    }
    Ok(dashboard)
}

/// Binds the dashboard on `addr` (refusing a non-loopback address without a token)
/// and serves it in the background until `shutdown`.
pub(crate) async fn spawn(
    dashboard: Dashboard,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let (listener, router) = dashboard.bind(addr).await?;
    let local = listener
        .local_addr()
        .with_context(|| format!("reading the address bound for {addr}"))?;
    eprintln!("dashboard on http://{local}/");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the dashboard server failed");
        }
    }))
}

/// `dashboard`: serves until SIGTERM or Ctrl-C.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    registry: Registry,
    args: DashboardArgs,
) -> Result<()> {
    let dashboard = build(store, &registry, &args.options)?;
    let shutdown = CancellationToken::new();
    let server = spawn(dashboard, args.bind, shutdown.clone()).await?;
    crate::commands::wait_for_signal().await;
    shutdown.cancel();
    server.await.context("the dashboard task failed")?;
    Ok(())
}
