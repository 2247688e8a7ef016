//! The fleet runner: one deployment run over many databases, for `/migrate`
//! over a platform and `/v2/migrate`. A run is plain data ([`Run`]: the
//! databases in order and how to go through them), so it can be recorded
//! and picked up again; the route gives the step that deploys one database.
//! The runner starts the databases under a bound on concurrency (the canary
//! alone first; none after a failure with `stop_on_error`; none once the
//! migrator is stopping), counts them in the fleet gauges, and delivers each
//! database's [`Finished`] outcome to a channel as soon as it is known: the
//! route streams them as NDJSON lines or sums them up. The run is a task of
//! its own, so a client that goes away cuts no deployment short.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use stonescriptdb_shared::wire::{DeployStatus, DeploymentReport, Verification};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::catalog::Database;
use crate::error::MigratorError;
use crate::metrics::Fleet;
use crate::state::State;

/// A run over many databases.
#[derive(Debug, Clone)]
pub struct Run {
    pub databases: Vec<Database>,
    /// The first database alone first; if it fails, no other one starts.
    pub canary: bool,
    /// After a failure, no other database starts.
    pub stop_on_error: bool,
    /// Databases deployed at the same time (0 counts as 1).
    pub concurrency: usize,
}

/// What one database's step gives: its report, and what verification
/// found when it was verified.
pub type Done = (DeploymentReport, Option<Verification>);

#[derive(Debug)]
pub enum Outcome {
    Done(Box<Done>),
    Failed(MigratorError),
    /// Not started: the canary failed, or (`stop_on_error`) another database.
    NotAttempted,
    /// Not started: the migrator is stopping.
    Stopped,
}

/// One database's outcome, delivered as soon as it is known.
#[derive(Debug)]
pub struct Finished {
    /// Its place in [`Run::databases`].
    pub index: usize,
    pub database: String,
    pub outcome: Outcome,
}

impl Finished {
    /// Failed, or not started because the migrator is stopping (the
    /// database is not migrated; nothing else stopped it).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_) | Outcome::Stopped)
    }

    /// The outcome as a result: a database not started for another's
    /// failure is reported `not_attempted`.
    pub fn into_result(self) -> Result<Done, MigratorError> {
        match self.outcome {
            Outcome::Done(done) => Ok(*done),
            Outcome::Failed(e) => Err(e),
            Outcome::NotAttempted => Ok((
                DeploymentReport {
                    database: self.database,
                    status: DeployStatus::NotAttempted,
                    ..DeploymentReport::default()
                },
                None,
            )),
            Outcome::Stopped => Err(MigratorError::DatabaseUnavailable(format!(
                "the migrator is stopping: {} was not migrated (run the migration again once it is back)",
                self.database
            ))),
        }
    }

    /// The database's report, a failure's error in it (status `failed`).
    pub fn into_report(self) -> Done {
        let database = self.database.clone();
        self.into_result()
            .unwrap_or_else(|e| (e.report(&database), None))
    }
}

/// Start `run` in a task of its own, `step` deploying each database; the
/// outcomes come out of the returned channel as the databases finish (in
/// that order), and it closes when the run is over.
pub fn start<S, F>(state: Arc<State>, run: Run, step: S) -> mpsc::Receiver<Finished>
where
    S: Fn(Database) -> F + Send + 'static,
    F: Future<Output = Result<Done, MigratorError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    state.fleet_runs.send_modify(|n| *n += 1);
    let running = Running(state.clone());
    tokio::spawn(async move {
        let _running = running;
        let out = Sink {
            tx,
            fleet: state.metrics.fleet(run.databases.len()),
        };
        go(&state.stopping, run, step, out).await;
    });
    rx
}

/// Wait until no run is in progress (the migrator stopping: [`State::stop`]
/// was called, so none starts another database).
pub async fn drained(state: &State) {
    let mut runs = state.fleet_runs.subscribe();
    let _ = runs.wait_for(|n| *n == 0).await;
}

/// A run in [`State::fleet_runs`] while it lasts.
struct Running(Arc<State>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fleet_runs.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Every outcome of a run, once it is over, in the order of its databases.
pub async fn in_order(mut outcomes: mpsc::Receiver<Finished>) -> Vec<Finished> {
    let mut finished = Vec::new();
    while let Some(f) = outcomes.recv().await {
        finished.push(f);
    }
    finished.sort_by_key(|f| f.index);
    finished
}

/// Where outcomes go: the channel (nobody reading it any more stops
/// nothing) and the fleet gauges.
struct Sink<'a> {
    tx: mpsc::Sender<Finished>,
    fleet: Fleet<'a>,
}

