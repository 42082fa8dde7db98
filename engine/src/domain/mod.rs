//! Domain types, named after the product and the RFCs.

pub mod approval;
pub mod audit;
pub mod audit_checkpoint;
pub mod bulk;
pub mod certificate;
pub mod fleet;
pub mod issuer;
pub mod job;
pub mod notification;
pub mod org;
pub mod policy;
pub mod principal;
pub mod profile;
pub mod target_config;

pub use approval::{Approval, ApprovalStatus};
pub use audit::{AuditEvent, ChainVerification, Outcome};
pub use audit_checkpoint::{AuditCheckpoint, AuditCheckpointExport, AuditFinding, FindingKind};
pub use bulk::{BulkItem, BulkItemOutcome, BulkKind, BulkOperation};
pub use certificate::{
    CertificateVersion, EffectiveStatus, LifecycleStatus, ManagedCertificate, RevocationReason,
};
pub use fleet::{Agent, AgentCriteria, AgentFacts, AgentGroup, AgentStatus, Target, TargetKind};
pub use issuer::{Issuer, IssuerKind};
pub use job::{Job, JobKind, JobStatus};
pub use notification::{
    ChannelKind, ChannelSettings, EventKind, Notification, NotificationChannel, NotificationRule,
    NotificationStatus, SmtpSecurity,
};
pub use org::{Owner, Team};
pub use policy::{PolicyKind, PolicyMode, PolicyRule, PolicyViolation, RenewalPolicy, Severity};
pub use principal::{ApiPrincipal, Permission, Principal, Role};
pub use profile::{ExtendedKeyUsage, KeyAlgorithm, KeygenMode, Profile, SanRules};
pub use target_config::TargetConfig;
