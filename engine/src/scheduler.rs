//! The scheduler: periodic loops that run under the same engine as every
//! face (so the approval gate and audit apply to scheduled work too).
//!
//! Time comes from the engine's clock, and [`Scheduler::tick`] does one
//! round: every loop whose interval has elapsed runs, unless its previous run
//! is still in flight (then the tick is skipped and logged). Singleton loops
//! run only on the process holding their lease row, so several replicas on
//! one database do each piece of work once. Production drives `tick` from a
//! timer ([`Scheduler::run`]); tests call it directly after moving the clock.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::Engine;
use crate::config::SchedulerConfig;
use crate::domain::Principal;
use crate::error::Result;
use crate::ops::{self, Outcome};

/// Renewals the renewal loop queues per transaction.
const RENEWAL_BATCH: usize = 200;

/// A periodic loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loop {
    /// Queue renewals for certificates entering their renewal window (1 h).
    Renewal,
    /// Put jobs of dead workers back (30 s).
    JobLeases,
    /// Mark approvals past their deadline as expired (1 min).
    ApprovalExpiry,
    /// Run due issuer jobs: issuance, renewal and revocation at external CAs
    /// (30 s), and resume bulk operations nobody holds. Not a singleton:
    /// every process claims jobs (skip-locked) and bulk chunks (leases).
    Jobs,
    /// Re-sign CRLs that are behind or half-way to nextUpdate, and OCSP
    /// responses before they leave the cache (1 min).
    Revocation,
    /// Route new notification events and deliver due notifications (1 min).
    Notifications,
    /// Agents whose heartbeat stopped become offline (2 min).
    AgentHealth,
    /// Short-lived certificates past `not_after` move to `expired` (30 s).
    ShortLivedExpiry,
    /// TLS scans of the enabled network scan targets (6 h).
    NetworkScan,
    /// A signed checkpoint of the audit chain's head when N events or T
    /// seconds have passed since the last (looks every minute).
    AuditCheckpoint,
}

impl Loop {
    pub const ALL: [Loop; 10] = [
        Loop::Renewal,
        Loop::JobLeases,
        Loop::ApprovalExpiry,
        Loop::Jobs,
        Loop::Revocation,
        Loop::Notifications,
        Loop::AgentHealth,
        Loop::ShortLivedExpiry,
        Loop::NetworkScan,
        Loop::AuditCheckpoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loop::Renewal => "renewal",
            Loop::JobLeases => "job-leases",
            Loop::ApprovalExpiry => "approval-expiry",
            Loop::Jobs => "jobs",
            Loop::Revocation => "revocation",
            Loop::Notifications => "notifications",
            Loop::AgentHealth => "agent-health",
            Loop::ShortLivedExpiry => "short-lived-expiry",
            Loop::NetworkScan => "network-scan",
            Loop::AuditCheckpoint => "audit-checkpoint",
        }
    }

    /// Default interval in seconds (the original certctl's defaults).
    pub fn default_interval(self) -> i64 {
        match self {
            Loop::Renewal => 3600,
            Loop::JobLeases => 30,
            Loop::ApprovalExpiry => 60,
            Loop::Jobs => 30,
            Loop::Revocation => 60,
            Loop::Notifications => 60,
            Loop::AgentHealth => 120,
            Loop::ShortLivedExpiry => 30,
            Loop::NetworkScan => 6 * 3600,
            Loop::AuditCheckpoint => 60,
        }
    }

    /// The interval the engine's configuration sets for this loop.
    pub fn configured_interval(self, cfg: &SchedulerConfig) -> i64 {
        match self {
            Loop::Renewal => cfg.renewal_interval_seconds,
            Loop::JobLeases => cfg.job_lease_interval_seconds,
            Loop::ApprovalExpiry => cfg.approval_expiry_interval_seconds,
            Loop::Notifications => cfg.notification_interval_seconds,
            Loop::AgentHealth => cfg.agent_health_interval_seconds,
            Loop::ShortLivedExpiry => cfg.short_lived_interval_seconds,
            Loop::Jobs => cfg.jobs_interval_seconds,
            Loop::Revocation => cfg.revocation_interval_seconds,
            Loop::NetworkScan => cfg.network_scan_interval_seconds,
            // It looks every minute (or as often as checkpoints are due by
            // time); a look costs two indexed reads when nothing is due.
            Loop::AuditCheckpoint => cfg.audit_checkpoint_interval_seconds.clamp(1, 60),
        }
    }
}

