//! Storage: one store, two backends (SQLite, the embedded default, and
//! PostgreSQL for several replicas).
//!
//! The SQL is written once in the portable subset both databases share
//! (`$1` placeholders, TEXT ids, integer timestamps, JSON as text) and run on
//! whichever pool is configured through the [`with_db!`] and [`with_tx!`]
//! macros, which compile the same code once per backend. Dialect branches
//! exist only where they pay (locking for the audit chain).
//!
//! Capabilities are split by concept (certificates, approvals, audit, ...);
//! each file adds methods to [`Store`] (reads outside a transaction) and
//! [`Tx`] (everything inside one).

mod agent_groups;
mod agents;
mod approvals;
mod audit;
mod audit_checkpoints;
mod bulk;
mod certificates;
mod deployments;
mod discovery;
mod imports;
mod issuers;
mod jobs;
mod leases;
mod meta;
mod notifications;
mod org;
mod policies;
mod principals;
mod profiles;
mod query;
mod renewal_info;
mod revocations;
mod second_cache;
mod violations;
mod work;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use approvals::ApprovalPrivate;
pub use audit::{AuditFilter, ChainWalk, NewAuditEvent};
pub use bulk::BulkRun;
pub use certificates::{CertificateFilter, CertificateSort, NewVersion};
pub use certificates::{CertificatePatch, StatusView};
pub use deployments::Verification;
pub use discovery::{
    DiscoveredCertificate, DiscoveryFilter, DiscoverySource, DiscoveryStatus, LIST_SIGHTINGS,
    NetworkScanTarget, NewDiscovered, NewSighting, Sighting,
};
pub(crate) use issuers::IssuerRow;
pub use issuers::{IssuerRecord, SealedSecrets};
pub use jobs::{JobFilter, JobResult};
pub use notifications::{ChannelRecord, DeliveryResult, EventRow, ExpiringRow, NewEvent};
pub use org::OrgTable;
pub use policies::SimpleTable;
pub use principals::PRINCIPAL_CACHE_SECONDS;
pub use query::{Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, page_size};
pub use renewal_info::AriDue;
pub use revocations::{ExportLink, NewRevocation, SerialStatus, StoredCrl};
pub use violations::ViolationFilter;
pub use work::WORK_CACHE_SECONDS;
pub use work::WorkItem;

use crate::error::{Error, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool the store holds.
macro_rules! with_db {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($p) => $body,
            $crate::store::Db::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_db;

/// Runs the same code on whichever transaction the [`Tx`] holds; `$c` is the
/// connection (an executor). A read transaction begins here, on first use.
macro_rules! with_tx {
    ($tx:expr, |$c:ident| $body:expr) => {{
        $tx.open().await?;
        match &mut $tx.inner {
            $crate::store::TxInner::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::TxInner::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::TxInner::NotBegun(_) => {
                return Err($crate::error::Error::internal(
                    "a transaction was used before it began",
                ));
            }
        }
    }};
}
pub(crate) use with_tx;

/// The store handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    /// SQLite allows one writer at a time. Writers of this process queue here
    /// in order instead of polling SQLite's busy handler, which starves
    /// writers under contention (seconds of tail latency in the issuance
    /// benchmark). Other processes on the same file still meet the busy timeout.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite's WAL checkpoints, off the commit path (see `Checkpointer`).
    checkpointer: Option<Arc<Checkpointer>>,
    /// Certificate counts of recent list queries (see `certificates::CountCache`).
    pub(crate) counts: Arc<certificates::CountCache>,
    /// Principals of recently presented keys (see `principals::PrincipalCache`).
    pub(crate) principals: Arc<principals::PrincipalCache>,
    /// Agents' open work (see `work::WorkCache`).
    pub(crate) work: Arc<work::WorkCache>,
    /// Recent certificate pages (see `certificates::PageCache`).
    pub(crate) pages: Arc<certificates::PageCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file (created if missing).
    SqliteFile(PathBuf),
    /// A PostgreSQL URL (`postgres://...`).
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://` and `postgresql://` URLs select PostgreSQL; `sqlite://PATH`
    /// or a bare path selects SQLite.
    pub fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Self::SqliteFile(PathBuf::from(path)))
        } else if url.contains("://") {
            Err(Error::invalid(
                "database URL must start with postgres://, postgresql:// or sqlite://",
            ))
        } else {
            Ok(Self::SqliteFile(PathBuf::from(url)))
        }
    }
}

impl Store {
    /// Connects and applies migrations. Safe when several processes start at
    /// once: PostgreSQL migrations hold an advisory lock, SQLite ones a file lock.
    pub async fn open(location: &StoreLocation) -> Result<Self> {
        let store = match location {
            StoreLocation::SqliteFile(path) => Self::open_sqlite(path).await?,
            StoreLocation::Postgres(url) => Self::open_postgres(url).await?,
        };
        Ok(store)
    }

