//! Connectors to external CAs: ACME (`acme.rs`, challenge solvers in `acme_dns.rs`,
//! RFC 2136 in `rfc2136.rs`), step-ca (`stepca.rs`), Vault/OpenBao PKI (`vault.rs`) and a script CA
//! (`script.rs`), all behind one [`Connector`] trait.
//!
//! A connector is never called inside a database transaction. Issuing from an
//! external issuer records a job; the job loop ([`runner`]) claims it, runs the
//! connector, and records the version in one short transaction
//! ([`runner::record_version`]). Connector settings are split in two: `config`
//! (plain, shown by `get_object`) and `secrets` (sealed with the master key,
//! never shown). Each kind parses both into typed structs, so a secret put in
//! `config` by mistake is refused instead of stored in clear.

pub mod acme;
pub mod acme_dns;
mod agent_http01;
pub mod ari;
mod http;
pub mod rfc2136;
pub mod runner;
pub mod script;
pub mod stepca;
pub mod vault;

use std::fmt;

use serde::de::DeserializeOwned;

use acme_dns::Http01Solver;

use crate::domain::{IssuerKind, RevocationReason};
use crate::error::{Error, Result};
use crate::net_guard::OutboundPolicy;
use crate::pki::{MasterKey, SubjectNames};
use crate::store::{IssuerRecord, SealedSecrets};

/// What a connector is asked to sign.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The job this issuance runs under (ACME orders are saved against it).
    pub job_id: String,
    pub certificate_id: String,
    /// The agent's CSR, PEM; the private key stays where it was made.
    pub csr_pem: String,
    pub csr_der: Vec<u8>,
    pub common_name: String,
    /// The certificate's names (the CSR's names are a subset of them).
    pub names: SubjectNames,
    pub ttl_seconds: i64,
    /// The engine's time when the attempt started (tokens are stamped with it).
    pub now: i64,
    /// On a renewal, the current certificate (DER) the new one replaces.
    pub replaces_der: Option<Vec<u8>>,
}

/// A certificate as a CA returned it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf, PEM.
    pub cert_pem: String,
    /// The intermediates (and root, when the CA sends it), PEM; may be empty.
    pub chain_pem: String,
}

/// Why a connector failed: the CA's own explanation (its problem document,
/// its error list, the script's stderr), never a stack trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerError {
    pub message: String,
    /// Worth trying again later (network trouble, rate limits, a CA that is
    /// down); false when the CA refused the request itself.
    pub retryable: bool,
}

impl IssuerError {
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

impl fmt::Display for IssuerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<IssuerError> for Error {
    fn from(e: IssuerError) -> Self {
        Error::IssuerRejected(e.message)
    }
}

/// Where a connector saves progress while it works, so a restarted process
/// resumes (an ACME order) instead of starting over.
#[async_trait::async_trait]
pub trait Checkpoint: Send + Sync {
    /// Saves the connector's state for this job (replaces the previous one).
    async fn save_state(&self, state: serde_json::Value) -> Result<(), IssuerError>;
    /// Stores a newly registered account (ACME account credentials, JSON);
    /// returns the account to use, which is another worker's when it
    /// registered first.
    async fn save_account(
        &self,
        account: serde_json::Value,
    ) -> Result<serde_json::Value, IssuerError>;
    /// The solver that hands HTTP-01 challenges to the agent of the job's
    /// certificate (ACME `http01_solver = agent`), waiting up to `timeout`
    /// for the agent to report each one in place; `None` outside a job.
    fn agent_http01(&self, timeout: std::time::Duration) -> Option<Box<dyn Http01Solver + '_>> {
        let _ = timeout;
        None
    }
}

/// A checkpoint that keeps nothing (for `test_issuer`, which never orders).
pub struct NoCheckpoint;

#[async_trait::async_trait]
impl Checkpoint for NoCheckpoint {
    async fn save_state(&self, _state: serde_json::Value) -> Result<(), IssuerError> {
        Ok(())
    }

    async fn save_account(
        &self,
        account: serde_json::Value,
    ) -> Result<serde_json::Value, IssuerError> {
        Ok(account)
    }
}

/// One external CA.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Gets `req` signed. `resume` is the state this job saved through
    /// `checkpoint` on an earlier attempt, if any.
    async fn issue(
        &self,
        req: &IssueRequest,
        resume: Option<serde_json::Value>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError>;

    /// Revokes a certificate this CA issued.
    async fn revoke(
        &self,
        cert_der: &[u8],
        reason: RevocationReason,
        checkpoint: &dyn Checkpoint,
    ) -> Result<(), IssuerError> {
        let _ = (cert_der, reason, checkpoint);
        Err(IssuerError::rejected(
            "this issuer kind does not support revocation at the CA",
        ))
    }

    /// Reaches the CA and checks the credentials; returns what was checked.
    async fn test(&self) -> Result<String, IssuerError>;

    /// The CA's suggested renewal window for a certificate it issued (ACME
    /// Renewal Information, RFC 9773). `None` when the CA offers none.
    async fn renewal_window(
        &self,
        cert_der: &[u8],
        checkpoint: &dyn Checkpoint,
    ) -> Result<Option<RenewalWindow>, IssuerError> {
        let _ = (cert_der, checkpoint);
        Ok(None)
    }
}

/// A CA's suggested renewal window (Unix seconds) and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: i64,
    pub end: i64,
    /// The CA's Retry-After, in seconds from now.
    pub retry_after: u64,
    /// The page explaining the window, when the CA gave one (an incident).
    pub explanation_url: Option<String>,
}

