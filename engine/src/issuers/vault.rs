//! Vault (and OpenBao) PKI: `POST /v1/{mount}/sign/{role}` with the agent's
//! CSR, token authentication, and renewal of a renewable token before use so
//! a periodic token does not lapse between issuances.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{reqwest_client, roots, transport};
use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError};
use crate::domain::RevocationReason;
use crate::error::{Error, Result};
use crate::net_guard::OutboundPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Base URL, e.g. `https://vault.example.com:8200`.
    pub url: String,
    /// The PKI secrets engine's mount path (default `pki`).
    #[serde(default = "default_mount")]
    pub mount: String,
    /// The role to sign with.
    pub role: String,
    /// Vault Enterprise / OpenBao namespace, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Trusted root(s) for the Vault server's TLS certificate, PEM (default: system roots).
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// Renew the token when its remaining TTL is below this (seconds, default 3600).
    #[serde(default = "default_renew_below")]
    pub renew_below_seconds: i64,
}

fn default_mount() -> String {
    "pki".into()
}

fn default_renew_below() -> i64 {
    3600
}

fn path_segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|p| {
            !p.is_empty()
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl VaultConfig {
    pub fn check(&self) -> Result<()> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(Error::invalid("vault issuer: url must be http(s)://..."));
        }
        if !path_segment_ok(&self.mount) || !path_segment_ok(&self.role) || self.role.contains('/')
        {
            return Err(Error::invalid(
                "vault issuer: mount and role may hold letters, digits, '-', '_', '.' (and '/' in the mount)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSecrets {
    /// A Vault token allowed to use `{mount}/sign/{role}`.
    #[serde(default)]
    pub token: Option<String>,
}

pub struct VaultConnector {
    config: VaultConfig,
    token: String,
    http: reqwest::Client,
}

/// Vault's error document: `{"errors": ["..."]}`.
async fn vault_error(what: &str, rsp: reqwest::Response) -> IssuerError {
    let status = rsp.status();
    let body: serde_json::Value = rsp.json().await.unwrap_or_default();
    let errors: Vec<String> = body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let text = if errors.is_empty() {
        format!("{what}: Vault answered HTTP {status}")
    } else {
        format!(
            "{what}: Vault answered HTTP {status}: {}",
            errors.join("; ")
        )
    };
    if status.is_server_error() || status.as_u16() == 429 {
        IssuerError::transient(text)
    } else {
        IssuerError::rejected(text)
    }
}

impl VaultConnector {
    pub fn new(
        config: VaultConfig,
        secrets: VaultSecrets,
        outbound: OutboundPolicy,
    ) -> Result<Self> {
        config.check()?;
        super::http::check_url("vault issuer: url", &config.url, outbound)?;
        let token = secrets
            .token
            .ok_or_else(|| Error::invalid("vault issuer: secrets.token is required"))?;
        let http = reqwest_client(
            roots(config.ca_cert_pem.as_deref())?,
            Duration::from_secs(60),
            outbound,
        )?;
        Ok(Self {
            config,
            token,
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/v1/{path}", self.config.url.trim_end_matches('/'));
        let mut rb = self
            .http
            .request(method, url)
            .header("X-Vault-Token", &self.token);
        if let Some(ns) = &self.config.namespace {
            rb = rb.header("X-Vault-Namespace", ns);
        }
        rb
    }

    /// Looks the token up and renews it when it is renewable and its TTL
    /// runs below the threshold. Returns (ttl, renewed).
    async fn check_token(&self) -> Result<(i64, bool), IssuerError> {
        let rsp = self
            .request(reqwest::Method::GET, "auth/token/lookup-self")
            .send()
            .await
            .map_err(|e| transport("Vault token lookup", e))?;
        if !rsp.status().is_success() {
            return Err(vault_error("Vault token lookup", rsp).await);
        }
        let body: serde_json::Value = rsp
            .json()
            .await
            .map_err(|e| transport("Vault token lookup", e))?;
        let ttl = body["data"]["ttl"].as_i64().unwrap_or(0);
        let renewable = body["data"]["renewable"].as_bool().unwrap_or(false);
        if renewable && ttl > 0 && ttl < self.config.renew_below_seconds {
            let rsp = self
                .request(reqwest::Method::POST, "auth/token/renew-self")
                .json(&serde_json::json!({}))
                .send()
                .await
                .map_err(|e| transport("Vault token renewal", e))?;
            if !rsp.status().is_success() {
                return Err(vault_error("Vault token renewal", rsp).await);
            }
            let body: serde_json::Value = rsp
                .json()
                .await
                .map_err(|e| transport("Vault token renewal", e))?;
            let ttl = body["auth"]["lease_duration"].as_i64().unwrap_or(ttl);
            tracing::info!(ttl, "renewed the Vault token");
            return Ok((ttl, true));
        }
        Ok((ttl, false))
    }
}

#[async_trait::async_trait]
impl Connector for VaultConnector {
    async fn issue(
        &self,
        req: &IssueRequest,
        _resume: Option<serde_json::Value>,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        self.check_token().await?;
        let alt: Vec<&str> = req
            .names
            .dns
            .iter()
            .filter(|d| **d != req.common_name)
            .map(String::as_str)
            .collect();
        let ips: Vec<String> = req.names.ips.iter().map(|i| i.to_string()).collect();
        let body = serde_json::json!({
            "csr": req.csr_pem,
            "common_name": req.common_name,
            "alt_names": alt.join(","),
            "ip_sans": ips.join(","),
            "ttl": format!("{}s", req.ttl_seconds),
            "format": "pem",
        });
        let path = format!("{}/sign/{}", self.config.mount, self.config.role);
        let rsp = self
            .request(reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport("Vault sign", e))?;
        if !rsp.status().is_success() {
            return Err(vault_error("Vault sign", rsp).await);
        }
        let body: serde_json::Value = rsp.json().await.map_err(|e| transport("Vault sign", e))?;
        let data = &body["data"];
        let cert = data["certificate"]
            .as_str()
            .ok_or_else(|| IssuerError::rejected("Vault sign: no certificate in the answer"))?;
        let mut chain: Vec<String> = data["ca_chain"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(|s| s.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if chain.is_empty()
            && let Some(ca) = data["issuing_ca"].as_str()
        {
            chain.push(ca.trim().to_owned());
        }
        let mut issued = super::split_leaf(cert)?;
        for c in chain {
            issued.chain_pem.push_str(&c);
            issued.chain_pem.push('\n');
        }
        Ok(issued)
    }

    async fn revoke(
        &self,
        cert_der: &[u8],
        _reason: RevocationReason,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<(), IssuerError> {
        let info = crate::pki::cert::parse_certificate_der(cert_der)
            .map_err(|e| IssuerError::rejected(e.to_string()))?;
        // Vault names serials as colon-separated hex pairs.
        let serial: Vec<String> = info
            .serial_hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
            .collect();
        let path = format!("{}/revoke", self.config.mount);
        let rsp = self
            .request(reqwest::Method::POST, &path)
            .json(&serde_json::json!({ "serial_number": serial.join(":") }))
            .send()
            .await
            .map_err(|e| transport("Vault revoke", e))?;
        if !rsp.status().is_success() {
            return Err(vault_error("Vault revoke", rsp).await);
        }
        Ok(())
    }

    async fn test(&self) -> Result<String, IssuerError> {
        let (ttl, renewed) = self.check_token().await?;
        let path = format!("{}/roles/{}", self.config.mount, self.config.role);
        let rsp = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| transport("Vault role lookup", e))?;
        if !rsp.status().is_success() {
            return Err(vault_error("Vault role lookup", rsp).await);
        }
        Ok(format!(
            "Vault at {} answered; the token is valid (ttl {}{}) and can read role {}/{}",
            self.config.url,
            if ttl == 0 {
                "unlimited".to_owned()
            } else {
                format!("{ttl} s")
            },
            if renewed { ", renewed now" } else { "" },
            self.config.mount,
            self.config.role
        ))
    }
}
