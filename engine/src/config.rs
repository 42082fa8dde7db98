//! The engine's typed configuration. The binary builds it from defaults,
//! file, environment and flags; the engine never reads the environment.

use crate::domain::KeygenMode;
use crate::ops::Risk;

/// Which operations stop at the approval gate, and who may let them through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalConfig {
    /// Gate every `write` operation (off by default).
    pub gate_write: bool,
    /// Gate every `destructive` operation: revoke, delete, deploy (on by default).
    pub gate_destructive: bool,
    /// Whether the requester may confirm its own gated `write` call in chat.
    pub in_chat_write: bool,
    /// Whether the requester may confirm its own gated `destructive` call in
    /// chat (an MCP client asking the human). Off makes it four-eyes.
    pub in_chat_destructive: bool,
    /// How long an approval waits for a decision, in seconds.
    pub ttl_seconds: i64,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            gate_write: false,
            gate_destructive: true,
            in_chat_write: true,
            in_chat_destructive: true,
            ttl_seconds: 24 * 3600,
        }
    }
}

impl ApprovalConfig {
    pub fn gates(&self, risk: Risk) -> bool {
        match risk {
            Risk::Read => false,
            Risk::Write => self.gate_write,
            Risk::Destructive => self.gate_destructive,
        }
    }

    /// Four eyes: no requester may confirm its own gated call of any risk
    /// class, so every gated call needs a second person.
    pub fn four_eyes(&self) -> bool {
        !self.in_chat_write && !self.in_chat_destructive
    }

    pub fn allows_in_chat(&self, risk: Risk) -> bool {
        match risk {
            Risk::Read => true,
            Risk::Write => self.in_chat_write,
            Risk::Destructive => self.in_chat_destructive,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub approvals: ApprovalConfig,
    /// A certificate counts as expiring this many seconds before `not_after`.
    pub expiring_window_seconds: i64,
    /// `server` allows server-side key generation for profiles that ask for it.
    pub keygen_mode: KeygenMode,
    /// Organization name in the local CA's subject.
    pub organization: String,
    /// Base URL under which CRLs and OCSP are served, embedded in issued certificates.
    pub public_url: Option<String>,
    /// Loop intervals, renewal timing and short-lived expiry.
    pub scheduler: SchedulerConfig,
    /// Notification delivery: attempts, backoff, expiry-warning thresholds.
    pub notifications: NotifyConfig,
    /// Network scanner limits.
    pub network_scan: NetworkScanConfig,
    /// Which addresses outbound HTTP (webhooks, chat and incident
    /// notifiers, external CAs) may reach; see `net_guard`.
    pub outbound: crate::net_guard::OutboundPolicy,
}

/// Limits of the network scanner: how much one target may cover and how
/// hard a scan may knock.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkScanConfig {
    /// Most endpoints (addresses times ports) one scan target may cover;
    /// larger targets are refused with the reason. Default 4096 (a /20 on one port).
    pub max_endpoints: u64,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Connect plus handshake time allowed per endpoint, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for NetworkScanConfig {
    fn default() -> Self {
        Self {
            max_endpoints: 4096,
            concurrency: 64,
            timeout_ms: 3000,
        }
    }
}

/// Scheduler settings (defaults are the original certctl's).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub renewal_interval_seconds: i64,
    pub job_lease_interval_seconds: i64,
    pub approval_expiry_interval_seconds: i64,
    pub notification_interval_seconds: i64,
    pub agent_health_interval_seconds: i64,
    pub short_lived_interval_seconds: i64,
    /// Issuer jobs (external CAs); every process runs this loop.
    pub jobs_interval_seconds: i64,
    /// CRL and OCSP refresh.
    pub revocation_interval_seconds: i64,
    /// An online agent whose last heartbeat is older than this becomes offline.
    pub agent_offline_after_seconds: i64,
    /// Renew this many days before expiry when neither the certificate nor
    /// its profile names a renewal policy.
    pub renew_before_days: i64,
    /// Jitter (percent of the renewal window, taken earlier, never later)
    /// without a renewal policy.
    pub renew_jitter_percent: i64,
    /// A certificate counts as short-lived (expires without revocation)
    /// when its profile says `short_lived`, or its lifetime is at most this.
    pub short_lived_max_ttl_seconds: i64,
    /// How long shutdown waits for loop runs in flight.
    pub shutdown_timeout_seconds: i64,
    /// How long a claimed issuer job is held before another process may
    /// reclaim it (a crashed worker's jobs wait this long).
    pub job_lease_seconds: i64,
    /// A singleton loop's lease lasts two intervals plus this margin, so a
    /// healthy leader keeps it; a dead leader's loops move after it runs out.
    pub loop_lease_margin_seconds: i64,
    /// Enabled network scan targets are scanned this often (6 h).
    pub network_scan_interval_seconds: i64,
    /// Certificates one bulk operation changes per transaction (500): its
    /// record shows progress after each chunk, a crash loses at most one.
    pub bulk_chunk_size: usize,
    /// A signed checkpoint of the audit chain's head is written after this
    /// many new events (1000; 0: by time only)...
    pub audit_checkpoint_events: i64,
    /// ...or this long after the last one when any event came since (300 s).
    /// The loop looks every minute, or every this many seconds if fewer.
    pub audit_checkpoint_interval_seconds: i64,
    /// Whether a bulk call runs its chunks before it answers (the default).
    /// Off, it answers at once with its record `running`, and the jobs
    /// loop runs the chunks (tests drive them one by one this way).
    pub bulk_runs_in_call: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            renewal_interval_seconds: 3600,
            job_lease_interval_seconds: 30,
            approval_expiry_interval_seconds: 60,
            notification_interval_seconds: 60,
            agent_health_interval_seconds: 120,
            short_lived_interval_seconds: 30,
            jobs_interval_seconds: 30,
            revocation_interval_seconds: 60,
            agent_offline_after_seconds: 300,
            renew_before_days: 30,
            renew_jitter_percent: 10,
            short_lived_max_ttl_seconds: 3600,
            shutdown_timeout_seconds: 30,
            job_lease_seconds: crate::issuers::runner::LEASE_SECONDS,
            loop_lease_margin_seconds: 30,
            network_scan_interval_seconds: 6 * 3600,
            bulk_chunk_size: 500,
            audit_checkpoint_events: 1000,
            audit_checkpoint_interval_seconds: 300,
            bulk_runs_in_call: true,
        }
    }
}

/// Notification delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Attempts before a delivery goes to the dead letter.
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt up to `backoff_max_seconds`.
    pub backoff_base_seconds: i64,
    pub backoff_max_seconds: i64,
    /// Days before expiry at which `expiring_soon` is sent, once each per version.
    pub expiry_thresholds_days: Vec<i64>,
    /// How long one delivery attempt may take.
    pub send_timeout_seconds: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base_seconds: 60,
            backoff_max_seconds: 3600,
            expiry_thresholds_days: vec![30, 14, 7, 1],
            send_timeout_seconds: 15,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            approvals: ApprovalConfig::default(),
            expiring_window_seconds: 30 * 86400,
            keygen_mode: KeygenMode::Agent,
            organization: "certctl".into(),
            public_url: None,
            scheduler: SchedulerConfig::default(),
            notifications: NotifyConfig::default(),
            network_scan: NetworkScanConfig::default(),
            outbound: crate::net_guard::OutboundPolicy::default(),
        }
    }
}
