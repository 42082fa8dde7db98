//! Issuers: the CAs certctl obtains certificates from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// The kind of CA behind an issuer. The local kinds sign inside certctl; the
/// others are connectors to an external CA (`engine/src/issuers/`), which
/// issue through jobs so no CA is called inside a database transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// A new root and issuing CA of certctl's own.
    Local,
    /// certctl issuing under a CA certificate and key signed by an external root.
    LocalSubCa,
    Acme,
    StepCa,
    Vault,
    Script,
    /// A CA certctl does not manage, recorded for imported certificates;
    /// it issues and revokes nothing.
    External,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::LocalSubCa => "local_sub_ca",
            Self::Acme => "acme",
            Self::StepCa => "step_ca",
            Self::Vault => "vault",
            Self::Script => "script",
            Self::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local" => Self::Local,
            "local_sub_ca" => Self::LocalSubCa,
            "acme" => Self::Acme,
            "step_ca" => Self::StepCa,
            "vault" => Self::Vault,
            "script" => Self::Script,
            "external" => Self::External,
            _ => return None,
        })
    }

    /// Whether certctl holds the CA key for this kind.
    pub fn is_local(self) -> bool {
        matches!(self, Self::Local | Self::LocalSubCa)
    }
}

/// An issuer as shown to users. CA keys never appear here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Issuer {
    /// `iss-...`
    pub id: String,
    pub name: String,
    pub kind: IssuerKind,
    /// Connector configuration (no secrets).
    pub config: serde_json::Value,
    /// Names of the connector secrets stored sealed for this issuer (tokens,
    /// keys, EAB HMAC); their values are never returned.
    #[serde(default)]
    pub secret_fields: Vec<String>,
    pub enabled: bool,
    /// For local kinds: the issuing CA certificate, PEM.
    pub ca_cert_pem: Option<String>,
    /// For local kinds: the chain from the issuing CA's parent up to the root, PEM.
    pub ca_chain_pem: Option<String>,
    /// For local kinds: subject and expiry of the issuing CA.
    pub ca_subject: Option<String>,
    pub ca_not_after: Option<UnixTime>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
