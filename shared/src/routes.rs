//! Every route of the HTTP API, the methods and the query parameters it
//! takes, in one table: the router answers 404 and 405 (with `Allow`) from it
//! without bothering the migrator, whoever serves a route refuses a query
//! parameter it does not list, both binaries dispatch on its [`RouteId`]
//! (an exhaustive `match`: a route added here without a handler does not
//! compile), and the OpenAPI document's paths are built from it.

use crate::request::Query;

/// Who serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Router,
    Migrator,
}

/// Which route a request is for: the router's own, or one it forwards to
/// the migrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Router(RouterRoute),
    Migrator(MigratorRoute),
}

/// The routes the router answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterRoute {
    Call,
    Health,
    HealthLive,
    HealthReady,
    Metrics,
    OpenApi,
}

/// The routes the router forwards to the migrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigratorRoute {
    Register,
    Migrate,
    AdminDatabases,
    AdminCreateTenant,
    AdminAdopt,
    AdminRefresh,
    AdminDeployments,
    Platforms,
    PlatformRegister,
    SchemaUpload,
    Schemas,
    PlatformDatabases,
    DatabaseCreate,
    AdminDatabaseCreate,
    AdminPlatformToken,
    V2Migrate,
    MigrateAll,
    MigrateAllJob,
    PlatformFunctions,
    DropDatabase,
    Offboard,
    SchemaVersions,
    V1Versions,
    Export,
}

/// One route: what it is, a path pattern (`{name}` is one path segment),
/// its methods and the query parameters it defines (any other is refused,
/// POST routes included, so `?dry_run=true` can never be ignored).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub id: RouteId,
    pub pattern: &'static str,
    pub methods: &'static [&'static str],
    pub query: &'static [&'static str],
}

/// A route the router answers.
const fn r(id: RouterRoute, pattern: &'static str, methods: &'static [&'static str]) -> Route {
    Route {
        id: RouteId::Router(id),
        pattern,
        methods,
        query: &[],
    }
}

/// A route the migrator answers.
const fn m(id: MigratorRoute, pattern: &'static str, methods: &'static [&'static str]) -> Route {
    q(id, pattern, methods, &[])
}

/// A route the migrator answers that takes query parameters.
const fn q(
    id: MigratorRoute,
    pattern: &'static str,
    methods: &'static [&'static str],
    query: &'static [&'static str],
) -> Route {
    Route {
        id: RouteId::Migrator(id),
        pattern,
        methods,
        query,
    }
}

use MigratorRoute as M;
use RouterRoute as R;

/// The only list of routes.
pub const ROUTES: &[Route] = &[
    r(R::Call, "/call", &["POST"]),
    r(R::Health, "/health", &["GET"]),
    r(R::HealthLive, "/health/live", &["GET"]),
    r(R::HealthReady, "/health/ready", &["GET"]),
    r(R::Metrics, "/metrics", &["GET"]),
    r(R::OpenApi, "/openapi.json", &["GET"]),
    m(M::Register, "/register", &["POST"]),
    m(M::Migrate, "/migrate", &["POST"]),
    q(
        M::AdminDatabases,
        "/admin/databases",
        &["GET"],
        &["platform", "size"],
    ),
    m(M::AdminCreateTenant, "/admin/create-tenant", &["POST"]),
    m(M::AdminAdopt, "/admin/adopt", &["POST"]),
    m(M::AdminRefresh, "/admin/refresh", &["POST"]),
    q(
        M::AdminDeployments,
        "/admin/deployments",
        &["GET"],
        &["platform", "database", "limit"],
    ),
    m(M::Platforms, "/platforms", &["GET"]),
    m(M::PlatformRegister, "/platform/register", &["POST"]),
    m(M::SchemaUpload, "/platform/{platform}/schema", &["POST"]),
    m(M::Schemas, "/platform/{platform}/schemas", &["GET"]),
    q(
        M::PlatformDatabases,
        "/platform/{platform}/databases",
        &["GET"],
        &["schema"],
    ),
    m(M::DatabaseCreate, "/database/create", &["POST"]),
    m(M::AdminDatabaseCreate, "/admin/database/create", &["POST"]),
    m(M::AdminPlatformToken, "/admin/platform-token", &["POST"]),
    m(M::V2Migrate, "/v2/migrate", &["POST"]),
    m(M::MigrateAll, "/v2/migrate-all", &["POST"]),
    m(M::MigrateAllJob, "/v2/migrate-all/{job_id}", &["GET"]),
    q(
        M::PlatformFunctions,
        "/platform/{platform}/functions",
        &["GET"],
        &["tenant_id", "database", "schema_name", "uuid"],
    ),
    q(
        M::DropDatabase,
        "/admin/databases/{database}",
        &["DELETE"],
        &["confirm", "backup"],
    ),
    q(
        M::Offboard,
        "/admin/platforms/{platform}",
        &["DELETE"],
        &["confirm", "backup"],
    ),
    m(
        M::SchemaVersions,
        "/platform/{platform}/schemas/{name}/versions",
        &["GET"],
    ),
    m(M::V1Versions, "/platform/{platform}/versions", &["GET"]),
    m(M::Export, "/admin/databases/{database}/export", &["GET"]),
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
    /// Who serves it.
    pub fn served(&self) -> Served {
        match self.id {
            RouteId::Router(_) => Served::Router,
            RouteId::Migrator(_) => Served::Migrator,
        }
    }

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
        assert_eq!(r.served(), Served::Migrator);
        assert_eq!(r.id, RouteId::Migrator(MigratorRoute::Register));
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

    /// Each route is listed once: the dispatch on its id reaches one pattern.
    #[test]
    fn each_route_id_is_listed_once() {
        for (i, route) in ROUTES.iter().enumerate() {
            let same = ROUTES[i + 1..].iter().find(|other| other.id == route.id);
            assert!(same.is_none(), "{:?} is listed twice", route.id);
            let same = ROUTES[i + 1..].iter().find(|o| o.pattern == route.pattern);
            assert!(same.is_none(), "{} is listed twice", route.pattern);
        }
    }
}