/// Shutdown gave up waiting: these loops were still running when the
/// timeout ran out (their work is reclaimed through leases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownTimeout {
    pub timeout: std::time::Duration,
    pub in_flight: Vec<&'static str>,
}

impl std::fmt::Display for ShutdownTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scheduler runs still in flight after {}s: {}",
            self.timeout.as_secs_f64(),
            self.in_flight.join(", ")
        )
    }
}

impl std::error::Error for ShutdownTimeout {}

/// What a tick did with one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    Ran,
    /// The previous run was still in flight.
    SkippedInFlight,
    /// Another process holds the loop's lease.
    SkippedNotLeader,
    Failed(String),
}

/// Runs the loops of one process.
pub struct Scheduler {
    engine: Arc<Engine>,
    /// This process's identity in lease rows.
    owner: String,
    intervals: HashMap<Loop, i64>,
    last_run: Mutex<HashMap<Loop, i64>>,
    in_flight: Mutex<HashSet<Loop>>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, owner: impl Into<String>) -> Self {
        let cfg = engine.config().scheduler.clone();
        Self {
            engine,
            owner: owner.into(),
            intervals: Loop::ALL
                .iter()
                .map(|l| (*l, l.configured_interval(&cfg).max(1)))
                .collect(),
            last_run: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    pub fn with_interval(mut self, l: Loop, seconds: i64) -> Self {
        self.intervals.insert(l, seconds.max(1));
        self
    }

    /// Starts every due loop on its own task and returns the handles. A
    /// loop counts as run from the moment it starts, so a slow run is not
    /// restarted every round; when its next turn comes while it still runs,
    /// that turn is skipped.
    pub fn start_due(self: &Arc<Self>) -> Vec<(Loop, tokio::task::JoinHandle<TickOutcome>)> {
        let now = self.engine.now();
        let due: Vec<Loop> = {
            let mut last = self.last_run.lock().unwrap_or_else(|e| e.into_inner());
            let due: Vec<Loop> = Loop::ALL
                .into_iter()
                .filter(|l| last.get(l).is_none_or(|t| now - t >= self.intervals[l]))
                .collect();
            for l in &due {
                last.insert(*l, now);
            }
            due
        };
        due.into_iter()
            .map(|l| {
                let this = self.clone();
                (l, tokio::spawn(async move { this.run_once(l, now).await }))
            })
            .collect()
    }

    /// One round, waited for: what each due loop did.
    pub async fn tick(self: &Arc<Self>) -> Vec<(Loop, TickOutcome)> {
        let mut out = Vec::new();
        for (l, h) in self.start_due() {
            let o = h
                .await
                .unwrap_or_else(|e| TickOutcome::Failed(format!("loop task failed: {e}")));
            out.push((l, o));
        }
        out
    }

    /// Runs one loop now unless it is in flight or another process leads it.
    pub async fn run_once(&self, l: Loop, now: i64) -> TickOutcome {
        let started = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(l);
        if !started {
            tracing::info!(
                loop_ = l.name(),
                "previous run still in flight; skipping this turn"
            );
            // The run is alive: keep its lease, or a run longer than the
            // lease would let another process start the same loop.
            if l != Loop::Jobs {
                let _ = self
                    .engine
                    .store()
                    .acquire_lease(l.name(), &self.owner, now, self.lease_ttl(l))
                    .await;
            }
            return TickOutcome::SkippedInFlight;
        }
        let outcome = self.lead_and_run(l, now).await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&l);
        outcome
    }

    async fn lead_and_run(&self, l: Loop, now: i64) -> TickOutcome {
        if l == Loop::Jobs {
            // Jobs are claimed with leases of their own, so every process
            // works on them and no loop lease is needed.
            return match self.run_loop(l, now).await {
                Ok(()) => TickOutcome::Ran,
                Err(e) => TickOutcome::Failed(e.to_string()),
            };
        }
        match self
            .engine
            .store()
            .acquire_lease(l.name(), &self.owner, now, self.lease_ttl(l))
            .await
        {
            Ok(true) => {}
            Ok(false) => return TickOutcome::SkippedNotLeader,
            Err(e) => return TickOutcome::Failed(e.to_string()),
        }
        // Which process ran which tick, durably (replicas are checked on it).
        if let Err(e) = self
            .engine
            .store()
            .record_loop_run(l.name(), now / self.intervals[&l], &self.owner, now)
            .await
        {
            return TickOutcome::Failed(e.to_string());
        }
        match self.run_loop(l, now).await {
            Ok(()) => TickOutcome::Ran,
            Err(e) => {
                tracing::warn!(loop_ = l.name(), error = %e, "loop run failed");
                TickOutcome::Failed(e.to_string())
            }
        }
    }

    /// A loop lease outlives two intervals plus a margin, so a healthy
    /// leader keeps it (it is renewed on every turn, even while a run is
    /// still in flight).
    fn lease_ttl(&self, l: Loop) -> i64 {
        self.intervals[&l] * 2
            + self
                .engine
                .config()
                .scheduler
                .loop_lease_margin_seconds
                .max(0)
    }

    async fn run_loop(&self, l: Loop, now: i64) -> Result<()> {
        let system = Principal::system("scheduler");
        match l {
            Loop::JobLeases => {
                let n = self.engine.store().reclaim_expired_leases(now).await?;
                if n > 0 {
                    tracing::warn!(jobs = n, "reclaimed jobs whose worker stopped answering");
                }
            }
            Loop::Jobs => {
                let r = crate::issuers::runner::run_due(&self.engine, &self.owner, 25).await?;
                if r.completed + r.failed > 0 {
                    tracing::info!(
                        completed = r.completed,
                        failed = r.failed,
                        "ran issuer jobs"
                    );
                }
                // Bulk operations whose caller stopped before their last
                // chunk (a crash, a restart) finish here, on one process.
                self.engine.resume_bulk_operations(&self.owner).await?;
            }
            Loop::ApprovalExpiry => {
                self.engine
                    .call::<ops::ExpireApprovals>(&system, Default::default())
                    .await?;
            }
            Loop::Revocation => {
                self.engine.refresh_revocation_data().await?;
            }
            Loop::Renewal => self.run_renewals(now).await?,
            Loop::Notifications => self.run_notifications(now).await?,
            Loop::AgentHealth => self.run_agent_health(now).await?,
            Loop::ShortLivedExpiry => self.run_short_lived_expiry(now).await?,
            Loop::NetworkScan => self.run_network_scans().await?,
            Loop::AuditCheckpoint => {
                if let Some(seq) = crate::audit_anchor::checkpoint_if_due(&self.engine, now).await?
                {
                    tracing::info!(head_seq = seq, "audit checkpoint written");
                }
            }
        }
        Ok(())
    }

    /// Starts due loops every second until `shutdown` resolves, then waits
    /// for runs in flight (at most `grace`) and releases this process's leases.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: std::time::Duration,
    ) -> std::result::Result<(), ShutdownTimeout> {
        let mut timer = tokio::time::interval(std::time::Duration::from_secs(1));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut running: Vec<tokio::task::JoinHandle<TickOutcome>> = Vec::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = timer.tick() => {
                    running.retain(|h| !h.is_finished());
                    running.extend(self.start_due().into_iter().map(|(_, h)| h));
                }
            }
        }
        let drain = async {
            for h in running.iter_mut() {
                let _ = h.await;
            }
        };
        let timed_out = tokio::time::timeout(grace, drain).await.is_err();
        let result = if timed_out {
            let in_flight: Vec<&'static str> = {
                let set = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                let mut v: Vec<&'static str> = set.iter().map(|l| l.name()).collect();
                v.sort_unstable();
                v
            };
            let err = ShutdownTimeout {
                timeout: grace,
                in_flight,
            };
            tracing::warn!(error = %err, "stopping anyway; leases hand the work to another process");
            for h in &running {
                h.abort();
            }
            Err(err)
        } else {
            Ok(())
        };
        for l in Loop::ALL {
            let _ = self
                .engine
                .store()
                .release_lease(l.name(), &self.owner)
                .await;
        }
        result
    }
}

