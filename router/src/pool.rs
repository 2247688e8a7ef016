//! Connection pools: one deadpool pool per database, created lazily on the
//! first call, with a real cap across all pools. A pool connects as the
//! login role the control catalog names for the database's owner platform
//! (never the admin role), and remembers that platform: a call of another
//! platform never reaches it. A catalog notification drops a database's
//! pool, and with it its connections, prepared statements and function
//! catalog ([`Pools::invalidate`]).
//!
//! In a database the migrator deployed (it has the after-call function, so
//! every call statement leaves the session clean by itself), connections are
//! *lanes*: checked out of the pool once and shared. A call goes to the first
//! lane that is idle, or that is busy with calls expected to finish within
//! `CALL_PIPELINE_BUDGET_US` and still making progress; its statement is then
//! pipelined behind the ones in flight (one write, no wait for a free
//! connection, and the backend runs them back to back without sleeping in
//! between). Otherwise a new lane is opened, up to the per-pool limit; at the
//! limit the least busy lane takes the call. Calls of a function that takes
//! longer than the budget, or that has not been timed yet, only go to idle
//! lanes (or a new one), so they never hold up short calls. Databases
//! deployed by older versions use one connection per call, as before.
//!
//! Every open connection holds one permit of a global semaphore sized
//! `MAX_TOTAL_CONNECTIONS`. When a pool needs a new connection and no permit is
//! free, idle connections of *other* pools are closed to make room; if nothing
//! frees up within `POOL_WAIT_TIMEOUT_MS` the request gets 503
//! `pool_exhausted` — it never hangs. Pools idle for `POOL_IDLE_TIMEOUT_SECS`
//! are dropped by a sweeper task, and so are connections idle that long.
//!
//! Every open connection also holds a permit of its platform's semaphore,
//! sized `MAX_CONNECTIONS_PER_PLATFORM` (by default half the global cap), so
//! one platform's slow calls can never take all the connections and leave
//! another platform waiting for the global cap. The platform permit is taken
//! first, against the same deadline: when the platform's permits are all held,
//! idle connections of the platform's *other* databases are closed to make
//! room, else 503 `pool_exhausted` after `POOL_WAIT_TIMEOUT_MS`. A database
//! with shared connections that cannot open one more (either cap reached)
//! pipelines the call on its least busy lane instead of waiting. A platform's
//! semaphore is made when its first pool is built and forgotten by the
//! sweeper once no pool or connection of the platform is left.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult, Timeouts};
use deadpool::Runtime;
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use slog::{debug, info, Logger};
use stonescriptdb_shared::config::CallTimeouts;
use stonescriptdb_shared::names::{AFTER_CALL_CLEAN_VERSIONS, AFTER_CALL_FUNCTION};
use stonescriptdb_shared::wire::{PoolStats, PoolsStats};
use stonescriptdb_startup::tls::PgTls;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::Statement;

use crate::average::MovingAverage;
use crate::catalog::FunctionCache;
use crate::error::RouterError;
use crate::histogram::Histogram;

/// Limits the pools are built with.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub per_pool: usize,
    pub total: usize,
    /// `MAX_CONNECTIONS_PER_PLATFORM`: most connections the pools of one
    /// platform hold together.
    pub per_platform: usize,
    pub wait_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// `CALL_PIPELINE_BUDGET_US`: see the module documentation.
    pub pipeline_budget: Duration,
    /// `statement_timeout` of call sessions (`CALL_TIMEOUT_MS`, `CALL_TIMEOUTS`).
    pub call_timeouts: CallTimeouts,
}

impl PoolSettings {
    /// The session options of `platform`'s call connections: the startup
    /// `statement_timeout`, which `RESET ALL` after each call returns to.
    fn options(&self, base: Option<&str>, platform: &str) -> String {
        let ms = self.call_timeouts.of(platform).as_millis();
        match base {
            Some(b) if !b.is_empty() => format!("{b} -c statement_timeout={ms}"),
            _ => format!("-c statement_timeout={ms}"),
        }
    }
}