/// Checks a kind's plain config and secrets (typed parse) before they are
/// stored. Required secrets are checked when the connector is built, so a
/// config-only update need not repeat them.
pub fn validate(
    kind: IssuerKind,
    config: &serde_json::Map<String, serde_json::Value>,
    secrets: &serde_json::Map<String, serde_json::Value>,
    outbound: OutboundPolicy,
) -> Result<()> {
    match kind {
        IssuerKind::Local | IssuerKind::LocalSubCa => {
            if !secrets.is_empty() {
                return Err(Error::invalid("local issuers take no connector secrets"));
            }
            Ok(())
        }
        IssuerKind::External => Err(Error::invalid(
            "external issuers stand for outside CAs and are created by import_certificates, not by hand",
        )),
        IssuerKind::Acme => {
            let c = parse::<acme::AcmeConfig>(config, "config")?;
            c.check()?;
            c.check_urls(outbound)?;
            parse::<acme::AcmeSecrets>(secrets, "secrets").map(|_| ())
        }
        IssuerKind::StepCa => {
            let c = parse::<stepca::StepCaConfig>(config, "config")?;
            c.check()?;
            http::check_url("step-ca issuer: url", &c.url, outbound)?;
            parse::<stepca::StepCaSecrets>(secrets, "secrets").map(|_| ())
        }
        IssuerKind::Vault => {
            let c = parse::<vault::VaultConfig>(config, "config")?;
            c.check()?;
            http::check_url("vault issuer: url", &c.url, outbound)?;
            parse::<vault::VaultSecrets>(secrets, "secrets").map(|_| ())
        }
        IssuerKind::Script => {
            parse::<script::ScriptConfig>(config, "config")?.check()?;
            parse::<script::ScriptSecrets>(secrets, "secrets").map(|_| ())
        }
    }
}

/// Parses one half of the settings, naming the offending field on error
/// (serde's own message says which field is unknown or missing).
pub(crate) fn parse<T: DeserializeOwned>(
    map: &serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(map.clone()))
        .map_err(|e| Error::invalid(format!("issuer {what}: {e}")))
}

/// Seals connector secrets for storage.
pub(crate) fn seal_secrets(
    master: &MasterKey,
    issuer_id: &str,
    secrets: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<SealedSecrets>> {
    if secrets.is_empty() {
        return Ok(None);
    }
    let text = zeroize::Zeroizing::new(
        serde_json::to_string(secrets).map_err(|e| Error::internal(e.to_string()))?,
    );
    Ok(Some(SealedSecrets {
        fields: secrets.keys().cloned().collect(),
        sealed: master.seal(text.as_bytes(), &format!("{issuer_id}/secrets"))?,
    }))
}

fn open_json(master: &MasterKey, sealed: &str, context: &str) -> Result<serde_json::Value> {
    let bytes = master.open(sealed, context)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("sealed {context}: {e}")))
}

/// Seals a connector account (ACME account credentials).
pub(crate) fn seal_account(
    master: &MasterKey,
    issuer_id: &str,
    account: &serde_json::Value,
) -> Result<String> {
    let text = zeroize::Zeroizing::new(account.to_string());
    master.seal(text.as_bytes(), &format!("{issuer_id}/account"))
}

/// Builds the connector of an external issuer, with its secrets opened.
pub(crate) fn connector_for(
    master: &MasterKey,
    record: &IssuerRecord,
    outbound: OutboundPolicy,
) -> Result<Box<dyn Connector>> {
    let id = &record.issuer.id;
    let config = match &record.issuer.config {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let secrets = match &record.secrets {
        Some(s) => match open_json(master, &s.sealed, &format!("{id}/secrets"))? {
            serde_json::Value::Object(m) => m,
            _ => return Err(Error::internal("issuer secrets are not an object")),
        },
        None => serde_json::Map::new(),
    };
    let account = record
        .account
        .as_deref()
        .map(|a| open_json(master, a, &format!("{id}/account")))
        .transpose()?;
    Ok(match record.issuer.kind {
        IssuerKind::Local | IssuerKind::LocalSubCa => {
            return Err(Error::internal("local issuers have no connector"));
        }
        IssuerKind::External => {
            return Err(Error::conflict(format!(
                "issuer {id} stands for an outside CA certctl does not manage; it cannot issue or revoke"
            )));
        }
        IssuerKind::Acme => Box::new(acme::AcmeConnector::new(
            parse(&config, "config")?,
            parse(&secrets, "secrets")?,
            account,
            outbound,
        )?),
        IssuerKind::StepCa => Box::new(stepca::StepCaConnector::new(
            parse(&config, "config")?,
            parse(&secrets, "secrets")?,
            outbound,
        )?),
        IssuerKind::Vault => Box::new(vault::VaultConnector::new(
            parse(&config, "config")?,
            parse(&secrets, "secrets")?,
            outbound,
        )?),
        IssuerKind::Script => Box::new(script::ScriptConnector::new(
            parse(&config, "config")?,
            parse(&secrets, "secrets")?,
        )?),
    })
}

/// Splits a PEM bundle into the first certificate (the leaf) and the rest.
pub(crate) fn split_leaf(bundle: &str) -> Result<Issued, IssuerError> {
    const END: &str = "-----END CERTIFICATE-----";
    let Some(end) = bundle.find(END) else {
        return Err(IssuerError::rejected(
            "the CA's answer holds no PEM certificate",
        ));
    };
    let cut = end + END.len();
    Ok(Issued {
        cert_pem: format!("{}\n", bundle[..cut].trim()),
        chain_pem: {
            let rest = bundle[cut..].trim();
            if rest.is_empty() {
                String::new()
            } else {
                format!("{rest}\n")
            }
        },
    })
}