impl Sink<'_> {
    async fn deliver(&mut self, f: Finished) {
        self.fleet.one_done();
        let _ = self.tx.send(f).await;
    }
}

/// The run itself; `stopping` is [`State::stopping`].
async fn go<S, F>(stopping: &watch::Sender<bool>, run: Run, step: S, mut out: Sink<'_>)
where
    S: Fn(Database) -> F,
    F: Future<Output = Result<Done, MigratorError>> + Send + 'static,
{
    let concurrency = run.concurrency.max(1);
    let stopping = || *stopping.borrow();
    let mut set: JoinSet<Result<Done, MigratorError>> = JoinSet::new();
    // which database each task deploys (a task that panics says nothing)
    let mut running: HashMap<tokio::task::Id, (usize, String)> = HashMap::new();
    let mut queue = run.databases.into_iter().enumerate();
    // the canary failed: nothing else starts
    let mut stop = false;
    let mut failed_seen = false;
    if run.canary {
        if let Some((index, db)) = queue.next() {
            let database = db.name.clone();
            let outcome = if stopping() {
                Outcome::Stopped
            } else {
                outcome(step(db).await)
            };
            let f = Finished {
                index,
                database,
                outcome,
            };
            stop = matches!(f.outcome, Outcome::Failed(_));
            failed_seen = f.failed();
            out.deliver(f).await;
        }
    }
    let blocked = |failed_seen: bool| stop || (run.stop_on_error && failed_seen);
    for (index, db) in queue {
        // a free place, delivering what finishes meanwhile
        while !blocked(failed_seen) && !stopping() && set.len() >= concurrency {
            let Some(done) = set.join_next_with_id().await else {
                break;
            };
            let f = joined(&mut running, done);
            failed_seen |= f.failed();
            out.deliver(f).await;
        }
        // and the others done by now, to learn about failures early
        while let Some(done) = set.try_join_next_with_id() {
            let f = joined(&mut running, done);
            failed_seen |= f.failed();
            out.deliver(f).await;
        }
        let not_started = |outcome| Finished {
            index,
            database: db.name.clone(),
            outcome,
        };
        if blocked(failed_seen) {
            out.deliver(not_started(Outcome::NotAttempted)).await;
        } else if stopping() {
            out.deliver(not_started(Outcome::Stopped)).await;
        } else {
            let database = db.name.clone();
            let handle = set.spawn(step(db));
            running.insert(handle.id(), (index, database));
        }
    }
    while let Some(done) = set.join_next_with_id().await {
        let f = joined(&mut running, done);
        out.deliver(f).await;
    }
}

fn outcome(result: Result<Done, MigratorError>) -> Outcome {
    match result {
        Ok(done) => Outcome::Done(Box::new(done)),
        Err(e) => Outcome::Failed(e),
    }
}

/// A finished task as its database's outcome.
fn joined(
    running: &mut HashMap<tokio::task::Id, (usize, String)>,
    done: Result<(tokio::task::Id, Result<Done, MigratorError>), tokio::task::JoinError>,
) -> Finished {
    let (id, result) = match done {
        Ok((id, result)) => (id, result),
        Err(e) => (
            e.id(),
            Err(MigratorError::Internal(format!(
                "the deployment task failed: {e}"
            ))),
        ),
    };
    let (index, database) = running.remove(&id).unwrap_or_default();
    Finished {
        index,
        database,
        outcome: outcome(result),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use stonescriptdb_shared::catalog::{DbKind, DbState};

    use super::*;
    use crate::metrics::Metrics;

    fn db(name: &str) -> Database {
        Database {
            name: name.into(),
            platform: "p".into(),
            kind: DbKind::V2,
            state: DbState::Ready,
            tenant_id: None,
            schema_name: None,
            database_id: None,
            schema_version: None,
            pinned: false,
            created_at: String::new(),
        }
    }

    fn run(names: &[&str], canary: bool, stop_on_error: bool, concurrency: usize) -> Run {
        Run {
            databases: names.iter().map(|n| db(n)).collect(),
            canary,
            stop_on_error,
            concurrency,
        }
    }

    fn updated(name: &str) -> Done {
        let report = DeploymentReport {
            database: name.into(),
            status: DeployStatus::Updated,
            ..DeploymentReport::default()
        };
        (report, None)
    }

    /// Run `run` to its end with `step`; its outcomes as (index, database,
    /// status) in the order they were delivered.
    async fn outcomes<S, F>(run: Run, stopping: bool, step: S) -> Vec<(usize, String, DeployStatus)>
    where
        S: Fn(Database) -> F,
        F: Future<Output = Result<Done, MigratorError>> + Send + 'static,
    {
        let metrics = Metrics::default();
        let stop = watch::Sender::new(stopping);
        let (tx, mut rx) = mpsc::channel(1000);
        let out = Sink {
            tx,
            fleet: metrics.fleet(run.databases.len()),
        };
        go(&stop, run, step, out).await;
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            let (index, database) = (f.index, f.database.clone());
            got.push((index, database, f.into_report().0.status));
        }
        assert!(
            metrics
                .render()
                .contains("stonescriptdb_migrator_fleet_databases_pending 0"),
            "every database was counted done"
        );
        got
    }

    fn fails_on(
        bad: &'static str,
    ) -> impl Fn(Database) -> std::future::Ready<Result<Done, MigratorError>> {
        move |d: Database| {
            std::future::ready(if d.name == bad {
                Err(MigratorError::Internal("boom".into()))
            } else {
                Ok(updated(&d.name))
            })
        }
    }

    #[tokio::test]
    async fn a_failed_canary_starts_nothing_else() {
        let got = outcomes(run(&["a", "b", "c"], true, false, 4), false, fails_on("a")).await;
        use DeployStatus::*;
        assert_eq!(
            got,
            [
                (0, "a".into(), Failed),
                (1, "b".into(), NotAttempted),
                (2, "c".into(), NotAttempted)
            ]
        );
        // a canary that passes lets the others run, a failure among them
        // stopping nothing without stop_on_error
        let got = outcomes(run(&["a", "b", "c"], true, false, 1), false, fails_on("b")).await;
        assert_eq!(
            got,
            [
                (0, "a".into(), Updated),
                (1, "b".into(), Failed),
                (2, "c".into(), Updated)
            ]
        );
    }

    #[tokio::test]
    async fn stop_on_error_starts_nothing_after_a_failure() {
        let got = outcomes(
            run(&["a", "b", "c", "d"], false, true, 1),
            false,
            fails_on("b"),
        )
        .await;
        use DeployStatus::*;
        assert_eq!(
            got,
            [
                (0, "a".into(), Updated),
                (1, "b".into(), Failed),
                (2, "c".into(), NotAttempted),
                (3, "d".into(), NotAttempted)
            ]
        );
    }

    /// Once the migrator is stopping no database starts; each is reported
    /// failed, with why.
    #[tokio::test]
    async fn a_stopping_migrator_starts_no_database() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let got = outcomes(
            run(&["a", "b"], true, false, 2),
            true,
            move |d: Database| {
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok(updated(&d.name)))
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(
            got,
            [
                (0, "a".into(), DeployStatus::Failed),
                (1, "b".into(), DeployStatus::Failed)
            ]
        );
        let got = outcomes(run(&["a", "b"], false, false, 2), true, fails_on("-")).await;
        assert!(
            got.iter().all(|(.., s)| *s == DeployStatus::Failed),
            "{got:?}"
        );
        let f = Finished {
            index: 0,
            database: "a".into(),
            outcome: Outcome::Stopped,
        };
        assert!(f.failed());
        let report = f.into_report().0;
        assert!(report.error.unwrap().message.contains("stopping"));
    }

    /// At most `concurrency` databases at once, and all of them that many.
    #[tokio::test]
    async fn concurrency_is_a_bound_and_is_used() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), most.clone());
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        let got = outcomes(run(&names, false, false, 3), false, move |d: Database| {
            let (now, most) = (n.clone(), m.clone());
            async move {
                let here = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(here, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(updated(&d.name))
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
        let mut indexes: Vec<usize> = got.iter().map(|(i, ..)| *i).collect();
        indexes.sort();
        assert_eq!(indexes, (0..names.len()).collect::<Vec<_>>());
    }

    /// A step that panics is that database's failure, not a lost database.
    #[tokio::test]
    async fn a_panicking_step_is_its_database_failure() {
        let got = outcomes(
            run(&["a", "b"], false, false, 2),
            false,
            |d: Database| async move {
                if d.name == "a" {
                    panic!("step panicked");
                }
                Ok(updated(&d.name))
            },
        )
        .await;
        let mut got = got;
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            [
                (0, "a".into(), DeployStatus::Failed),
                (1, "b".into(), DeployStatus::Updated)
            ]
        );
    }
}