/// A pooled connection: the client plus the permits it holds (global and
/// its platform's).
pub struct Conn {
    pub client: ClientWrapper,
    /// The database has the current version of the migrator's after-call
    /// function (see [`AFTER_CALL_FUNCTION`]); read once per connection.
    /// The function resets a session at the end of each call statement
    /// (settings, sequences, LISTEN, advisory locks, temp tables). Databases
    /// deployed by older versions lack it (or have an older version) until
    /// their next deployment; calls there use a separate reset statement and
    /// a connection of their own.
    pub after_call_fn: bool,
    /// The call statements prepared on this connection.
    pub statements: Lru<Statement>,
    /// A call was abandoned on this connection mid-statement (its client
    /// went away) and a cancel request sent: no call may use it again.
    discarded: AtomicBool,
    /// For the cancel request (over TLS like the connection).
    tls: PgTls,
    _permit: OwnedSemaphorePermit,
    _platform_permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Open and not given up on: a call may be sent on it.
    fn usable(&self) -> bool {
        !self.client.is_closed() && !self.discarded.load(Ordering::SeqCst)
    }

    /// Stop using this connection and cancel the statement it is running
    /// (sent from a task of its own: cancelling means opening a second
    /// connection to the server).
    fn cancel_and_discard(&self) {
        STATEMENTS_CANCELLED.fetch_add(1, Ordering::Relaxed);
        self.discarded.store(true, Ordering::SeqCst);
        let token = self.client.cancel_token();
        let tls = self.tls.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = token.cancel_query(tls).await;
            });
        }
    }
}

/// Call statements kept prepared per connection: one per function and
/// argument shape (positional count, or set of names). A caller cycling
/// through many shapes pushes the least recently used out (PostgreSQL then
/// deallocates it) instead of growing the session without bound.
pub const STATEMENTS_PER_CONNECTION: usize = 256;

/// A small least-recently-used map from SQL text to `V`, shared by the calls
/// of one connection (a lane serves several at once).
pub struct Lru<V> {
    // boxed: a connection (and with it `Lease`) stays small
    inner: Box<Mutex<LruInner<V>>>,
    capacity: usize,
}

struct LruInner<V> {
    map: HashMap<String, (V, u64)>,
    tick: u64,
}

impl<V: Clone> Lru<V> {
    pub fn new(capacity: usize) -> Self {
        Lru {
            inner: Box::new(Mutex::new(LruInner {
                map: HashMap::new(),
                tick: 0,
            })),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.tick += 1;
        let tick = g.tick;
        g.map.get_mut(key).map(|(v, used)| {
            *used = tick;
            v.clone()
        })
    }

    pub fn put(&self, key: String, value: V) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.tick += 1;
        let tick = g.tick;
        if g.map.len() >= self.capacity && !g.map.contains_key(&key) {
            // evicting scans the map: only when full, and the map is small
            if let Some(oldest) = g
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                g.map.remove(&oldest);
            }
        }
        g.map.insert(key, (value, tick));
    }

    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

/// Why a connection could not be created.
#[derive(Debug)]
pub enum CreateError {
    Pg(tokio_postgres::Error),
    Exhausted,
}

impl From<tokio_postgres::Error> for CreateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

pub struct Mgr {
    inner: deadpool_postgres::Manager,
    tls: PgTls,
    pools: Weak<Pools>,
    database: String,
    /// The database's owner platform ([`Route::platform`]) and the semaphore
    /// its connections share (`MAX_CONNECTIONS_PER_PLATFORM`).
    platform: String,
    platform_permits: Arc<Semaphore>,
}

impl managed::Manager for Mgr {
    type Type = Conn;
    type Error = CreateError;

