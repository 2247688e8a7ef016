//! Opening the control catalog at start: created and upgraded if needed,
//! an older installation's files imported once, what a stopped migrator
//! left resolved (drops and offboardings finished by [`crate::lifecycle`]),
//! and what an older version made brought to today's rights
//! ([`crate::rights`]). Tried once before the migrator answers; when
//! PostgreSQL is not reachable, retried in the background with backoff while
//! the migrator reports itself not ready.

use std::sync::Arc;
use std::time::Duration;

use slog::{error, info, warn};

use crate::state::State;
use crate::{catalog, lifecycle, rights, upgrade};

/// Open the catalog now, or keep trying in the background.
pub async fn open_or_retry(state: &Arc<State>, data_dir: &std::path::Path) {
    if let Err(e) = try_open_catalog(state, data_dir).await {
        tokio::spawn(open_catalog(state.clone(), data_dir.to_path_buf(), e));
    }
}

/// Keep trying [`try_open_catalog`], with backoff, one log line per failed
/// attempt; meanwhile the migrator reports itself not ready.
async fn open_catalog(state: Arc<State>, data_dir: std::path::PathBuf, first: String) {
    let mut backoff = Duration::from_millis(200);
    let mut error = first;
    for attempt in 1.. {
        warn!(state.log, "cannot open the control catalog (is PostgreSQL reachable?); retrying";
              "catalog" => &state.catalog_name, "error" => &error, "attempt" => attempt,
              "retry_in_ms" => backoff.as_millis() as u64);
        *state
            .catalog_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
        tokio::time::sleep(backoff).await;
        match try_open_catalog(&state, &data_dir).await {
            Ok(()) => return,
            Err(e) => {
                error = e;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Open the control catalog (creating and upgrading it), import an older
/// installation's files once, and resolve what a stopped migrator left.
async fn try_open_catalog(state: &State, data_dir: &std::path::Path) -> Result<(), String> {
    let log = &state.log;
    let opened = async {
        let client = state.admin.connect(None).await?;
        catalog::Catalog::open(
            state.admin.config(),
            state.admin.tls(),
            &client,
            &state.catalog_name,
            state.history_retention_days,
        )
        .await
    }
    .await;
    let catalog = opened.map_err(|e| e.to_wire().1.message)?;
    match upgrade::import(
        &catalog,
        &state.admin,
        state.platform_connection_limit,
        data_dir,
    )
    .await
    {
        Ok(Some(lines)) => {
            for l in lines {
                info!(log, "upgrade import"; "what" => l);
            }
        }
        Ok(None) => {}
        // Not marked done: the next start tries again.
        Err(e) => {
            error!(log, "importing the older installation failed"; "data_dir" => %data_dir.display(), "error" => ?e)
        }
    }
    match state.admin.connect(None).await {
        Ok(client) => match catalog.resolve_leftovers(&client).await {
            Ok(done) => {
                for what in done {
                    warn!(log, "resolved a stopped migrator's leftover"; "what" => what);
                }
            }
            Err(e) => warn!(log, "could not resolve leftovers"; "error" => ?e),
        },
        Err(e) => warn!(log, "could not resolve leftovers"; "error" => ?e),
    }
    // Databases and roles an older version made get today's rights.
    let settled = match catalog.conn().await {
        Ok(c) => rights::settle_all(&state.admin, &**c, state.platform_connection_limit).await,
        Err(e) => Err(e),
    };
    match settled {
        Ok(lines) => {
            for l in lines {
                info!(log, "rights brought up to date"; "what" => l);
            }
        }
        Err(e) => {
            warn!(log, "could not bring every database's rights up to date; retried at the next start"; "error" => ?e)
        }
    }
    info!(log, "control catalog open"; "catalog" => &state.catalog_name);
    let _ = state.catalog.set(catalog);
    state.catalog_open.notify_waiters();
    // Drops and offboardings a stopped migrator left are finished.
    for what in lifecycle::resume(state).await {
        warn!(log, "resolved a stopped migrator's drop"; "what" => what);
    }
    Ok(())
}
