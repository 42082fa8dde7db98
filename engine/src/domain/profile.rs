//! Certificate profiles: the rules a certificate request must satisfy
//! (key types, lifetime, extended key usages, names) and how it is approved.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// A key algorithm a profile may allow. RSA sizes are fixed to the three
/// sizes CAs and servers commonly support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::Ed25519,
    ];

    /// The name used in JSON, the CLI and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extended key usages a profile may put into certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtendedKeyUsage {
    ServerAuth,
    ClientAuth,
    CodeSigning,
    EmailProtection,
    TimeStamping,
    OcspSigning,
}

/// Where the private key of a certificate is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeygenMode {
    /// On the server that uses the certificate (the agent); the control plane only sees a CSR.
    #[default]
    Agent,
    /// On the control plane. Only for demos and PKCS#12 export; logged as a warning.
    Server,
}

/// Rules for the names (subject alternative names) in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SanRules {
    /// DNS names must equal or end in one of these suffixes (e.g. `example.com`
    /// allows `example.com` and `a.example.com`). Empty allows any name.
    pub allowed_dns_suffixes: Vec<String>,
    /// Whether `*.` wildcard names are allowed.
    pub allow_wildcards: bool,
    /// Whether IP address SANs are allowed.
    pub allow_ip_addresses: bool,
    /// Whether e-mail (rfc822Name) SANs are allowed.
    pub allow_emails: bool,
    /// Maximum number of SANs in one certificate.
    pub max_names: u32,
}

impl Default for SanRules {
    fn default() -> Self {
        Self {
            allowed_dns_suffixes: Vec::new(),
            allow_wildcards: true,
            allow_ip_addresses: true,
            allow_emails: false,
            max_names: 100,
        }
    }
}

/// A certificate profile (certctl's "certificate profile").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
    /// `prof-...`
    pub id: String,
    pub name: String,
    pub description: String,
    /// Key algorithms a CSR may use. Never empty.
    pub allowed_key_types: Vec<KeyAlgorithm>,
    /// Key algorithm for server-side key generation and the agent's default.
    pub default_key_type: KeyAlgorithm,
    /// Longest validity a certificate of this profile may have, in seconds.
    pub max_ttl_seconds: i64,
    /// Validity used when a request does not ask for one, in seconds.
    pub default_ttl_seconds: i64,
    /// Extended key usages put into issued certificates.
    pub ekus: Vec<ExtendedKeyUsage>,
    pub san_rules: SanRules,
    /// Every issuance and renewal under this profile goes through the approval gate.
    pub requires_approval: bool,
    pub keygen_mode: KeygenMode,
    /// Short-lived certificates are never revoked; they simply expire.
    pub short_lived: bool,
    /// Whether a client authenticated by its TLS certificate (EST) may enroll
    /// names its certificate does not hold. Off by default: a client
    /// certificate proves who a device is, so it renews and re-keys only that.
    #[serde(default)]
    pub allow_client_certificate_new_names: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
