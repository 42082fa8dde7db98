//! Statistics for dashboards: certificates by status, the expiration
//! timeline, job trends and the issuance rate. Each is one grouped query.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::error::{Error, Result};

const DAY: i64 = 86_400;

/// A time window cut into buckets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WindowInput {
    /// How many days the window covers (default 30, at most 730).
    pub days: Option<i64>,
    /// Bucket width in days (default 1 for past windows, 7 for the expiration timeline).
    pub bucket_days: Option<i64>,
}

impl WindowInput {
    /// `(days, bucket seconds, bucket count)`, checked.
    fn resolve(&self, default_days: i64, default_bucket: i64) -> Result<(i64, i64, i64)> {
        let days = self.days.unwrap_or(default_days);
        let bucket = self.bucket_days.unwrap_or(default_bucket);
        if !(1..=730).contains(&days) {
            return Err(Error::invalid(format!("days must be 1 to 730, got {days}")));
        }
        if !(1..=days).contains(&bucket) {
            return Err(Error::invalid(format!(
                "bucket_days must be 1 to days ({days}), got {bucket}"
            )));
        }
        Ok((days, bucket * DAY, (days + bucket - 1) / bucket))
    }
}

/// One bucket of a time series: `[start, end)` and its count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    pub start: UnixTime,
    pub end: UnixTime,
    pub count: i64,
    /// Counts per status (job trends only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_status: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimeSeries {
    pub from: UnixTime,
    pub to: UnixTime,
    pub bucket_seconds: i64,
    pub total: i64,
    pub buckets: Vec<Bucket>,
}

fn series(from: UnixTime, bucket: i64, n: i64, to: UnixTime, counts: &[(i64, i64)]) -> TimeSeries {
    let buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: from + i * bucket,
            end: (from + (i + 1) * bucket).min(to),
            count: counts
                .iter()
                .find(|(b, _)| *b == i)
                .map(|(_, c)| *c)
                .unwrap_or(0),
            by_status: None,
        })
        .collect();
    TimeSeries {
        from,
        to,
        bucket_seconds: bucket,
        total: buckets.iter().map(|b| b.count).sum(),
        buckets,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusCounts {
    pub total: i64,
    /// Counts by effective status: pending, valid, expiring, expired, revoked, failed, archived.
    pub by_status: serde_json::Map<String, serde_json::Value>,
}

/// Effective-status counts from the store's one-pass counts.
pub(crate) async fn status_counts(ctx: &mut super::Ctx<'_>) -> Result<StatusCounts> {
    let view = ctx.engine.status_view(ctx.now);
    let counts = ctx.engine.store().certificate_counts(view).await?;
    let get = |k: &str| {
        counts
            .iter()
            .find(|(s, _)| s == k)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let (active, expired, expiring) = (get("active"), get("expired"), get("expiring"));
    let mut by_status = serde_json::Map::new();
    for s in ["pending", "revoked", "failed", "archived"] {
        by_status.insert(s.into(), get(s).into());
    }
    by_status.insert("valid".into(), (active - expired - expiring).into());
    by_status.insert("expiring".into(), expiring.into());
    by_status.insert("expired".into(), expired.into());
    let total = counts
        .iter()
        .filter(|(s, _)| s != "expired" && s != "expiring")
        .map(|(_, n)| n)
        .sum();
    Ok(StatusCounts { total, by_status })
}

async fn expiration_timeline(ctx: &mut super::Ctx<'_>, input: &WindowInput) -> Result<TimeSeries> {
    let (days, bucket, n) = input.resolve(90, 7)?;
    let (from, to) = (ctx.now, ctx.now + days * DAY);
    let counts = ctx
        .engine
        .store()
        .expiry_histogram(from, to, bucket)
        .await?;
    Ok(series(from, bucket, n, to, &counts))
}

async fn job_trends(ctx: &mut super::Ctx<'_>, input: &WindowInput) -> Result<TimeSeries> {
    let (days, bucket, n) = input.resolve(30, 1)?;
    let to = ctx.now + 1; // the current second included
    let from = to - days * DAY;
    let rows = ctx.engine.store().job_histogram(from, to, bucket).await?;
    let totals: Vec<(i64, i64)> = (0..n)
        .map(|i| (i, rows.iter().filter(|r| r.0 == i).map(|r| r.2).sum()))
        .collect();
    let mut s = series(from, bucket, n, to, &totals);
    for (i, b) in s.buckets.iter_mut().enumerate() {
        let m = rows
            .iter()
            .filter(|r| r.0 == i as i64)
            .map(|r| (r.1.clone(), serde_json::Value::from(r.2)))
            .collect();
        b.by_status = Some(m);
    }
    Ok(s)
}

async fn issuance_rate(ctx: &mut super::Ctx<'_>, input: &WindowInput) -> Result<TimeSeries> {
    let (days, bucket, n) = input.resolve(30, 1)?;
    let to = ctx.now + 1; // the current second included
    let from = to - days * DAY;
    let counts = ctx
        .engine
        .store()
        .issuance_histogram(from, to, bucket)
        .await?;
    Ok(series(from, bucket, n, to, &counts))
}

/// Certificates of one owner or team (`id` absent: none assigned).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwnershipCount {
    pub id: Option<String>,
    pub total: i64,
    pub expiring: i64,
    pub expired: i64,
    pub revoked: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwnershipStats {
    /// Per owner, most certificates first; archived ones are not counted.
    pub by_owner: Vec<OwnershipCount>,
    /// Per team, most certificates first.
    pub by_team: Vec<OwnershipCount>,
}

fn fold(rows: impl Iterator<Item = (Option<String>, [i64; 4])>) -> Vec<OwnershipCount> {
    let mut map: std::collections::BTreeMap<Option<String>, OwnershipCount> = Default::default();
    for (id, [t, ing, ed, rv]) in rows {
        let e = map.entry(id.clone()).or_insert_with(|| OwnershipCount {
            id,
            ..Default::default()
        });
        e.total += t;
        e.expiring += ing;
        e.expired += ed;
        e.revoked += rv;
    }
    let mut v: Vec<OwnershipCount> = map.into_values().collect();
    v.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.id.cmp(&b.id)));
    v
}