    async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last transactions
            // before a power loss; it is the documented choice for WAL.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            // Reads map the file instead of copying pages through read().
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory")
            // No checkpoint on commit: SQLite's automatic one runs inside the
            // committing call, while this process's write gate is held, so
            // every writer queued behind it waited for the copy of the WAL
            // into the database (and its fsync). `Checkpointer` runs the same
            // PASSIVE checkpoint on another connection after commits instead.
            .pragma("wal_autocheckpoint", "0")
            // A page of 50 certificates plus its look-ahead row fits without
            // the connection's thread blocking on a full channel half-way.
            .row_buffer_size(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // The database is a local file: a connection cannot have been
            // dropped by a peer while idle, so the liveness ping sqlx sends
            // before handing out a connection is one more round trip to the
            // connection's thread for nothing.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        // Two processes starting on one file must not both apply migrations:
        // SQLite has no advisory locks, so hold an exclusive lock on a file
        // next to the database while migrating.
        let lock_path = path.with_extension("migrate.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::invalid(format!("cannot open {}: {e}", lock_path.display())))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|_| lock))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::internal(format!("migration lock: {e}")))?;
        let migrated = SQLITE_MIGRATIONS.run(&pool).await;
        drop(lock);
        migrated?;
        Ok(Self {
            checkpointer: Some(Arc::new(Checkpointer::new(pool.clone()))),
            db: Db::Sqlite(pool),
            write_gate: Some(Arc::new(tokio::sync::Mutex::new(()))),
            counts: Default::default(),
            principals: Arc::new(principals::principal_cache()),
            work: Arc::new(work::work_cache()),
            pages: Arc::new(certificates::page_cache()),
        })
    }

    async fn open_postgres(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("the PostgreSQL URL is not valid"))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Self {
            db: Db::Postgres(pool),
            write_gate: None,
            checkpointer: None,
            counts: Default::default(),
            principals: Arc::new(principals::principal_cache()),
            work: Arc::new(work::work_cache()),
            pages: Arc::new(certificates::page_cache()),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        match &self.db {
            Db::Sqlite(p) => p.options().get_max_connections(),
            Db::Postgres(p) => p.options().get_max_connections(),
        }
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock
    /// up front (`BEGIN IMMEDIATE`), so a transaction that reads and then
    /// writes cannot fail half-way because another process wrote in between.
    pub async fn begin_write(&self) -> Result<Tx> {
        let gate = match &self.write_gate {
            Some(g) => Some(g.clone().lock_owned().await),
            None => None,
        };
        let inner = match &self.db {
            Db::Sqlite(p) => TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => TxInner::Postgres(p.begin().await?),
        };
        Ok(Tx {
            inner,
            backend: self.backend(),
            writable: true,
            _gate: gate,
            checkpointer: self.checkpointer.clone(),
            counts: Some(self.counts.clone()),
            principals: Some(self.principals.clone()),
            touched_certificates: false,
            touched_principals: false,
            work: Some(self.work.clone()),
            pages: Some(self.pages.clone()),
            keeps_read_caches: false,
        })
    }

    /// Starts a read-only transaction (a consistent snapshot). It begins on
    /// the database when first used: many reads (certificate lists, agent
    /// work) read through the pool and never touch it, and an unused
    /// transaction would cost a connection and two round trips for nothing.
    /// Neither database takes the snapshot before the first statement anyway
    /// (SQLite's deferred `BEGIN`, PostgreSQL's first query).
    pub async fn begin_read(&self) -> Result<Tx> {
        Ok(Tx {
            inner: TxInner::NotBegun(self.db.clone()),
            backend: self.backend(),
            writable: false,
            _gate: None,
            checkpointer: None,
            counts: None,
            principals: None,
            touched_certificates: false,
            touched_principals: false,
            work: None,
            pages: None,
            keeps_read_caches: false,
        })
    }

    /// Whether migrations ran and the database answers.
    pub async fn ping(&self) -> Result<()> {
        with_db!(&self.db, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_db!(&self.db, |p| p.close().await)
    }
}

/// Runs SQLite's WAL checkpoints on a connection of their own, after
/// commits, instead of inside the committing call (`wal_autocheckpoint` is
/// off). The checkpoint is the same PASSIVE one SQLite runs itself: it copies
/// committed pages from the WAL into the database without blocking readers or
/// writers, and changes nothing about durability (a commit is in the WAL, with
/// `synchronous = NORMAL`, before and after). At most one runs at a time, and
/// one starts at most every `CHECKPOINT_EVERY`, so the WAL stays a fraction
/// of a second of writes long and is reused from its start.
struct Checkpointer {
    pool: SqlitePool,
    running: std::sync::atomic::AtomicBool,
    last: std::sync::Mutex<std::time::Instant>,
}

/// Least time between two checkpoints started after commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

impl Checkpointer {
    fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            running: Default::default(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn after_commit(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let due = self
            .last
            .lock()
            .map(|l| l.elapsed() >= CHECKPOINT_EVERY)
            .unwrap_or(true);
        if !due || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&this.pool)
                .await
                && !this.pool.is_closed()
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next commit retries");
            }
            if let Ok(mut l) = this.last.lock() {
                *l = std::time::Instant::now();
            }
            this.running.store(false, Ordering::Release);
        });
    }
}

