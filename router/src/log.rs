//! Logging through slog to stderr, filtered by `RUST_LOG`'s level.

use slog::{o, Drain, Level, LevelFilter, Logger};
use stonescriptdb_shared::config::LogLevel;

pub fn logger(level: LogLevel) -> Logger {
    let level = match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    };
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = LevelFilter::new(drain, level).fuse();
    Logger::root(drain, o!("process" => "router"))
}