// ---------------------------------------------------------------- loop bodies
// (renewals, notifications, agent health, short-lived expiry, network scans)

impl Scheduler {
    /// Scans every enabled network scan target through the engine (so the
    /// guard rails and audit apply). One failing target does not stop the others.
    async fn run_network_scans(&self) -> Result<()> {
        let targets = {
            let mut tx = self.engine.store().begin_read().await?;
            let t = tx.scan_targets().await?;
            tx.rollback().await?;
            t
        };
        let system = Principal::system("scheduler");
        for t in targets.into_iter().filter(|t| t.enabled) {
            let input = ops::IdInput { id: t.id.clone() };
            match self
                .engine
                .call::<ops::ScanNetworkTarget>(&system, input)
                .await
            {
                Ok(Outcome::Completed { result }) => tracing::info!(
                    target = %t.id,
                    tls = result.tls,
                    closed = result.closed,
                    not_tls = result.not_tls,
                    "network scan done"
                ),
                Ok(Outcome::ApprovalRequired(_)) => {}
                Err(e) => tracing::warn!(target = %t.id, error = %e, "network scan failed"),
            }
        }
        Ok(())
    }

    /// Announces certificates crossing an expiry threshold, then queues a
    /// renewal for every certificate whose precomputed `renew_after` has
    /// come (one index range, however large the inventory).
    async fn run_renewals(&self, now: i64) -> Result<()> {
        // ACME CAs with renewal information move renewal times first (RFC 9773).
        let moved = crate::issuers::ari::refresh_due(&self.engine, now).await?;
        if moved > 0 {
            tracing::info!(
                certificates = moved,
                "renewal times moved into the CA's suggested window"
            );
        }
        let warned = crate::notify::warn_expiring(&self.engine, now).await?;
        if warned > 0 {
            tracing::info!(events = warned, "expiry warnings queued");
        }
        // Pages through everything due with a keyset cursor, so each
        // certificate is looked at once per run however large the backlog.
        let mut cursor: Option<(i64, String)> = None;
        loop {
            let due = self
                .engine
                .store()
                .certificates_due_for_renewal(
                    now,
                    cursor.as_ref().map(|(t, id)| (*t, id.as_str())),
                    1000,
                )
                .await?;
            let Some(last) = due.last() else {
                break;
            };
            cursor = Some((last.1, last.0.clone()));
            let mut todo = Vec::with_capacity(due.len());
            for (id, _) in due {
                if !self
                    .engine
                    .store()
                    .has_pending_approval("renew_certificate", &id, now)
                    .await?
                {
                    todo.push(id);
                }
            }
            for batch in todo.chunks(RENEWAL_BATCH) {
                self.renew_batch(batch, now).await?;
            }
        }
        Ok(())
    }

