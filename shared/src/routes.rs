//! Every route of the HTTP API and the methods it takes, in one table: the
//! router answers 404 and 405 (with `Allow`) from it without bothering the
//! migrator, the migrator routes by it, and a test checks `docs/openapi.json`
//! against it.

/// Who serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Router,
    Migrator,
}

/// One route: a path pattern (`{name}` is one path segment) and its methods.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub pattern: &'static str,
    pub methods: &'static [&'static str],
    pub served: Served,
}

const fn r(pattern: &'static str, methods: &'static [&'static str], served: Served) -> Route {
    Route {
        pattern,
        methods,
        served,
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
    r("/admin/databases", &["GET"], M),
    r("/admin/create-tenant", &["POST"], M),
    r("/admin/adopt", &["POST"], M),
    r("/admin/refresh", &["POST"], M),
    r("/admin/deployments", &["GET"], M),
    r("/platforms", &["GET"], M),
    r("/platform/register", &["POST"], M),
    r("/platform/{platform}/schema", &["POST"], M),
    r("/platform/{platform}/schemas", &["GET"], M),
    r("/platform/{platform}/databases", &["GET"], M),
    r("/database/create", &["POST"], M),
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
    fn a_parameter_segment_never_shadows_a_fixed_route() {
        // /platform/register is listed before /platform/{platform}/…, and
        // has a different segment count anyway.
        for route in ROUTES {
            let (found, _) = find(route.pattern).unwrap();
            assert_eq!(found.pattern, route.pattern);
        }
    }
}
