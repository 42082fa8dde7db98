//! Managed certificates and their issued versions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::domain::KeyAlgorithm;

/// The stored lifecycle state of a managed certificate. "Expiring" and
/// "expired" are not stored: they follow from `not_after` and the clock, so
/// they are computed when read (see [`EffectiveStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    /// Created, not yet issued.
    Pending,
    /// Has a current, unrevoked version.
    Active,
    /// The current version was revoked.
    Revoked,
    /// Issuance failed and no version exists.
    Failed,
    /// Retired by an operator; kept for history, excluded from renewal.
    Archived,
    /// A short-lived certificate past `not_after`, moved here by the
    /// scheduler instead of being revoked.
    Expired,
}

impl LifecycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
            Self::Archived => "archived",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "expired" => Self::Expired,
            "pending" => Self::Pending,
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            "failed" => Self::Failed,
            "archived" => Self::Archived,
            _ => return None,
        })
    }
}

/// The status shown to users and accepted by the `status` filter: the stored
/// lifecycle status refined by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectiveStatus {
    Pending,
    /// Active and not within the expiry warning window.
    Valid,
    /// Active and expiring within the warning window (30 days by default).
    Expiring,
    /// Active but past `not_after`.
    Expired,
    Revoked,
    Failed,
    Archived,
}

impl EffectiveStatus {
    pub const ALL: [EffectiveStatus; 7] = [
        Self::Pending,
        Self::Valid,
        Self::Expiring,
        Self::Expired,
        Self::Revoked,
        Self::Failed,
        Self::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
            Self::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Refines a stored status by time.
    pub fn of(
        status: LifecycleStatus,
        not_after: Option<UnixTime>,
        now: UnixTime,
        window: i64,
    ) -> Self {
        match status {
            LifecycleStatus::Pending => Self::Pending,
            LifecycleStatus::Revoked => Self::Revoked,
            LifecycleStatus::Failed => Self::Failed,
            LifecycleStatus::Archived => Self::Archived,
            LifecycleStatus::Expired => Self::Expired,
            LifecycleStatus::Active => match not_after {
                Some(t) if t <= now => Self::Expired,
                Some(t) if t <= now + window => Self::Expiring,
                _ => Self::Valid,
            },
        }
    }
}

/// RFC 5280 section 5.3.1 CRL reason codes (value 7 is unused; removeFromCRL
/// only applies to delta CRLs and is not a reason an operator gives).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    #[serde(rename = "cACompromise")]
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
    #[serde(rename = "aACompromise")]
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 9] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
        Self::AaCompromise,
    ];

    /// The RFC 5280 name, as used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A certificate certctl manages: its names, ownership and policy, and a
/// summary of its current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManagedCertificate {
    /// `mc-...`
    pub id: String,
    /// A human name (defaults to the common name).
    pub name: String,
    pub common_name: String,
    /// Subject alternative names: DNS names, IP addresses or e-mail addresses.
    pub sans: Vec<String>,
    /// Effective status: pending, valid, expiring, expired, revoked, failed or archived.
    pub status: EffectiveStatus,
    /// Environment label such as `production` or `staging`.
    pub environment: String,
    pub issuer_id: String,
    pub profile_id: String,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub renewal_policy_id: Option<String>,
    /// Free-form labels.
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub current_version_id: Option<String>,
    /// Serial of the current version, lower-case hex.
    pub serial: Option<String>,
    /// SHA-256 fingerprint of the current version, lower-case hex.
    pub fingerprint: Option<String>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub not_before: Option<UnixTime>,
    pub not_after: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub revocation_reason: Option<RevocationReason>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// One issued certificate (a version of a managed certificate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateVersion {
    /// `cv-...`
    pub id: String,
    pub certificate_id: String,
    pub issuer_id: String,
    pub serial: String,
    pub fingerprint: String,
    pub key_algorithm: KeyAlgorithm,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The issuer chain (intermediates up to the root), PEM.
    pub chain_pem: String,
    /// Whether the control plane holds the private key (server-side key generation only).
    pub has_private_key: bool,
    pub revoked_at: Option<UnixTime>,
    pub revocation_reason: Option<RevocationReason>,
    pub created_at: UnixTime,
}