    async fn create(&self) -> Result<Conn, CreateError> {
        let pools = self.pools.upgrade().ok_or(CreateError::Exhausted)?;
        let (platform_permit, permit) = pools.acquire_permits(self).await?;
        let client = managed::Manager::create(&self.inner).await?;
        let after_call_fn = client
            .query_one(
                "SELECT coalesce(obj_description(to_regprocedure($1), 'pg_proc') = ANY($2), false)",
                &[&AFTER_CALL_FUNCTION, &&AFTER_CALL_CLEAN_VERSIONS[..]],
            )
            .await?
            .get(0);
        Ok(Conn {
            client,
            after_call_fn,
            statements: Lru::new(STATEMENTS_PER_CONNECTION),
            discarded: AtomicBool::new(false),
            tls: self.tls.clone(),
            _permit: permit,
            _platform_permit: platform_permit,
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<CreateError> {
        if !conn.usable() {
            return Err(RecycleError::message("connection closed or given up on"));
        }
        Ok(())
    }

    fn detach(&self, conn: &mut Conn) {
        managed::Manager::detach(&self.inner, &mut conn.client);
    }
}

type Pool = managed::Pool<Mgr>;
pub type PooledConn = managed::Object<Mgr>;

/// Who owns a database and how `/call` logs in there.
#[derive(Clone, PartialEq, Eq)]
pub struct Route {
    pub platform: String,
    pub role: String,
    pub password: String,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("platform", &self.platform)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A connection shared by concurrent calls (see the module documentation).
pub struct Lane {
    conn: PooledConn,
    /// Calls sent and not yet answered.
    in_flight: AtomicUsize,
    /// Of those, calls of functions not known to be short.
    long_in_flight: AtomicUsize,
    /// When the lane last answered a call, or got one while idle (µs since
    /// the pools started).
    progress_us: AtomicU64,
    /// How long one call keeps the lane busy (µs).
    cost_us: MovingAverage,
    last_used_ms: AtomicU64,
}

/// A connection for one call: a share of a lane or a connection of its own.
///
/// A lease dropped before [`Lease::done`] belongs to a call abandoned
/// mid-statement (its client disconnected and the request's future was
/// dropped): the connection is given up on, and its statement cancelled
/// when no other call shares the connection. (A cancel request stops
/// whatever the server runs on that connection at that moment, so with other
/// calls pipelined on it, it could stop one of theirs; their statements and
/// the abandoned one are bounded by `CALL_TIMEOUT_MS` instead.)
pub struct Lease {
    kind: LeaseKind,
    done: bool,
}

// A lease lives for one call on the stack; boxing the connection would cost
// an allocation per call for a few hundred bytes moved once.
#[allow(clippy::large_enum_variant)]
pub enum LeaseKind {
    Lane(LaneUse),
    Own(PooledConn),
}

impl Lease {
    fn own(conn: PooledConn) -> Self {
        Self {
            kind: LeaseKind::Own(conn),
            done: false,
        }
    }

    /// The lane share, for a call on a shared connection.
    pub fn lane(&self) -> Option<&LaneUse> {
        match &self.kind {
            LeaseKind::Lane(l) => Some(l),
            LeaseKind::Own(_) => None,
        }
    }

    /// The call is over (answered or failed): its connection may be reused.
    pub fn done(&mut self) {
        self.done = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        CALLS_ABANDONED.fetch_add(1, Ordering::Relaxed);
        match &self.kind {
            LeaseKind::Own(conn) => conn.cancel_and_discard(),
            LeaseKind::Lane(used) => {
                let lane = &used.lane;
                // Give up on the lane first, so that no call joins it after
                // the count below (`lease` checks the other way round).
                lane.conn.discarded.store(true, Ordering::SeqCst);
                if lane.in_flight.load(Ordering::SeqCst) == 1 {
                    lane.conn.cancel_and_discard();
                }
            }
        }
    }
}

impl std::ops::Deref for Lease {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match &self.kind {
            LeaseKind::Lane(l) => &l.lane.conn,
            LeaseKind::Own(c) => c,
        }
    }
}

/// One call's use of a lane; dropping it marks the call answered.
pub struct LaneUse {
    lane: Arc<Lane>,
    /// Calls in flight on the lane before this one.
    ahead: usize,
    long: bool,
    started: Instant,
    epoch: Instant,
}

impl Drop for LaneUse {
    fn drop(&mut self) {
        let lane = &self.lane;
        lane.cost_us.record(self.cost_us());
        lane.progress_us
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        if self.long {
            lane.long_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        lane.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl LaneUse {
    /// How long the call kept the lane busy (µs): the lane answers in
    /// order, so the call's time is shared with the `ahead` ones it waited for.
    pub fn cost_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64 / (self.ahead as u64 + 1)
    }
}

/// One database's pool plus what the router caches about that database.
pub struct DbPool {
    /// Who owns the database, and how its connections log in (catalog).
    pub route: Route,
    pool: Pool,
    last_used_ms: AtomicU64,
    /// Requests of this database answered 503 pool_exhausted.
    exhausted: AtomicU64,
    pub functions: FunctionCache,
    /// Shared connections (only while the database has the after-call function).
    lanes: RwLock<Vec<Arc<Lane>>>,
    /// False once a connection showed the database lacks the function.
    lanes_enabled: AtomicBool,
    /// Held while a lane is being opened.
    grow: tokio::sync::Mutex<()>,
}

impl DbPool {
    /// The first lane that may take a call now (see the module documentation).
    fn pick_lane(&self, long: bool, budget_us: u64, now_us: u64) -> Option<Arc<Lane>> {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .filter(|l| l.conn.usable())
            .find(|l| {
                let n = l.in_flight.load(Ordering::Acquire);
                n == 0
                    || (!long
                        && l.long_in_flight.load(Ordering::Relaxed) == 0
                        && (n as u64).saturating_mul(l.cost_us.get().unwrap_or(0)) < budget_us
                        && now_us.saturating_sub(l.progress_us.load(Ordering::Relaxed)) < budget_us)
            })
            .cloned()
    }

    /// The open lane with the fewest calls in flight, preferring lanes not
    /// busy with a long call.
    fn least_busy_lane(&self) -> Option<Arc<Lane>> {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .filter(|l| l.conn.usable())
            .min_by_key(|l| {
                (
                    l.long_in_flight.load(Ordering::Relaxed) > 0,
                    l.in_flight.load(Ordering::Relaxed),
                )
            })
            .cloned()
    }

    /// Lanes with no call in flight.
    fn idle_lanes(&self) -> usize {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .filter(|l| l.in_flight.load(Ordering::Relaxed) == 0)
            .count()
    }

    fn lane_count(&self) -> usize {
        self.lanes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Remove lanes that are closed or (with `idle`) unused for that long,
    /// closing their connections; returns how many went.
    fn drop_lanes(&self, idle: Option<(u64, u64)>, max: usize) -> usize {
        let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        lanes.retain(|l| {
            if gone.len() >= max {
                return true;
            }
            let unused = l.in_flight.load(Ordering::Acquire) == 0
                && Arc::strong_count(l) == 1
                && idle.is_some_and(|(now, after)| {
                    now.saturating_sub(l.last_used_ms.load(Ordering::Relaxed)) >= after
                });
            if !l.conn.usable() || unused {
                gone.push(l.clone());
                false
            } else {
                true
            }
        });
        drop(lanes);
        let n = gone.len();
        for lane in gone {
            // Detach from the pool so the connection (and its permit) go now.
            if let Ok(lane) = Arc::try_unwrap(lane) {
                drop(managed::Object::take(lane.conn));
            }
        }
        n
    }
}

/// A permit of `permits`: at once if one is free, else the first one freed
/// before `deadline`, calling `make_room` (close an idle connection
/// elsewhere) every 50 ms meanwhile; `None` at the deadline.
async fn permit_within(
    permits: &Arc<Semaphore>,
    deadline: tokio::time::Instant,
    make_room: impl Fn(),
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return Some(p);
    }
    loop {
        make_room();
        let step = tokio::time::Instant::now() + Duration::from_millis(50);
        match tokio::time::timeout_at(step.min(deadline), permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => return Some(p),
            Ok(Err(_closed)) => return None,
            Err(_) if tokio::time::Instant::now() >= deadline => return None,
            Err(_) => continue,
        }
    }
}

/// Calls abandoned mid-statement (their client went away), since start.
pub static CALLS_ABANDONED: AtomicU64 = AtomicU64::new(0);
/// Of those, calls whose statement a cancel request was sent for.
pub static STATEMENTS_CANCELLED: AtomicU64 = AtomicU64::new(0);

/// All pools, keyed by database name.
pub struct Pools {
    /// How long calls waited for their connection or lane share.
    pub wait: Histogram,
    map: RwLock<HashMap<String, Arc<DbPool>>>,
    permits: Arc<Semaphore>,
    /// Each platform's share of the connections, keyed by
    /// [`Route::platform`] (see the module documentation).
    platforms: Mutex<HashMap<String, Arc<Semaphore>>>,
    base: tokio_postgres::Config,
    tls: PgTls,
    settings: PoolSettings,
    started: Instant,
    exhausted: AtomicU64,
    log: Logger,
}

impl Pools {
    pub fn new(
        base: tokio_postgres::Config,
        tls: PgTls,
        settings: PoolSettings,
        log: Logger,
    ) -> Arc<Self> {
        Arc::new(Self {
            wait: Histogram::default(),
            map: RwLock::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(settings.total)),
            platforms: Mutex::new(HashMap::new()),
            base,
            tls,
            settings,
            started: Instant::now(),
            exhausted: AtomicU64::new(0),
            log,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The pool of `database`, if the router has one (the hot path: a read
    /// lock and a hash lookup).
    pub fn get(&self, database: &str) -> Option<Arc<DbPool>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let p = map.get(database)?;
        p.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(p.clone())
    }

    /// The pool of `database` for `route` (what the catalog says), created
    /// (without connecting) if missing or if the route changed.
    pub fn pool_for(self: &Arc<Self>, database: &str, route: &Route) -> Arc<DbPool> {
        let now = self.now_ms();
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(database) {
            if p.route == *route {
                p.last_used_ms.store(now, Ordering::Relaxed);
                return p.clone();
            }
        }
        let p = Arc::new(self.build(database, route));
        if let Some(old) = map.insert(database.to_owned(), p.clone()) {
            Self::close(&old);
        }
        p
    }

    /// Forget `database`'s pool (a deployment, ownership change, drop):
    /// idle connections close now, busy ones when their call ends; the next
    /// call asks the catalog again and prepares everything afresh.
    pub fn invalidate(&self, database: &str) {
        let gone = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(database);
        if let Some(p) = gone {
            Self::close(&p);
            debug!(self.log, "pool invalidated"; "database" => database);
        }
    }

    /// Forget every pool (after missing notifications).
    pub fn invalidate_all(&self) {
        let map = std::mem::take(&mut *self.map.write().unwrap_or_else(|e| e.into_inner()));
        for p in map.values() {
            Self::close(p);
        }
        if !map.is_empty() {
            info!(self.log, "every pool invalidated"; "pools" => map.len());
        }
    }

    fn close(p: &DbPool) {
        p.drop_lanes(Some((u64::MAX, 0)), usize::MAX);
        p.pool.close();
    }

    fn build(self: &Arc<Self>, database: &str, route: &Route) -> DbPool {
        let mut cfg = self.base.clone();
        cfg.dbname(database);
        cfg.user(&route.role).password(&route.password);
        cfg.connect_timeout(self.settings.connect_timeout);
        let options = self.settings.options(cfg.get_options(), &route.platform);
        cfg.options(&options);
        let inner = deadpool_postgres::Manager::from_config(
            cfg,
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let mgr = Mgr {
            inner,
            tls: self.tls.clone(),
            pools: Arc::downgrade(self),
            database: database.to_owned(),
            platform: route.platform.clone(),
            platform_permits: self.platform_permits(&route.platform),
        };
        let pool = managed::Pool::builder(mgr)
            .max_size(self.settings.per_pool)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(self.settings.wait_timeout),
                create: Some(self.settings.wait_timeout + self.settings.connect_timeout),
                recycle: Some(self.settings.connect_timeout),
            })
            .build()
            .expect("runtime and timeouts are set");
        debug!(self.log, "pool created"; "database" => database, "role" => &route.role);
        DbPool {
            route: route.clone(),
            pool,
            last_used_ms: AtomicU64::new(self.now_ms()),
            exhausted: AtomicU64::new(0),
            functions: FunctionCache::default(),
            lanes: RwLock::new(Vec::new()),
            lanes_enabled: AtomicBool::new(true),
            grow: tokio::sync::Mutex::new(()),
        }
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A connection of `database` for one call of a function that keeps a
    /// connection busy `cost_us` (`u64::MAX`: not timed yet): a share of a
    /// lane where the database allows it, else a connection of its own.
    pub async fn lease(
        self: &Arc<Self>,
        db: &Arc<DbPool>,
        database: &str,
        cost_us: u64,
    ) -> Result<Lease, RouterError> {
        if !db.lanes_enabled.load(Ordering::Relaxed) {
            return match db.pool.get().await {
                Ok(conn) => Ok(Lease::own(conn)),
                Err(e) => Err(self.map_get_error(database, db, e)),
            };
        }
        let budget = self.settings.pipeline_budget.as_micros() as u64;
        let long = cost_us > budget;
        loop {
            let mut lane = db.pick_lane(long, budget, self.now_us());
            // One request at a time opens lanes, so a burst opens what it needs
            // and no more; the others look again once it is done.
            let mut _gate = None;
            if lane.is_none() {
                _gate = Some(db.grow.lock().await);
                db.drop_lanes(None, usize::MAX);
                lane = db.pick_lane(long, budget, self.now_us());
            }
            let lane = match lane {
                Some(lane) => lane,
                None if db.lane_count() > 0
                    && (db.lane_count() >= self.settings.per_pool
                        || self.permits.available_permits() == 0
                        || db.pool.manager().platform_permits.available_permits() == 0) =>
                {
                    db.least_busy_lane()
                        .ok_or_else(|| RouterError::PoolExhausted {
                            database: database.to_owned(),
                        })?
                }
                None => match db.pool.get().await {
                    Ok(conn) if !conn.after_call_fn => {
                        db.lanes_enabled.store(false, Ordering::Relaxed);
                        return Ok(Lease::own(conn));
                    }
                    Ok(conn) => {
                        let lane = Arc::new(Lane {
                            conn,
                            in_flight: AtomicUsize::new(0),
                            long_in_flight: AtomicUsize::new(0),
                            progress_us: AtomicU64::new(self.now_us()),
                            cost_us: MovingAverage::new(7),
                            last_used_ms: AtomicU64::new(self.now_ms()),
                        });
                        db.lanes
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(lane.clone());
                        lane
                    }
                    Err(e) => match db.least_busy_lane() {
                        Some(lane) => lane,
                        None => return Err(self.map_get_error(database, db, e)),
                    },
                },
            };
            let ahead = lane.in_flight.fetch_add(1, Ordering::SeqCst);
            if ahead == 0 {
                lane.progress_us.store(self.now_us(), Ordering::Relaxed);
            }
            if long {
                lane.long_in_flight.fetch_add(1, Ordering::Relaxed);
            }
            lane.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
            let given_up = lane.conn.discarded.load(Ordering::SeqCst);
            let mut lease = Lease {
                kind: LeaseKind::Lane(LaneUse {
                    lane,
                    ahead,
                    long,
                    started: Instant::now(),
                    epoch: self.started,
                }),
                done: false,
            };
            if given_up {
                // an abandoned call's lane, given up on since it was picked
                lease.done();
                continue;
            }
            return Ok(lease);
        }
    }

    fn map_get_error(
        &self,
        database: &str,
        db: &Arc<DbPool>,
        e: PoolError<CreateError>,
    ) -> RouterError {
        match e {
            PoolError::Backend(CreateError::Pg(pg)) => {
                if pg.code() == Some(&SqlState::INVALID_CATALOG_NAME) {
                    self.forget(database, db);
                    return RouterError::DatabaseNotFound {
                        database: database.to_owned(),
                    };
                }
                RouterError::DatabaseUnavailable {
                    database: database.to_owned(),
                    message: crate::error::pg_message(&pg),
                }
            }
            PoolError::Backend(CreateError::Exhausted)
            | PoolError::Timeout(_)
            | PoolError::Closed => {
                self.exhausted.fetch_add(1, Ordering::Relaxed);
                db.exhausted.fetch_add(1, Ordering::Relaxed);
                RouterError::PoolExhausted {
                    database: database.to_owned(),
                }
            }
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                RouterError::Internal(format!("connection pool misconfigured for {database}"))
            }
        }
    }

    /// Drop the pool of a database that turned out not to exist, unless
    /// something else is using it (another request created it meanwhile).
    fn forget(&self, database: &str, db: &Arc<DbPool>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = map.get(database) {
            if Arc::ptr_eq(current, db) && current.pool.status().size == 0 {
                map.remove(database);
            }
        }
    }

    /// The semaphore `platform`'s connections share, made on first use (a
    /// pool being built, never a call).
    fn platform_permits(&self, platform: &str) -> Arc<Semaphore> {
        let mut map = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(platform.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_platform)))
            .clone()
    }

    /// The permits a new connection of `mgr`'s database holds: its
    /// platform's, then a global one, both within `POOL_WAIT_TIMEOUT_MS`.
    /// While waiting, idle connections of other pools (of the same platform,
    /// for the platform's permit) are closed to make room.
    async fn acquire_permits(
        &self,
        mgr: &Mgr,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), CreateError> {
        let deadline = tokio::time::Instant::now() + self.settings.wait_timeout;
        let database = mgr.database.as_str();
        let platform = mgr.platform.as_str();
        let Some(own) = permit_within(&mgr.platform_permits, deadline, || {
            self.close_one_idle_elsewhere(database, Some(platform))
        })
        .await
        else {
            debug!(self.log, "no connection within the wait"; "cap" => "MAX_CONNECTIONS_PER_PLATFORM", "platform" => platform, "database" => database);
            return Err(CreateError::Exhausted);
        };
        let Some(global) = permit_within(&self.permits, deadline, || {
            self.close_one_idle_elsewhere(database, None)
        })
        .await
        else {
            debug!(self.log, "no connection within the wait"; "cap" => "MAX_TOTAL_CONNECTIONS", "platform" => platform, "database" => database);
            return Err(CreateError::Exhausted);
        };
        Ok((own, global))
    }

    /// Close the longest-idle connection of any pool other than `database`
    /// (with `platform`: only among that platform's pools).
    fn close_one_idle_elsewhere(&self, database: &str, platform: Option<&str>) {
        let pools: Vec<(String, Arc<DbPool>)> = {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .filter(|(name, p)| {
                    name.as_str() != database && platform.is_none_or(|x| p.route.platform == x)
                })
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect()
        };
        // Pick the pool whose last use is oldest and that has an idle connection.
        let victim = pools
            .iter()
            .filter(|(_, p)| p.pool.status().available > 0 || p.idle_lanes() > 0)
            .min_by_key(|(_, p)| p.last_used_ms.load(Ordering::Relaxed));
        if let Some((name, p)) = victim {
            if p.drop_lanes(Some((u64::MAX, 0)), 1) > 0 {
                debug!(self.log, "closed an idle shared connection to make room"; "database" => name.as_str(), "for" => database);
                return;
            }
            let mut taken = false;
            let removed = p.pool.retain(|_, _| {
                if taken {
                    true
                } else {
                    taken = true;
                    false
                }
            });
            if !removed.removed.is_empty() {
                debug!(self.log, "closed an idle connection to make room"; "database" => name.as_str(), "for" => database);
            }
        }
    }

    /// Drop pools unused for the idle timeout and connections idle that long.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let idle_ms = self.settings.idle_timeout.as_millis() as u64;
        let mut dropped = Vec::new();
        {
            let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|name, p| {
                let idle = now.saturating_sub(p.last_used_ms.load(Ordering::Relaxed)) >= idle_ms;
                // Lanes are checked out: close the idle ones first, so an
                // idle pool counts all its connections as available.
                p.drop_lanes(Some((now, idle_ms)), usize::MAX);
                if idle && p.pool.status().available == p.pool.status().size {
                    dropped.push((name.clone(), p.clone()));
                    false
                } else {
                    true
                }
            });
            for p in map.values() {
                let timeout = self.settings.idle_timeout;
                p.pool.retain(|_, m| m.last_used() < timeout);
            }
        }
        for (name, p) in dropped {
            p.pool.close();
            info!(self.log, "idle pool dropped"; "database" => name);
        }
        // A platform's semaphore is held by its pools and connections: when
        // nothing else holds it, every permit is free and it can go.
        self.platforms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, permits| Arc::strong_count(permits) > 1);
    }

    /// Run [`Pools::sweep`] periodically until the pools are dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = (self.settings.idle_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(p) => p.sweep(),
                    None => return,
                }
            }
        });
    }

    /// Close every pool (graceful shutdown: after in-flight requests finished).
    pub fn close_all(&self) {
        let map = std::mem::take(&mut *self.map.write().unwrap_or_else(|e| e.into_inner()));
        for p in map.values() {
            p.drop_lanes(Some((u64::MAX, 0)), usize::MAX);
            p.pool.close();
        }
    }

    pub fn stats(&self) -> PoolsStats {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let databases: BTreeMap<String, PoolStats> = map
            .iter()
            .map(|(name, p)| {
                let s = p.pool.status();
                (
                    name.clone(),
                    PoolStats {
                        size: s.size,
                        available: s.available + p.idle_lanes(),
                        waiting: s.waiting,
                        exhausted: p.exhausted.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        PoolsStats {
            total_connections: self.settings.total - self.permits.available_permits(),
            max_total_connections: self.settings.total,
            max_connections_per_pool: self.settings.per_pool,
            exhausted_total: self.exhausted.load(Ordering::Relaxed),
            databases,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::{permit_within, Lru, PoolSettings, Pools, Route};

    fn pools(per_platform: usize) -> Arc<Pools> {
        let tls = stonescriptdb_startup::tls::PgTls::new(&stonescriptdb_shared::config::DbTls {
            mode: stonescriptdb_shared::config::SslMode::Disable,
            root_cert: None,
        })
        .unwrap();
        Pools::new(
            tokio_postgres::Config::new(),
            tls,
            PoolSettings {
                per_pool: 10,
                total: 4,
                per_platform,
                wait_timeout: Duration::from_millis(1),
                idle_timeout: Duration::ZERO,
                connect_timeout: Duration::from_secs(1),
                pipeline_budget: Duration::from_micros(500),
                call_timeouts: stonescriptdb_shared::config::CallTimeouts {
                    default: Duration::ZERO,
                    platforms: Default::default(),
                },
            },
            slog::Logger::root(slog::Discard, slog::o!()),
        )
    }

    fn route(platform: &str) -> Route {
        Route {
            platform: platform.into(),
            role: format!("sdg_{platform}_app"),
            password: String::new(),
        }
    }

    #[tokio::test]
    async fn a_platforms_pools_share_one_cap_that_goes_with_them() {
        let pools = pools(2);
        let a1 = pools.pool_for("a_main", &route("a"));
        let a2 = pools.pool_for("a_two", &route("a"));
        let b = pools.pool_for("b_main", &route("b"));
        let cap = |p: &super::DbPool| p.pool.manager().platform_permits.clone();
        assert!(Arc::ptr_eq(&cap(&a1), &cap(&a2)), "one cap per platform");
        assert!(
            !Arc::ptr_eq(&cap(&a1), &cap(&b)),
            "platforms never share one"
        );
        assert_eq!(cap(&b).available_permits(), 2);
        assert_eq!(pools.platforms.lock().unwrap().len(), 2);
        // b's pool is gone (idle): its platform's semaphore goes with it
        drop(b);
        pools.invalidate("b_main");
        pools.sweep();
        let left: Vec<String> = pools.platforms.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, ["a"], "a still has pools in use");
        drop((a1, a2));
        pools.invalidate_all();
        pools.sweep();
        assert!(pools.platforms.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_permit_is_taken_at_once_after_room_is_made_or_never() {
        let permits = Arc::new(Semaphore::new(1));
        let soon = || tokio::time::Instant::now() + Duration::from_millis(300);
        let first = permit_within(&permits, soon(), || panic!("a permit was free"))
            .await
            .expect("a free permit");
        // full: making room (closing an idle connection) frees one
        let held = Mutex::new(Some(first));
        let second = permit_within(&permits, soon(), || {
            held.lock().unwrap().take();
        })
        .await;
        assert!(second.is_some(), "room was made");
        // full and nothing to close: none, once the deadline has passed
        let tries = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let third = permit_within(&permits, soon(), || {
            tries.fetch_add(1, Ordering::Relaxed);
        })
        .await;
        assert!(third.is_none());
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(
            tries.load(Ordering::Relaxed) >= 2,
            "room is sought while waiting"
        );
    }

    #[test]
    fn the_least_recently_used_statement_goes_first() {
        let lru = Lru::new(3);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            lru.put(k.to_string(), i);
        }
        assert_eq!(lru.get("a"), Some(0)); // a is now the most recent
        lru.put("d".into(), 3); // b, the least recently used, goes
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get("b"), None);
        assert_eq!(
            (lru.get("a"), lru.get("c"), lru.get("d")),
            (Some(0), Some(2), Some(3))
        );
        lru.put("c".into(), 20); // replacing keeps the size
        assert_eq!((lru.len(), lru.get("c")), (3, Some(20)));
        for i in 0..1000 {
            lru.put(format!("k{i}"), i);
        }
        assert_eq!(lru.len(), 3, "bounded whatever the number of shapes");
        lru.clear();
        assert_eq!(lru.len(), 0);
    }
}
