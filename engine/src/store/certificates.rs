//! Managed certificates and their versions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::query::{Arg, Cursor, Page, Where, bind_args};
use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::clock::UnixTime;
use crate::domain::{
    CertificateVersion, EffectiveStatus, KeyAlgorithm, LifecycleStatus, ManagedCertificate,
    RevocationReason,
};
use crate::error::{Error, Result};

/// `not_after` of a certificate without a version (9999-12-31T23:59:59Z).
pub(crate) const NO_EXPIRY: i64 = 253_402_300_799;

const CERT_COLUMNS: &str = "id, name, common_name, sans, status, environment, issuer_id, \
    profile_id, owner_id, team_id, renewal_policy_id, labels, current_version_id, serial, \
    fingerprint, key_algorithm, not_before, not_after, revoked_at, revocation_reason, \
    created_at, updated_at";

/// A certificate row. Also read from a JSON array in column order: list
/// pages come back as one JSON text (see `list_certificates_at`).
#[derive(sqlx::FromRow, Deserialize)]
struct CertRow {
    id: String,
    name: String,
    common_name: String,
    sans: String,
    status: String,
    environment: String,
    issuer_id: String,
    profile_id: String,
    owner_id: Option<String>,
    team_id: Option<String>,
    renewal_policy_id: Option<String>,
    labels: String,
    current_version_id: Option<String>,
    serial: Option<String>,
    fingerprint: Option<String>,
    key_algorithm: Option<String>,
    not_before: Option<i64>,
    not_after: i64,
    revoked_at: Option<i64>,
    revocation_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// Totals of recent certificate list queries, by query. Counting a large
/// inventory is a scan (tens of milliseconds at 100,000 rows), far more than
/// the page itself, so a total is reused for up to `COUNT_TTL` seconds of the
/// engine's clock. Certificate writes of this process clear the cache on
/// commit, so its own changes show at once; other replicas' changes show
/// within the TTL. A total used in a later second than it was counted in is
/// counted again in the background (once at a time per query), so a busy
/// list keeps a fresh total without its callers waiting for the scan every
/// `COUNT_TTL` seconds; a count that raced a clear is not stored.
#[derive(Debug, Default)]
pub(crate) struct CountCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
    /// Bumped by every clear.
    generation: std::sync::atomic::AtomicU64,
    /// Queries being counted again in the background.
    refreshing: std::sync::Mutex<std::collections::HashSet<String>>,
}

const COUNT_TTL: i64 = 2;

impl CountCache {
    pub(crate) fn invalidate(&self) {
        if let Ok(mut e) = self.entries.lock() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            e.clear();
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The total, and whether it was counted in an earlier second.
    fn get(&self, key: &str, now: i64) -> Option<(i64, bool)> {
        let e = self.entries.lock().ok()?;
        let (at, n) = e.get(key)?;
        ((now - at).abs() < COUNT_TTL).then_some((*n, *at != now))
    }

    fn put(&self, key: String, now: i64, n: i64, generation: u64) {
        if let Ok(mut e) = self.entries.lock() {
            if self.generation() != generation {
                return;
            }
            if e.len() > 1000 {
                e.clear();
            }
            e.insert(key, (now, n));
        }
    }

    /// Claims the background recount of `key`; false when one is running.
    fn begin_refresh(&self, key: &str) -> bool {
        self.refreshing
            .lock()
            .map(|mut r| r.insert(key.to_owned()))
            .unwrap_or(false)
    }

    fn end_refresh(&self, key: &str) {
        if let Ok(mut r) = self.refreshing.lock() {
            r.remove(key);
        }
    }
}

/// Recent certificate pages, by query. A dashboard (or a benchmark) asking
/// for the same page many times a second reads it once per second of the
/// engine's clock: an entry read at second `t` serves while the clock still
/// reads `t`, so effective statuses are those of that second. Every write
/// transaction this process commits (other than audit appends) clears it,
/// so this process's own changes show at once; another replica's show
/// within that second. Only the `list_certificates` operation reads through
/// it; engine-internal selections (bulk operations) read the store directly.
pub(crate) type PageCache = super::second_cache::SecondCache<std::sync::Arc<CachedPage>>;

/// A certificate page as the page cache keeps it: the page, and each of its
/// certificates as the JSON object a list answers with, made once for all
/// the calls the entry serves rather than once per call.
#[derive(Debug)]
pub(crate) struct CachedPage {
    pub page: Page<ManagedCertificate>,
    objects: std::sync::OnceLock<Vec<CertificateObject>>,
}

/// A certificate as a JSON object, shared, and the same object as JSON text.
pub(crate) type CertificateObject = (
    std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
    std::sync::Arc<serde_json::value::RawValue>,
);

impl CachedPage {
    fn new(page: Page<ManagedCertificate>) -> Self {
        Self {
            page,
            objects: std::sync::OnceLock::new(),
        }
    }

