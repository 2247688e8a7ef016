//! `stonescriptdb-migrator`: parses flags and configuration (shared with
//! the router) and runs [`stonescriptdb_migrator::serve`] — all schema work,
//! served on the Unix socket `MIGRATOR_SOCKET` only.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use stonescriptdb_startup as startup;

fn main() -> ExitCode {
    // The migrator waits on PostgreSQL most of the time: tokio's default.
    startup::main(
        stonescriptdb_shared::config::Binary::Migrator,
        |_, _| None,
        stonescriptdb_migrator::serve,
    )
}
