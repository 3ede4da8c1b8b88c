//! `vigil serve`: live ingest from the shippers people already run,
//! durable before acknowledgement, detection on every event, alerts
//! through an authenticated HTTP API.
//!
//! The path of an event: an ingest handler (`_bulk`, HEC, `/api/v1/events`)
//! parses the request, appends every event to the write-ahead log
//! (`vigil_store::wal`, group commit) and only then answers. A detection
//! thread follows the log, matches each event against the compiled rule
//! set, and folds matches into alerts in the database, recording in the
//! same transaction how far it got — so a crash at any point neither
//! loses an acknowledged event nor counts one twice.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod db;
mod detect;
mod http;
mod rule_walk;
pub mod rules;
pub mod syslog;

pub use config::Config;
pub use http::{app, openapi_document, AppState, RouteDoc, ROUTES};

use std::sync::Arc;

/// Starts everything and serves until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// Start-up failures: the data directory, the database, the log, the
/// listener, the rules.
pub async fn serve(config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    let db = db::Db::open(&config.data_dir.join("vigil.db"))?;
    if let Some(password) = db.ensure_admin()? {
        // Printed once, on the first start only; never logged elsewhere.
        eprintln!("vigil: created user 'admin' with password: {password}");
        eprintln!("vigil: (this is shown once; change it with `vigil users passwd admin`)");
    }
    let state = AppState::start(config.clone(), Arc::new(db))?;
    for (l, addr) in config
        .syslog
        .iter()
        .zip(syslog::spawn_all(&config.syslog, state.clone()).await?)
    {
        eprintln!("vigil: syslog {:?} listening on {addr}", l.protocol);
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    eprintln!(
        "vigil: listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let shutdown_state = state.clone();
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    shutdown_state.shutdown();
    Ok(())
}