    /// The page's certificates as JSON objects (serialized on first use).
    pub(crate) fn objects(&self) -> Result<&[CertificateObject]> {
        if let Some(o) = self.objects.get() {
            return Ok(o);
        }
        let objects = self
            .page
            .data
            .iter()
            .map(|c| {
                let text = serde_json::value::to_raw_value(c)
                    .map_err(|e| Error::internal(e.to_string()))?;
                match serde_json::to_value(c) {
                    Ok(serde_json::Value::Object(m)) => {
                        Ok((std::sync::Arc::new(m), std::sync::Arc::from(text)))
                    }
                    Ok(_) => Err(Error::internal(
                        "certificate did not serialize to an object",
                    )),
                    Err(e) => Err(Error::internal(e.to_string())),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // A concurrent caller may have won the race: same content either way.
        Ok(self.objects.get_or_init(|| objects))
    }
}

/// Most pages remembered at once; past it the cache starts over.
const PAGE_CACHE_ENTRIES: usize = 1_000;

pub(crate) fn page_cache() -> PageCache {
    PageCache::new(PAGE_CACHE_ENTRIES)
}

/// How "now" turns stored statuses into effective ones.
#[derive(Debug, Clone, Copy)]
pub struct StatusView {
    pub now: UnixTime,
    /// Seconds before expiry at which a certificate counts as expiring.
    pub expiring_window: i64,
}

impl CertRow {
    fn into_domain(self, view: StatusView) -> Result<ManagedCertificate> {
        let status = enum_col(&self.status, LifecycleStatus::parse, "certificate status")?;
        let not_after = (self.not_after != NO_EXPIRY).then_some(self.not_after);
        Ok(ManagedCertificate {
            status: EffectiveStatus::of(status, not_after, view.now, view.expiring_window),
            sans: json_col(&self.sans, "sans")?,
            labels: json_col(&self.labels, "labels")?,
            key_algorithm: self.key_algorithm.as_deref().and_then(KeyAlgorithm::parse),
            revocation_reason: self
                .revocation_reason
                .as_deref()
                .and_then(RevocationReason::parse),
            id: self.id,
            name: self.name,
            common_name: self.common_name,
            environment: self.environment,
            issuer_id: self.issuer_id,
            profile_id: self.profile_id,
            owner_id: self.owner_id,
            team_id: self.team_id,
            renewal_policy_id: self.renewal_policy_id,
            current_version_id: self.current_version_id,
            serial: self.serial,
            fingerprint: self.fingerprint,
            not_before: self.not_before,
            not_after,
            revoked_at: self.revoked_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Filters for listing certificates. All given filters must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CertificateFilter {
    pub status: Option<EffectiveStatus>,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub issuer_id: Option<String>,
    pub profile_id: Option<String>,
    pub environment: Option<String>,
    /// Exact common name.
    pub common_name: Option<String>,
    /// Expiring strictly before this Unix time.
    pub expires_before: Option<UnixTime>,
    /// Expiring at or after this Unix time.
    pub expires_after: Option<UnixTime>,
    pub created_after: Option<UnixTime>,
    pub created_before: Option<UnixTime>,
    /// Include archived certificates when no status is given (default false).
    pub include_archived: bool,
}

/// Sort orders for certificate lists. `-` prefix means descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum CertificateSort {
    #[default]
    #[serde(rename = "not_after")]
    NotAfter,
    #[serde(rename = "-not_after")]
    NotAfterDesc,
    #[serde(rename = "created_at")]
    CreatedAt,
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
    #[serde(rename = "common_name")]
    CommonName,
    #[serde(rename = "-common_name")]
    CommonNameDesc,
}

impl CertificateSort {
    fn column(self) -> &'static str {
        match self {
            Self::NotAfter | Self::NotAfterDesc => "not_after",
            Self::CreatedAt | Self::CreatedAtDesc => "created_at",
            Self::CommonName | Self::CommonNameDesc => "common_name",
        }
    }

    fn desc(self) -> bool {
        matches!(
            self,
            Self::NotAfterDesc | Self::CreatedAtDesc | Self::CommonNameDesc
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAfter => "not_after",
            Self::NotAfterDesc => "-not_after",
            Self::CreatedAt => "created_at",
            Self::CreatedAtDesc => "-created_at",
            Self::CommonName => "common_name",
            Self::CommonNameDesc => "-common_name",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "not_after" => Self::NotAfter,
            "-not_after" => Self::NotAfterDesc,
            "created_at" => Self::CreatedAt,
            "-created_at" => Self::CreatedAtDesc,
            "common_name" => Self::CommonName,
            "-common_name" => Self::CommonNameDesc,
            _ => return None,
        })
    }

    fn key_of(self, c: &CertRow) -> serde_json::Value {
        match self.column() {
            "not_after" => c.not_after.into(),
            "created_at" => c.created_at.into(),
            _ => c.common_name.clone().into(),
        }
    }
}

impl CertificateFilter {
    pub(crate) fn apply(&self, w: &mut Where, view: StatusView) {
        if let Some(status) = self.status {
            let now = view.now;
            let soon = view.now.saturating_add(view.expiring_window);
            let active = w.arg(Arg::Text("active".into()));
            match status {
                EffectiveStatus::Valid => {
                    let p = w.arg(Arg::Int(soon));
                    w.push(format!("status = {active} AND not_after > {p}"));
                }
                EffectiveStatus::Expiring => {
                    let a = w.arg(Arg::Int(now));
                    let b = w.arg(Arg::Int(soon));
                    w.push(format!(
                        "status = {active} AND not_after > {a} AND not_after <= {b}"
                    ));
                }
                EffectiveStatus::Expired => {
                    // Short-lived certificates are stored as `expired` by the
                    // scheduler; others are active past not_after.
                    let a = w.arg(Arg::Int(now));
                    let e = w.arg(Arg::Text("expired".into()));
                    w.push(format!("status IN ({active}, {e}) AND not_after <= {a}"));
                }
                other => {
                    // Pending, revoked, failed and archived are stored as such.
                    w.args.pop();
                    let p = w.arg(Arg::Text(other.as_str().into()));
                    w.push(format!("status = {p}"));
                }
            }
        } else if !self.include_archived {
            let p = w.arg(Arg::Text("archived".into()));
            w.push(format!("status <> {p}"));
        }
        let eq = [
            ("owner_id", &self.owner_id),
            ("team_id", &self.team_id),
            ("issuer_id", &self.issuer_id),
            ("profile_id", &self.profile_id),
            ("environment", &self.environment),
            ("common_name", &self.common_name),
        ];
        for (col, v) in eq {
            if let Some(v) = v {
                let p = w.arg(Arg::Text(v.clone()));
                w.push(format!("{col} = {p}"));
            }
        }
        let ranges = [
            ("not_after", "<", self.expires_before),
            ("not_after", ">=", self.expires_after),
            ("created_at", ">", self.created_after),
            ("created_at", "<", self.created_before),
        ];
        for (col, op, v) in ranges {
            if let Some(v) = v {
                let p = w.arg(Arg::Int(v));
                w.push(format!("{col} {op} {p}"));
            }
        }
    }
}

/// A newly issued version, ready to store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub id: String,
    pub certificate_id: String,
    pub issuer_id: String,
    pub serial: String,
    pub fingerprint: String,
    pub key_algorithm: KeyAlgorithm,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub cert_pem: String,
    pub chain_pem: String,
    pub csr_pem: Option<String>,
    pub private_key_sealed: Option<String>,
    pub created_at: UnixTime,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: String,
    certificate_id: String,
    issuer_id: String,
    serial: String,
    fingerprint: String,
    key_algorithm: String,
    not_before: i64,
    not_after: i64,
    cert_pem: String,
    chain_pem: String,
    has_key: bool,
    revoked_at: Option<i64>,
    revocation_reason: Option<String>,
    created_at: i64,
}

const VERSION_COLUMNS: &str = "id, certificate_id, issuer_id, serial, fingerprint, \
    key_algorithm, not_before, not_after, cert_pem, chain_pem, \
    (private_key_sealed IS NOT NULL) AS has_key, revoked_at, revocation_reason, created_at";

impl VersionRow {
    fn into_domain(self) -> Result<CertificateVersion> {
        Ok(CertificateVersion {
            key_algorithm: enum_col(&self.key_algorithm, KeyAlgorithm::parse, "key algorithm")?,
            revocation_reason: self
                .revocation_reason
                .as_deref()
                .and_then(RevocationReason::parse),
            id: self.id,
            certificate_id: self.certificate_id,
            issuer_id: self.issuer_id,
            serial: self.serial,
            fingerprint: self.fingerprint,
            not_before: self.not_before,
            not_after: self.not_after,
            cert_pem: self.cert_pem,
            chain_pem: self.chain_pem,
            has_private_key: self.has_key,
            revoked_at: self.revoked_at,
            created_at: self.created_at,
        })
    }
}

/// The columns an update may change.
#[derive(Debug, Clone, Default)]
pub struct CertificatePatch {
    pub name: Option<String>,
    pub environment: Option<String>,
    pub owner_id: Option<Option<String>>,
    pub team_id: Option<Option<String>>,
    pub renewal_policy_id: Option<Option<String>>,
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// The issuer and profile the next version comes from.
    pub issuer_id: Option<String>,
    pub profile_id: Option<String>,
}

impl Store {
    /// One page of certificates.
    pub async fn list_certificates(
        &self,
        filter: &CertificateFilter,
        sort: CertificateSort,
        cursor: Option<&str>,
        limit: i64,
        view: StatusView,
    ) -> Result<Page<ManagedCertificate>> {
        self.list_certificates_at(filter, sort, cursor, 0, limit, view)
            .await
    }

    /// [`Store::list_certificates_at`] through the page cache (see
    /// `PageCache` for how fresh it is). Shared, not copied: callers read
    /// the page to build their own answer.
    pub(crate) async fn list_certificates_cached(
        &self,
        filter: &CertificateFilter,
        sort: CertificateSort,
        cursor: Option<&str>,
        offset: i64,
        limit: i64,
        view: StatusView,
    ) -> Result<std::sync::Arc<CachedPage>> {
        let key =
            serde_json::to_string(&(filter, sort, cursor, offset, limit, view.expiring_window))
                .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(page) = self.pages.get(&key, view.now) {
            return Ok(page);
        }
        let _fill = self.pages.fill_lock(&key).lock().await;
        if let Some(page) = self.pages.get(&key, view.now) {
            return Ok(page);
        }
        let generation = self.pages.generation();
        let page = std::sync::Arc::new(CachedPage::new(
            self.list_certificates_at(filter, sort, cursor, offset, limit, view)
                .await?,
        ));
        self.pages.put(&key, view.now, page.clone(), generation);
        Ok(page)
    }

    async fn count_rows(&self, sql: &str, args: &[Arg]) -> Result<i64> {
        Ok(with_db!(&self.db, |p| {
            bind_args!(sqlx::query_scalar(safe(sql)), args)
                .fetch_one(p)
                .await?
        }))
    }

    /// Counts a list's total again off the caller's path (see `CountCache`).
    fn recount_in_background(&self, sql: String, args: Vec<Arg>, key: String, now: UnixTime) {
        if !self.counts.begin_refresh(&key) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.counts.end_refresh(&key);
            return;
        };
        let store = self.clone();
        rt.spawn(async move {
            let generation = store.counts.generation();
            match store.count_rows(&sql, &args).await {
                Ok(n) => store.counts.put(key.clone(), now, n, generation),
                Err(e) => tracing::warn!(error = ?e, "could not count certificates again"),
            }
            store.counts.end_refresh(&key);
        });
    }

    /// One page of certificates, skipping `offset` rows first (offset pages;
    /// keyset `cursor` pages are the fast way through a long list).
    pub async fn list_certificates_at(
        &self,
        filter: &CertificateFilter,
        sort: CertificateSort,
        cursor: Option<&str>,
        offset: i64,
        limit: i64,
        view: StatusView,
    ) -> Result<Page<ManagedCertificate>> {
        let mut w = Where::default();
        filter.apply(&mut w, view);
        let total = if cursor.is_none() {
            let sql = format!("SELECT COUNT(*) FROM certificates{}", w.sql());
            let key = format!("{sql}|{:?}", w.args);
            match self.counts.get(&key, view.now) {
                Some((n, older)) => {
                    if older {
                        self.recount_in_background(sql, w.args.clone(), key, view.now);
                    }
                    Some(n)
                }
                None => {
                    let generation = self.counts.generation();
                    let n = self.count_rows(&sql, &w.args).await?;
                    self.counts.put(key, view.now, n, generation);
                    Some(n)
                }
            }
        } else {
            None
        };
        let col = sort.column();
        let (cmp, dir) = if sort.desc() {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(c) = cursor {
            let c = Cursor::decode(c)?;
            if c.s != sort.as_str() {
                return Err(Error::invalid(
                    "cursor was made for another sort order; start again without a cursor",
                ));
            }
            let key = match &c.k {
                serde_json::Value::Number(n) => Arg::Int(
                    n.as_i64()
                        .ok_or_else(|| Error::invalid("cursor is not valid"))?,
                ),
                serde_json::Value::String(s) => Arg::Text(s.clone()),
                _ => return Err(Error::invalid("cursor is not valid")),
            };
            let k = w.arg(key);
            let id = w.arg(Arg::Text(c.id));
            w.push(format!("({col}, id) {cmp} ({k}, {id})"));
        }
        let lim = w.arg(Arg::Int(limit + 1));
        let off = w.arg(Arg::Int(offset.max(0)));
        // The page is built in SQL as one JSON array of rows (each row an
        // array in CERT_COLUMNS order) and comes back as one text value. A
        // page of 51 rows of 22 columns read as rows costs the SQLite driver
        // a copy of every value under SQLite's global allocator lock, shared
        // with the thread dropping them: most of the page's time in a
        // profile of 32 concurrent list calls.
        let agg = match self.backend() {
            super::Backend::Sqlite => format!(
                "json_group_array(json_array({CERT_COLUMNS}) ORDER BY {col} {dir}, id {dir})"
            ),
            super::Backend::Postgres => format!(
                "COALESCE(json_agg(json_build_array({CERT_COLUMNS}) ORDER BY {col} {dir}, id {dir})::text, '[]')"
            ),
        };
        let sql = format!(
            "SELECT {agg} FROM (SELECT {CERT_COLUMNS} FROM certificates{} \
             ORDER BY {col} {dir}, id {dir} LIMIT {lim} OFFSET {off}) AS page",
            w.sql()
        );
        let json: String = with_db!(&self.db, |p| {
            bind_args!(sqlx::query_scalar::<_, String>(safe(&sql)), &w.args)
                .fetch_one(p)
                .await?
        });
        let mut rows: Vec<CertRow> = serde_json::from_str(&json)
            .map_err(|e| Error::internal(format!("a certificate page is not valid: {e}")))?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|last| {
                Cursor {
                    s: sort.as_str().into(),
                    k: sort.key_of(last),
                    id: last.id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        let data = rows
            .into_iter()
            .map(|r| r.into_domain(view))
            .collect::<Result<_>>()?;
        Ok(Page {
            data,
            total,
            next_cursor,
        })
    }

    /// Active certificates whose expiry falls before `horizon`, soonest first:
    /// the candidates the renewal loop considers.
    pub async fn certificates_expiring_before(
        &self,
        horizon: UnixTime,
        limit: i64,
    ) -> Result<Vec<(String, UnixTime)>> {
        let rows: Vec<(String, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, not_after FROM certificates WHERE status = 'active' \
                 AND not_after <= $1 ORDER BY not_after, id LIMIT $2",
            )
            .bind(horizon)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Counts of non-archived certificates per (owner, team): total, and
    /// expiring, expired and revoked among them, in one pass.
    #[allow(clippy::type_complexity)] // the row, spelled out
    pub async fn ownership_counts(
        &self,
        view: StatusView,
    ) -> Result<Vec<(Option<String>, Option<String>, i64, i64, i64, i64)>> {
        let rows = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT owner_id, team_id, COUNT(*), \
                   COUNT(*) FILTER (WHERE status = 'active' AND not_after > $1 AND not_after <= $2), \
                   COUNT(*) FILTER (WHERE (status = 'active' AND not_after <= $1) OR status = 'expired'), \
                   COUNT(*) FILTER (WHERE status = 'revoked') \
                 FROM certificates WHERE status <> 'archived' GROUP BY owner_id, team_id",
            )
            .bind(view.now)
            .bind(view.now.saturating_add(view.expiring_window))
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Counts by stored status, plus expiring and expired among the active,
    /// in one pass over the table.
    pub async fn certificate_counts(&self, view: StatusView) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64, i64, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT status, COUNT(*), \
                   COUNT(*) FILTER (WHERE (status = 'active' AND not_after <= $1) OR status = 'expired'), \
                   COUNT(*) FILTER (WHERE status = 'active' AND not_after > $1 AND not_after <= $2) \
                 FROM certificates GROUP BY status",
            )
            .bind(view.now)
            .bind(view.now.saturating_add(view.expiring_window))
            .fetch_all(p)
            .await?
        });
        let expired = rows.iter().map(|r| r.2).sum();
        let expiring = rows.iter().map(|r| r.3).sum();
        // Stored `expired` (short-lived certificates) is counted with the
        // computed expired above, not as a stored status of its own.
        let mut out: Vec<(String, i64)> = rows
            .into_iter()
            .filter(|r| r.0 != "expired")
            .map(|r| (r.0, r.1))
            .collect();
        out.push(("expired".into(), expired));
        out.push(("expiring".into(), expiring));
        Ok(out)
    }

    pub async fn versions(&self, certificate_id: &str) -> Result<Vec<CertificateVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate_id = $1 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<VersionRow> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(&sql))
                .bind(certificate_id)
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(VersionRow::into_domain).collect()
    }
}

/// A certificate with its profile and issuer, read in one query (the
/// issuance path needs all three; one round trip instead of three).
#[derive(sqlx::FromRow)]
struct BundleRow {
    #[sqlx(flatten)]
    cert: CertRow,
    profile_body: String,
    issuer_name: String,
    issuer_kind: String,
    issuer_config: String,
    issuer_ca_material: Option<String>,
    issuer_enabled: bool,
    issuer_created_at: i64,
    issuer_updated_at: i64,
    issuer_secrets: Option<String>,
    issuer_account: Option<String>,
}

impl Tx {
    /// The certificate, its profile and its issuer (with CA material).
    pub async fn certificate_bundle(
        &mut self,
        id: &str,
        view: StatusView,
    ) -> Result<
        Option<(
            ManagedCertificate,
            crate::domain::Profile,
            super::IssuerRecord,
        )>,
    > {
        let cols = CERT_COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, p.body AS profile_body, i.name AS issuer_name, i.kind AS issuer_kind, \
             i.config AS issuer_config, i.ca_material AS issuer_ca_material, \
             i.secrets AS issuer_secrets, i.account AS issuer_account, \
             i.enabled AS issuer_enabled, i.created_at AS issuer_created_at, \
             i.updated_at AS issuer_updated_at \
             FROM certificates c JOIN profiles p ON p.id = c.profile_id \
             JOIN issuers i ON i.id = c.issuer_id WHERE c.id = $1"
        );
        let row: Option<BundleRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        let Some(r) = row else { return Ok(None) };
        let profile = json_col(&r.profile_body, "profile")?;
        let issuer = super::IssuerRow {
            id: r.cert.issuer_id.clone(),
            name: r.issuer_name,
            kind: r.issuer_kind,
            config: r.issuer_config,
            ca_material: r.issuer_ca_material,
            secrets: r.issuer_secrets,
            account: r.issuer_account,
            enabled: r.issuer_enabled,
            created_at: r.issuer_created_at,
            updated_at: r.issuer_updated_at,
        }
        .into_record()?;
        Ok(Some((r.cert.into_domain(view)?, profile, issuer)))
    }

