//! Every route of the HTTP API, the methods and the query parameters it
//! takes, in one table: the router answers 404 and 405 (with `Allow`) from it
//! without bothering the migrator, whoever serves a route refuses a query
//! parameter it does not list, the migrator routes by it, and a test checks
//! `docs/openapi.json` against it.

use crate::request::Query;

/// Who serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Router,
    Migrator,
}

/// One route: a path pattern (`{name}` is one path segment), its methods
/// and the query parameters it defines (any other is refused, POST routes
/// included, so `?dry_run=true` can never be ignored).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub pattern: &'static str,
    pub methods: &'static [&'static str],
    pub served: Served,
    pub query: &'static [&'static str],
}

const fn r(pattern: &'static str, methods: &'static [&'static str], served: Served) -> Route {
    q(pattern, methods, served, &[])
}

/// A route that takes query parameters.
const fn q(
    pattern: &'static str,
    methods: &'static [&'static str],
    served: Served,
    query: &'static [&'static str],
) -> Route {
    Route {
        pattern,
        methods,
        served,
        query,
    }
}

use Served::{Migrator as M, Router as R};

pub const ROUTES: &[Route] = &[
    r("/call", &["POST"], R),
    r("/health", &["GET"], R),
    r("/health/live", &["GET"], R),
    r("/health/ready", &["GET"], R),
    r("/metrics", &["GET"], R),
    r("/openapi.json", &["GET"], R),
    r("/register", &["POST"], M),
    r("/migrate", &["POST"], M),
    q("/admin/databases", &["GET"], M, &["platform"]),
    r("/admin/create-tenant", &["POST"], M),
    r("/admin/adopt", &["POST"], M),
    r("/admin/refresh", &["POST"], M),
    q(
        "/admin/deployments",
        &["GET"],
        M,
        &["platform", "database", "limit"],
    ),
    r("/platforms", &["GET"], M),
    r("/platform/register", &["POST"], M),
    r("/platform/{platform}/schema", &["POST"], M),
    r("/platform/{platform}/schemas", &["GET"], M),
    q("/platform/{platform}/databases", &["GET"], M, &["schema"]),
    r("/database/create", &["POST"], M),
    r("/admin/database/create", &["POST"], M),
    r("/admin/platform-token", &["POST"], M),
    r("/v2/migrate", &["POST"], M),
];

/// The route `path` belongs to, with the values of its `{…}` segments.
pub fn find(path: &str) -> Option<(&'static Route, Vec<&str>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ROUTES.iter().find_map(|route| {
        let pat: Vec<&str> = route.pattern.trim_start_matches('/').split('/').collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in pat.iter().zip(&segs) {
            if p.starts_with('{') {
                params.push(*s);
            } else if p != s {
                return None;
            }
        }
        Some((route, params))
    })
}

impl Route {
    pub fn allows(&self, method: &str) -> bool {
        self.methods.contains(&method)
    }

    /// The `Allow` header value.
    pub fn allow(&self) -> String {
        self.methods.join(", ")
    }

    /// The request's query string, read strictly: every parameter one this
    /// route defines, each given once and not empty. `Err` is the message
    /// of the 400 that names the parameter.
    pub fn read_query(&self, raw: Option<&str>) -> Result<Query, String> {
        let query = Query::parse(raw)?;
        query.check(self.query)?;
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route_and_parameters() {
        let (r, p) = find("/platform/myapp/schemas").unwrap();
        assert_eq!(r.pattern, "/platform/{platform}/schemas");
        assert_eq!(p, vec!["myapp"]);
        let (r, p) = find("/platform/register").unwrap();
        assert_eq!(r.pattern, "/platform/register");
        assert!(p.is_empty());
        assert!(find("/platform/a/b/c").is_none());
        assert!(find("/nope").is_none());
        let (r, _) = find("/register").unwrap();
        assert!(r.allows("POST") && !r.allows("OPTIONS"));
        assert_eq!(r.allow(), "POST");
        assert_eq!(r.served, Served::Migrator);
    }

    #[test]
    fn every_route_refuses_query_parameters_it_does_not_define() {
        let (register, _) = find("/register").unwrap();
        let e = register.read_query(Some("dry_run=true")).unwrap_err();
        assert!(e.contains("\"dry_run\"") && e.contains("takes none"), "{e}");
        assert!(register.read_query(None).is_ok());
        assert!(register.read_query(Some("")).is_ok());
        let (dbs, _) = find("/platform/a/databases").unwrap();
        let mut q = dbs.read_query(Some("schema=tenant_db")).unwrap();
        assert_eq!(q.take("schema").as_deref(), Some("tenant_db"));
        let e = dbs.read_query(Some("schema=")).unwrap_err();
        assert!(e.contains("\"schema\"") && e.contains("empty"), "{e}");
        let e = dbs.read_query(Some("schema")).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn a_parameter_segment_never_shadows_a_fixed_route() {
        // /platform/register is listed before /platform/{platform}/…, and
        // has a different segment count anyway.
        for route in ROUTES {
            let (found, _) = find(route.pattern).unwrap();
            assert_eq!(found.pattern, route.pattern);
        }
    }
}