    /// Queues the renewals of `ids` through the engine, many per
    /// transaction ([`Engine::call_batch`]: the same authorization, approval
    /// gate, policy checks and audit event per certificate as a single
    /// call). A certificate whose renewal fails is taken out and run alone
    /// through [`Engine::call`], which audits the failure; the others commit
    /// in batches around it, so each is queued once.
    async fn renew_batch(&self, ids: &[String], now: i64) -> Result<()> {
        let system = Principal::system("scheduler");
        let mut start = 0;
        while start < ids.len() {
            // The longest run from `start` that goes through in one transaction.
            let mut end = ids.len();
            while end > start {
                let inputs = ids[start..end]
                    .iter()
                    .map(|id| ops::RenewCertificateInput {
                        id: id.clone(),
                        csr_pem: None,
                    })
                    .collect();
                match self
                    .engine
                    .call_batch::<ops::RenewCertificate>(&system, inputs)
                    .await?
                {
                    Ok(_) => break,
                    Err((i, _)) => end = start + i,
                }
            }
            if end == ids.len() {
                break;
            }
            self.renew_one(&system, &ids[end], now).await?;
            start = end + 1;
        }
        Ok(())
    }

    /// One renewal through [`Engine::call`] (a profile that requires
    /// approval gates it like a manual one); a refusal notifies the owners.
    async fn renew_one(&self, system: &Principal, id: &str, now: i64) -> Result<()> {
        let input = ops::RenewCertificateInput {
            id: id.to_owned(),
            csr_pem: None,
        };
        match self
            .engine
            .call::<ops::RenewCertificate>(system, input)
            .await
        {
            Ok(Outcome::Completed { .. }) | Ok(Outcome::ApprovalRequired(_)) => {}
            Err(e) => {
                tracing::warn!(certificate = %id, error = %e, "renewal could not be queued");
                // Once per certificate and day: the loop retries
                // every hour, the owners need not hear it hourly.
                let mut tx = self.engine.store().begin_write().await?;
                crate::notify::renewal_failed(
                    &mut tx,
                    now,
                    id,
                    &e.to_string(),
                    format!("renewal_failed:{id}:{}", now / 86400),
                )
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Routes new events to channels, then sends what is due.
    async fn run_notifications(&self, now: i64) -> Result<()> {
        while crate::notify::route(&self.engine, now, 500).await? == 500 {}
        let report = crate::notify::deliver(&self.engine, &self.owner, now).await?;
        if report != Default::default() {
            tracing::info!(
                sent = report.sent,
                failed = report.failed,
                dead_lettered = report.dead_lettered,
                "notifications delivered"
            );
        }
        Ok(())
    }

    /// Online agents silent for longer than the threshold become offline,
    /// with an audit event and an `agent_offline` notification each.
    async fn run_agent_health(&self, now: i64) -> Result<()> {
        let after = self.engine.config().scheduler.agent_offline_after_seconds;
        let system = Principal::system("scheduler");
        let mut tx = self.engine.store().begin_write().await?;
        let gone = tx.mark_agents_offline(now - after, now).await?;
        for (id, name) in &gone {
            let mut details = serde_json::Map::new();
            details.insert("offline_after_seconds".into(), after.into());
            self.engine
                .append(
                    &mut tx,
                    &system,
                    "agent.offline",
                    "agent",
                    Some(id.clone()),
                    crate::domain::Outcome::Success,
                    details,
                    now,
                )
                .await?;
            crate::notify::emit(
                &mut tx,
                now,
                crate::domain::EventKind::AgentOffline,
                None,
                format!("Agent {name} is offline"),
                format!("Agent {name} ({id}) sent no heartbeat for over {after} seconds."),
                serde_json::json!({ "agent_id": id, "agent_name": name }),
                format!("agent_offline:{id}:{now}"),
            )
            .await?;
        }
        tx.commit().await?;
        if !gone.is_empty() {
            tracing::warn!(agents = gone.len(), "agents went offline");
        }
        Ok(())
    }

    /// Short-lived certificates are never revoked: past `not_after` they
    /// move to the stored `expired` status. Short-lived means the profile
    /// says `short_lived`, or the lifetime is at most
    /// `short_lived_max_ttl_seconds` (1 h by default).
    async fn run_short_lived_expiry(&self, now: i64) -> Result<()> {
        let profiles: Vec<String> = self
            .engine
            .store()
            .list_profiles()
            .await?
            .into_iter()
            .filter(|p| p.short_lived)
            .map(|p| p.id)
            .collect();
        let max_ttl = self.engine.config().scheduler.short_lived_max_ttl_seconds;
        let expired = self
            .engine
            .store()
            .expire_short_lived(now, &profiles, max_ttl)
            .await?;
        if !expired.is_empty() {
            tracing::info!(
                certificates = expired.len(),
                "short-lived certificates expired"
            );
        }
        Ok(())
    }
}
