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
use crate::domain::Principal;
use crate::error::Result;
use crate::ops::{self, Outcome};

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
    /// (30 s). Not a singleton: every process claims jobs (skip-locked).
    Jobs,
}

impl Loop {
    pub const ALL: [Loop; 4] = [
        Loop::Renewal,
        Loop::JobLeases,
        Loop::ApprovalExpiry,
        Loop::Jobs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loop::Renewal => "renewal",
            Loop::JobLeases => "job-leases",
            Loop::ApprovalExpiry => "approval-expiry",
            Loop::Jobs => "jobs",
        }
    }

    /// Default interval in seconds (the original certctl's defaults).
    pub fn default_interval(self) -> i64 {
        match self {
            Loop::Renewal => 3600,
            Loop::JobLeases => 30,
            Loop::ApprovalExpiry => 60,
            Loop::Jobs => 30,
        }
    }
}

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
    /// Days before expiry at which certificates are renewed (until renewal
    /// policies drive it per certificate).
    renew_before_days: i64,
    last_run: Mutex<HashMap<Loop, i64>>,
    in_flight: Mutex<HashSet<Loop>>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, owner: impl Into<String>) -> Self {
        Self {
            engine,
            owner: owner.into(),
            intervals: Loop::ALL
                .iter()
                .map(|l| (*l, l.default_interval()))
                .collect(),
            renew_before_days: 30,
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
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !in_flight.insert(l) {
                tracing::info!(
                    loop_ = l.name(),
                    "previous run still in flight; skipping this turn"
                );
                return TickOutcome::SkippedInFlight;
            }
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
        // The lease outlives one interval a little, so a healthy leader keeps it.
        let ttl = self.intervals[&l] * 2 + 30;
        match self
            .engine
            .store()
            .acquire_lease(l.name(), &self.owner, now, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => return TickOutcome::SkippedNotLeader,
            Err(e) => return TickOutcome::Failed(e.to_string()),
        }
        match self.run_loop(l, now).await {
            Ok(()) => TickOutcome::Ran,
            Err(e) => {
                tracing::warn!(loop_ = l.name(), error = %e, "loop run failed");
                TickOutcome::Failed(e.to_string())
            }
        }
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
            }
            Loop::ApprovalExpiry => {
                self.engine
                    .call::<ops::ExpireApprovals>(&system, Default::default())
                    .await?;
            }
            Loop::Renewal => {
                let horizon = now + self.renew_before_days * 86400;
                let due = self
                    .engine
                    .store()
                    .certificates_expiring_before(horizon, 1000)
                    .await?;
                for (id, _) in due {
                    let store = self.engine.store();
                    if store.has_open_renewal(&id).await?
                        || store
                            .has_pending_approval("renew_certificate", &id, now)
                            .await?
                    {
                        continue;
                    }
                    // Through the engine: a profile that requires approval
                    // gates scheduled renewals like manual ones.
                    let input = ops::RenewCertificateInput {
                        id: id.clone(),
                        csr_pem: None,
                    };
                    match self
                        .engine
                        .call::<ops::RenewCertificate>(&system, input)
                        .await
                    {
                        Ok(Outcome::Completed { .. }) | Ok(Outcome::ApprovalRequired(_)) => {}
                        Err(e) => {
                            tracing::warn!(certificate = %id, error = %e, "renewal could not be queued")
                        }
                    }
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
    ) {
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
            for h in running {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("scheduler runs still in flight at shutdown; stopping anyway");
        }
        for l in Loop::ALL {
            let _ = self
                .engine
                .store()
                .release_lease(l.name(), &self.owner)
                .await;
        }
    }
}