async fn by_ownership(ctx: &mut super::Ctx<'_>) -> Result<OwnershipStats> {
    let view = ctx.engine.status_view(ctx.now);
    let rows = ctx.engine.store().ownership_counts(view).await?;
    Ok(OwnershipStats {
        by_owner: fold(rows.iter().map(|r| (r.0.clone(), [r.2, r.3, r.4, r.5]))),
        by_team: fold(rows.iter().map(|r| (r.1.clone(), [r.2, r.3, r.4, r.5]))),
    })
}

/// Which statistics `get_stats` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatsView {
    /// Certificates per effective status.
    ByStatus,
    /// Certificates per owner and per team, unassigned included.
    ByOwnership,
    /// Active certificates expiring in each coming period (default 90 days, weekly).
    ExpirationTimeline,
    /// Jobs created in each past period with their status (default 30 days, daily).
    JobTrends,
    /// Certificate versions issued in each past period (default 30 days, daily).
    IssuanceRate,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsInput {
    pub view: StatsView,
    /// Time series only: days covered (default 30, or 90 for the timeline; at most 730).
    #[serde(default)]
    pub days: Option<i64>,
    /// Time series only: bucket width in days (default 1, or 7 for the timeline).
    #[serde(default)]
    pub bucket_days: Option<i64>,
}

/// What `get_stats` returns, by view.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Stats {
    Counts(StatusCounts),
    Ownership(OwnershipStats),
    Series(TimeSeries),
}

operation! {
    GetStats {
        name: "get_stats",
        title: "Certificate and job statistics",
        description: "Dashboard statistics by `view`: by_status, by_ownership (find who holds what and what is unassigned), expiration_timeline (renewal waves ahead), job_trends (failing renewals, deployment backlogs), issuance_rate. The inventory summary is get_stats_summary.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "stats",
        input: StatsInput,
        output: Stats,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let window = WindowInput { days: input.days, bucket_days: input.bucket_days };
        let series_view = matches!(
            input.view,
            StatsView::ExpirationTimeline | StatsView::JobTrends | StatsView::IssuanceRate
        );
        if !series_view && (input.days.is_some() || input.bucket_days.is_some()) {
            return Err(Error::invalid("days and bucket_days apply to the time series views only"));
        }
        Ok(match input.view {
            StatsView::ByStatus => Stats::Counts(status_counts(ctx).await?),
            StatsView::ByOwnership => Stats::Ownership(by_ownership(ctx).await?),
            StatsView::ExpirationTimeline => Stats::Series(expiration_timeline(ctx, &window).await?),
            StatsView::JobTrends => Stats::Series(job_trends(ctx, &window).await?),
            StatsView::IssuanceRate => Stats::Series(issuance_rate(ctx, &window).await?),
        })
    }
}
