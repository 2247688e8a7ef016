//! `stonescriptdb`: the command line of StoneScriptDB Gateway for people
//! and CI. Parses the command (`args`), reads the gateway's URL and tokens
//! from the environment (`client`), runs the command (`commands`) on a
//! small runtime, prints its answer and exits 0, or prints the gateway's
//! message and exits 1.
#![forbid(unsafe_code)]

mod args;
mod check;
mod client;
mod commands;
mod pack;
mod show;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: args::Cli = argh::from_env();
    let env = client::Env::from_lookup(|k| std::env::var(k).ok());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start: {e}")),
    };
    let result = runtime.block_on(async {
        let gw = client::Gateway::new(&env)?;
        commands::run(&gw, cli.json, cli.command).await
    });
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.0),
    }
}

fn fail(message: &str) -> ExitCode {
    let message = message.trim_end();
    match message.rsplit_once('\n') {
        // a report first (stdout), the failure line last (stderr)
        Some((report, line)) => {
            println!("{report}");
            eprintln!("stonescriptdb: {line}");
        }
        None => eprintln!("stonescriptdb: {message}"),
    }
    ExitCode::FAILURE
}