    pub async fn certificate(
        &mut self,
        id: &str,
        view: StatusView,
    ) -> Result<Option<ManagedCertificate>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1");
        let row: Option<CertRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(|r| r.into_domain(view)).transpose()
    }

    /// The stored lifecycle status (without time refinement).
    pub async fn certificate_lifecycle(&mut self, id: &str) -> Result<Option<LifecycleStatus>> {
        let s: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT status FROM certificates WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        s.map(|s| enum_col(&s, LifecycleStatus::parse, "certificate status"))
            .transpose()
    }

    pub async fn insert_certificate(&mut self, c: &ManagedCertificate) -> Result<()> {
        self.touch_certificates();
        let sans = to_json(&c.sans)?;
        let labels = to_json(&c.labels)?;
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO certificates (id, name, common_name, sans, status, environment, \
                 issuer_id, profile_id, owner_id, team_id, renewal_policy_id, labels, \
                 not_after, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.common_name)
            .bind(&sans)
            .bind(LifecycleStatus::Pending.as_str())
            .bind(&c.environment)
            .bind(&c.issuer_id)
            .bind(&c.profile_id)
            .bind(&c.owner_id)
            .bind(&c.team_id)
            .bind(&c.renewal_policy_id)
            .bind(&labels)
            .bind(NO_EXPIRY)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    pub async fn update_certificate(
        &mut self,
        id: &str,
        patch: &CertificatePatch,
        now: UnixTime,
    ) -> Result<()> {
        self.touch_certificates();
        let mut w = Where::default();
        let mut sets = Vec::new();
        if let Some(v) = &patch.name {
            sets.push(format!("name = {}", w.arg(Arg::Text(v.clone()))));
        }
        for (col, v) in [
            ("environment", &patch.environment),
            ("issuer_id", &patch.issuer_id),
            ("profile_id", &patch.profile_id),
        ] {
            if let Some(v) = v {
                sets.push(format!("{col} = {}", w.arg(Arg::Text(v.clone()))));
            }
        }
        for (col, v) in [
            ("owner_id", &patch.owner_id),
            ("team_id", &patch.team_id),
            ("renewal_policy_id", &patch.renewal_policy_id),
        ] {
            match v {
                Some(Some(v)) => sets.push(format!("{col} = {}", w.arg(Arg::Text(v.clone())))),
                Some(None) => sets.push(format!("{col} = NULL")),
                None => {}
            }
        }
        if let Some(v) = &patch.labels {
            sets.push(format!("labels = {}", w.arg(Arg::Text(to_json(v)?))));
        }
        sets.push(format!("updated_at = {}", w.arg(Arg::Int(now))));
        let idp = w.arg(Arg::Text(id.to_owned()));
        let sql = format!(
            "UPDATE certificates SET {} WHERE id = {idp}",
            sets.join(", ")
        );
        with_tx!(self, |c| {
            bind_args!(sqlx::query(safe(&sql)), &w.args)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    pub async fn set_certificate_status(
        &mut self,
        id: &str,
        status: LifecycleStatus,
        now: UnixTime,
    ) -> Result<()> {
        self.touch_certificates();
        with_tx!(self, |c| {
            sqlx::query("UPDATE certificates SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(id)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Stores a new version and makes it the certificate's current one.
    pub async fn insert_version(&mut self, v: &NewVersion) -> Result<()> {
        self.touch_certificates();
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO certificate_versions (id, certificate_id, issuer_id, serial, \
                 fingerprint, key_algorithm, not_before, not_after, cert_pem, chain_pem, \
                 csr_pem, private_key_sealed, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&v.id)
            .bind(&v.certificate_id)
            .bind(&v.issuer_id)
            .bind(&v.serial)
            .bind(&v.fingerprint)
            .bind(v.key_algorithm.as_str())
            .bind(v.not_before)
            .bind(v.not_after)
            .bind(&v.cert_pem)
            .bind(&v.chain_pem)
            .bind(&v.csr_pem)
            .bind(&v.private_key_sealed)
            .bind(v.created_at)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "UPDATE certificates SET status = 'active', current_version_id = $1, serial = $2, \
                 fingerprint = $3, key_algorithm = $4, not_before = $5, not_after = $6, \
                 revoked_at = NULL, revocation_reason = NULL, ari_next_check_at = 0, updated_at = $7 \
                 WHERE id = $8",
            )
            .bind(&v.id)
            .bind(&v.serial)
            .bind(&v.fingerprint)
            .bind(v.key_algorithm.as_str())
            .bind(v.not_before)
            .bind(v.not_after)
            .bind(v.created_at)
            .bind(&v.certificate_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Marks the current version and the certificate revoked.
    pub async fn revoke_current(
        &mut self,
        certificate_id: &str,
        version_id: &str,
        reason: RevocationReason,
        now: UnixTime,
    ) -> Result<()> {
        self.touch_certificates();
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE certificate_versions SET revoked_at = $1, revocation_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason.as_str())
            .bind(version_id)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, \
                 revocation_reason = $2, updated_at = $1 WHERE id = $3",
            )
            .bind(now)
            .bind(reason.as_str())
            .bind(certificate_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn version(&mut self, id: &str) -> Result<Option<CertificateVersion>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE id = $1");
        let row: Option<VersionRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(VersionRow::into_domain).transpose()
    }
}
