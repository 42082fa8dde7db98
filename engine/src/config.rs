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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            approvals: ApprovalConfig::default(),
            expiring_window_seconds: 30 * 86400,
            keygen_mode: KeygenMode::Agent,
            organization: "certctl".into(),
            public_url: None,
        }
    }
}
