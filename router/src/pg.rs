//! The admin connection settings as a `tokio_postgres::Config`. Every pool
//! connection gets a fixed `search_path` (`public`) and an application name.

use stonescriptdb_shared::config::{ConfigError, DbTarget};

pub fn base_config(target: &DbTarget) -> Result<tokio_postgres::Config, ConfigError> {
    let mut cfg = match target {
        DbTarget::Url(url) => url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?,
        DbTarget::Fields {
            host,
            port,
            name,
            user,
            password,
        } => {
            let mut c = tokio_postgres::Config::new();
            c.host(host).port(*port).dbname(name).user(user);
            if let Some(p) = password {
                c.password(p);
            }
            c
        }
    };
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if cfg.get_user().is_none() {
        cfg.user("postgres");
    }
    cfg.application_name("stonescriptdb-router");
    cfg.options("-c search_path=public");
    Ok(cfg)
}
