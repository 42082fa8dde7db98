//! The script CA ("OpenSSL / custom CA"): certctl writes the CSR to a file,
//! runs an executable, and reads the certificate it wrote.
//!
//! The executable is started directly, never through a shell, with a clean
//! environment: the certificate's names reach it only as environment values
//! and file contents, so no name can inject a command. Its stderr becomes the
//! job's failure reason; it is killed when it runs past its timeout.
//!
//! The contract (see docs/issuers.md): `CERTCTL_CSR_FILE` (PEM, to read),
//! `CERTCTL_CERT_FILE` (to write: the leaf, optionally followed by its
//! chain), `CERTCTL_CHAIN_FILE` (optional, to write), `CERTCTL_COMMON_NAME`,
//! `CERTCTL_SANS` (comma-separated), `CERTCTL_TTL_SECONDS`,
//! `CERTCTL_TTL_DAYS`, `CERTCTL_CERTIFICATE_ID`, plus each secret in `env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// Absolute path of the executable.
    pub command: String,
    /// Arguments passed as they are (no shell expansion).
    #[serde(default)]
    pub args: Vec<String>,
    /// Killed after this many seconds (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Where the per-job working folders are made (default `/tmp`).
    #[serde(default)]
    pub work_dir: Option<String>,
    /// `PATH` for the script (default `/usr/local/bin:/usr/bin:/bin`).
    #[serde(default)]
    pub path: Option<String>,
}

fn default_timeout() -> u64 {
    60
}

impl ScriptConfig {
    pub fn check(&self) -> Result<()> {
        if !Path::new(&self.command).is_absolute() {
            return Err(Error::invalid(
                "script issuer: command must be an absolute path",
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 3600 {
            return Err(Error::invalid(
                "script issuer: timeout_seconds must be between 1 and 3600",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSecrets {
    /// Extra environment for the script (a CA key passphrase, a token).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

pub struct ScriptConnector {
    config: ScriptConfig,
    secrets: ScriptSecrets,
}

/// Keeps the end of a long stderr, where the error usually is.
fn tail(text: &str, max: usize) -> String {
    let t = text.trim();
    if t.len() <= max {
        return t.to_owned();
    }
    let mut start = t.len() - max;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &t[start..])
}

struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ScriptConnector {
    pub fn new(config: ScriptConfig, secrets: ScriptSecrets) -> Result<Self> {
        config.check()?;
        Ok(Self { config, secrets })
    }

    fn work_dir(&self, job_id: &str) -> Result<WorkDir, IssuerError> {
        let mut suffix = [0u8; 8];
        aws_lc_rs::rand::fill(&mut suffix)
            .map_err(|_| IssuerError::transient("random number generator failed"))?;
        let base = self.config.work_dir.as_deref().unwrap_or("/tmp");
        let dir = Path::new(base).join(format!(
            "certctl-script-{}-{}",
            job_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
            hex::encode(suffix)
        ));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).map_err(|e| {
            IssuerError::transient(format!("cannot create the script's working folder: {e}"))
        })?;
        Ok(WorkDir(dir))
    }
}

#[async_trait::async_trait]
impl Connector for ScriptConnector {
    async fn issue(
        &self,
        req: &IssueRequest,
        _resume: Option<serde_json::Value>,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        let dir = self.work_dir(&req.job_id)?;
        let csr_file = dir.0.join("request.csr");
        let cert_file = dir.0.join("certificate.pem");
        let chain_file = dir.0.join("chain.pem");
        tokio::fs::write(&csr_file, &req.csr_pem)
            .await
            .map_err(|e| IssuerError::transient(format!("cannot write the CSR file: {e}")))?;
        let mut sans: Vec<String> = req.names.dns.clone();
        sans.extend(req.names.ips.iter().map(|i| i.to_string()));
        let mut cmd = tokio::process::Command::new(&self.config.command);
        cmd.args(&self.config.args)
            .env_clear()
            .env(
                "PATH",
                self.config
                    .path
                    .as_deref()
                    .unwrap_or("/usr/local/bin:/usr/bin:/bin"),
            )
            .envs(&self.secrets.env)
            .env("CERTCTL_CSR_FILE", &csr_file)
            .env("CERTCTL_CERT_FILE", &cert_file)
            .env("CERTCTL_CHAIN_FILE", &chain_file)
            .env("CERTCTL_COMMON_NAME", &req.common_name)
            .env("CERTCTL_SANS", sans.join(","))
            .env("CERTCTL_TTL_SECONDS", req.ttl_seconds.to_string())
            .env(
                "CERTCTL_TTL_DAYS",
                ((req.ttl_seconds + 86399) / 86400).max(1).to_string(),
            )
            .env("CERTCTL_CERTIFICATE_ID", &req.certificate_id)
            .current_dir(&dir.0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            IssuerError::rejected(format!(
                "cannot start the issuer script {}: {e}",
                self.config.command
            ))
        })?;
        let timeout = Duration::from_secs(self.config.timeout_seconds);
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(IssuerError::transient(format!(
                    "the issuer script could not be waited for: {e}"
                )));
            }
            Err(_) => {
                return Err(IssuerError::transient(format!(
                    "the issuer script did not finish within {} s and was killed",
                    self.config.timeout_seconds
                )));
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let code = out
                .status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "a signal".into());
            return Err(IssuerError::rejected(format!(
                "the issuer script failed with {code}: {}",
                tail(&stderr, 2000)
            )));
        }
        let bundle = tokio::fs::read_to_string(&cert_file).await.map_err(|e| {
            IssuerError::rejected(format!(
                "the issuer script exited 0 but wrote no certificate to CERTCTL_CERT_FILE ({e}); stderr: {}",
                tail(&stderr, 500)
            ))
        })?;
        let mut issued = super::split_leaf(&bundle)?;
        if let Ok(chain) = tokio::fs::read_to_string(&chain_file).await
            && !chain.trim().is_empty()
        {
            issued.chain_pem.push_str(&format!("{}\n", chain.trim()));
        }
        Ok(issued)
    }

    async fn test(&self) -> Result<String, IssuerError> {
        let meta = tokio::fs::metadata(&self.config.command)
            .await
            .map_err(|e| IssuerError::rejected(format!("script {}: {e}", self.config.command)))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                return Err(IssuerError::rejected(format!(
                    "script {} is not an executable file",
                    self.config.command
                )));
            }
        }
        Ok(format!(
            "script {} exists and is executable",
            self.config.command
        ))
    }
}