pub(crate) enum TxInner {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// A read transaction that has not needed the database yet.
    NotBegun(Db),
}

/// A database transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    pub(crate) inner: TxInner,
    pub(crate) backend: Backend,
    /// Started with [`Store::begin_write`]; row locks are only taken then.
    pub(crate) writable: bool,
    /// Held for the whole write transaction on SQLite (see `Store::write_gate`).
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Told after the commit of a SQLite write transaction.
    checkpointer: Option<Arc<Checkpointer>>,
    /// Told on commit when this transaction wrote certificates.
    counts: Option<Arc<certificates::CountCache>>,
    touched_certificates: bool,
    /// Told on commit when this transaction changed principals.
    principals: Option<Arc<principals::PrincipalCache>>,
    touched_principals: bool,
    /// Cleared on commit of any write transaction unless it keeps the read
    /// caches (audit appends, the expiry-warning pass): jobs change in many
    /// places, and a rule that needs no bookkeeping at each of them cannot
    /// be forgotten by the next one.
    work: Option<Arc<work::WorkCache>>,
    pages: Option<Arc<certificates::PageCache>>,
    keeps_read_caches: bool,
}

impl Tx {
    /// Begins a read transaction on the database if it has not yet.
    pub(crate) async fn open(&mut self) -> Result<()> {
        if let TxInner::NotBegun(db) = &self.inner {
            self.inner = match db {
                Db::Sqlite(p) => TxInner::Sqlite(p.begin().await?),
                Db::Postgres(p) => {
                    TxInner::Postgres(p.begin_with("BEGIN TRANSACTION READ ONLY").await?)
                }
            };
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
            TxInner::NotBegun(_) => {}
        }
        if let Some(c) = &self.checkpointer {
            c.after_commit();
        }
        if self.touched_certificates
            && let Some(c) = &self.counts
        {
            c.invalidate();
        }
        if self.touched_principals
            && let Some(c) = &self.principals
        {
            c.invalidate();
        }
        if !self.keeps_read_caches {
            if let Some(c) = &self.work {
                c.invalidate();
            }
            if let Some(c) = &self.pages {
                c.invalidate();
            }
        }
        Ok(())
    }

    /// Marks this write transaction as one that only appends audit events
    /// (the group commits of reads and of API requests), so its commit
    /// leaves the read caches (agents' work, certificate pages) alone.
    pub(crate) fn audit_only(&mut self) {
        self.keeps_read_caches = true;
    }

    /// Marks this write transaction as one that changes nothing a cached
    /// read shows (the expiry-warning pass: its bookkeeping columns and the
    /// notification events it queues), so its commit leaves the read caches
    /// alone like an audit append. A pass over a large backlog otherwise
    /// empties them at every one of its transactions.
    pub(crate) fn shows_in_no_cached_read(&mut self) {
        self.keeps_read_caches = true;
    }

    /// Marks this transaction as one that changes principals.
    pub(crate) fn touch_principals(&mut self) {
        self.touched_principals = true;
    }

    /// Marks this transaction as one that changes certificates.
    pub(crate) fn touch_certificates(&mut self) {
        self.touched_certificates = true;
    }

    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await?,
            TxInner::Postgres(t) => t.rollback().await?,
            TxInner::NotBegun(_) => {}
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// Decodes a JSON text column, treating corruption as an internal error.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("stored {what} is not valid: {e}")))
}

/// Serializes a value for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(e.to_string()))
}

/// Parses a stored enum value.
pub(crate) fn enum_col<T>(s: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    parse(s).ok_or_else(|| Error::internal(format!("stored {what} '{s}' is not known")))
}

/// Marks a query string built at run time as audited. Every dynamic query in
/// the store is assembled from constant column lists, constant clauses and
/// numbered placeholders; values are always bound, never formatted in.
pub(crate) fn safe(sql: &str) -> sqlx::AssertSqlSafe<&str> {
    sqlx::AssertSqlSafe(sql)
}
