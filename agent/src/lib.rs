//! The certctl agent: runs on each server, next to the services whose
//! certificates it manages. It calls the control plane, which never calls
//! it: it heartbeats, polls its work, generates private keys locally (they
//! never leave this machine), sends CSRs, deploys the issued certificates to
//! the targets an admin configured, verifies what they serve, puts ACME
//! HTTP-01 tokens in place for the CA, and reports each step. It listens
//! only when told to (`http01_listen`, for HTTP-01 tokens, and nothing else). It must never send key material to the control plane, never write
//! outside its deploy roots, and never run a program its own execution
//! policy ([`ExecPolicy`]) does not allow: a job or a target only chooses
//! among what this host allows.

pub mod challenge;
pub mod connectors;
pub mod deploy;
pub mod discover;
pub mod paths;
pub mod policy;
pub mod state;
pub mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use certctl_api::client::{Client, ClientError};
use certctl_engine::domain::{JobKind, JobStatus, KeyAlgorithm};
use certctl_engine::ops::{AgentCsrOutput, AgentJob, AgentWork, deployable_config};
use certctl_engine::pki::{self, SubjectNames};
use certctl_engine::store::WorkItem;
use serde_json::json;

pub use paths::DeployRoots;
pub use policy::{AllowedProgram, ExecPolicy};
use state::{JobState, KeyDir};

/// Why a step failed, in a sentence for the job's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// The control plane could not be reached: the job is left as it is
    /// and tried again on the next poll, not failed.
    pub unreachable: bool,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unreachable: false,
        }
    }

    /// A call to the control plane failed: a transport error is retried
    /// (the server may be restarting), an answer is the job's failure.
    fn from_call(what: &str, e: ClientError) -> Self {
        Self {
            unreachable: matches!(e, ClientError::Transport { .. }),
            reason: format!("{what}: {e}"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Failure {}

/// How the agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    pub server: String,
    pub agent_id: String,
    pub api_key: String,
    pub key_dir: PathBuf,
    pub discovery_dirs: Vec<PathBuf>,
    pub deploy_roots: DeployRoots,
    /// The programs targets may run and where their configuration files
    /// may lie: this host's choice, never the control plane's.
    pub exec: ExecPolicy,
    pub poll_interval: Duration,
    /// How long to wait for a target to serve a new certificate.
    pub verify_timeout: Duration,
    /// How often `discovery_dirs` are walked (also once at start).
    pub discovery_interval: Duration,
    /// Labels reported with each heartbeat (shown as reported; agent groups
    /// match only labels an admin accepted); `None` leaves them as they are.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Where the agent answers ACME HTTP-01 challenges itself, for targets
    /// without an `acme_webroot` (bound on the first challenge).
    pub http01_listen: Option<String>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("agent_id", &self.agent_id)
            .field("api_key", &"<redacted>")
            .field("key_dir", &self.key_dir)
            .field("discovery_dirs", &self.discovery_dirs)
            .field("deploy_roots", &self.deploy_roots)
            .field("exec", &self.exec)
            .field("discovery_interval", &self.discovery_interval)
            .field("labels", &self.labels)
            .field("http01_listen", &self.http01_listen)
            .finish()
    }
}

/// A running agent.
pub struct Agent {
    config: AgentConfig,
    client: Client,
    keys: KeyDir,
    http01: Option<challenge::Listener>,
}

/// What one job's handling ended with, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    CsrSent {
        version_id: String,
    },
    Deployed {
        changed: bool,
    },
    /// An ACME HTTP-01 token was put in place or taken away.
    Challenge(String),
    Failed(String),
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Self, Failure> {
        let client = Client::new(&config.server, Some(config.api_key.clone()))
            .map_err(|e| Failure::new(e.to_string()))?;
        let keys = KeyDir::open(&config.key_dir)?;
        let http01 = config
            .http01_listen
            .as_deref()
            .map(challenge::Listener::new);
        Ok(Self {
            config,
            client,
            keys,
            http01,
        })
    }

    /// Polls until `shutdown` completes. Server errors are logged and
    /// retried on the next poll: a restarting control plane is waited for.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_discovery: Option<std::time::Instant> = None;
        loop {
            if let Err(e) = self.poll_once().await {
                tracing::warn!(error = %e, "poll failed; retrying");
            }
            let due = last_discovery.is_none_or(|t| t.elapsed() >= self.config.discovery_interval);
            if due && !self.config.discovery_dirs.is_empty() {
                match self.discover_once().await {
                    Ok(n) => {
                        last_discovery = Some(std::time::Instant::now());
                        tracing::info!(certificates = n, "discovery reported");
                    }
                    // Retried on the next poll.
                    Err(e) => tracing::warn!(error = %e, "discovery report failed; retrying"),
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// One round: heartbeat, work, each job.
    pub async fn poll_once(&self) -> Result<Vec<(String, Handled)>, ClientError> {
        self.heartbeat().await?;
        let work: AgentWork = self
            .client
            .call_completed("get_agent_work", &json!({ "id": self.config.agent_id }))
            .await?;
        let mut done = Vec::new();
        for item in work.data {
            let h = self.handle(&item).await?;
            match &h {
                Handled::Failed(r) => tracing::warn!(job = %item.job_id, reason = %r, "job failed"),
                other => tracing::info!(job = %item.job_id, result = ?other, "job done"),
            }
            done.push((item.job_id, h));
        }
        Ok(done)
    }

    /// Walks the discovery directories and reports what they hold, in
    /// batches. Returns how many certificates were reported.
    pub async fn discover_once(&self) -> Result<usize, ClientError> {
        let dirs = self.config.discovery_dirs.clone();
        let found = tokio::task::spawn_blocking(move || {
            discover::scan(&dirs, &discover::Limits::default())
        })
        .await
        .unwrap_or_default();
        if found.truncated {
            tracing::warn!(
                files = found.files,
                "discovery stopped at its limits; some files were not looked at"
            );
        }
        let total = found.items.len();
        for batch in found.items.chunks(certctl_engine::ops::MAX_DISCOVERY_BATCH) {
            let _: serde_json::Value = self
                .client
                .call_completed(
                    "report_agent_discoveries",
                    &json!({ "id": self.config.agent_id, "certificates": batch }),
                )
                .await?;
        }
        Ok(total)
    }

    async fn heartbeat(&self) -> Result<(), ClientError> {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let mut beat = json!({
            "id": self.config.agent_id,
            "hostname": host.trim(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(labels) = &self.config.labels {
            beat["labels"] = json!(labels);
        }
        let _: serde_json::Value = self.client.call_completed("agent_heartbeat", &beat).await?;
        Ok(())
    }

    /// Handles one work item. A job-level problem fails the job with its
    /// reason; only a server that cannot be reached is an error here.
    async fn handle(&self, item: &WorkItem) -> Result<Handled, ClientError> {
        let details: AgentJob = match self
            .client
            .call_completed(
                "get_agent_job",
                &json!({ "id": self.config.agent_id, "job_id": item.job_id }),
            )
            .await
        {
            Ok(d) => d,
            Err(ClientError::Api { problem }) => {
                return self
                    .fail(
                        &item.job_id,
                        format!("the job cannot be read: {}", problem.detail),
                    )
                    .await;
            }
            Err(e) => return Err(e),
        };
        let job = &details.job;
        let outcome = match (job.status, job.kind) {
            (JobStatus::AwaitingCsr, _) => self.send_csr(&details).await,
            (JobStatus::Pending, JobKind::Deployment) => {
                self.report(&job.id, "running", None).await?;
                self.deploy(&details).await
            }
            (JobStatus::Pending, JobKind::Validation) => {
                self.report(&job.id, "running", None).await?;
                self.challenge(&details).await
            }
            (status, kind) => Err(Failure::new(format!(
                "this agent does not handle {} jobs that are {}",
                kind.as_str(),
                status.as_str()
            ))),
        };
        match outcome {
            Ok(Handled::CsrSent { version_id }) => Ok(Handled::CsrSent { version_id }),
            Ok(h) => {
                let msg = match &h {
                    Handled::Deployed { changed: false } => {
                        "already deployed (same SHA-256); nothing written".to_owned()
                    }
                    Handled::Challenge(what) => what.clone(),
                    _ => "deployed, validated, reloaded and verified".to_owned(),
                };
                self.report(&job.id, "completed", Some(msg)).await?;
                Ok(h)
            }
            // The key and the job's state stay on disk; the next poll
            // sends the CSR for the same key.
            Err(f) if f.unreachable => Err(ClientError::Transport {
                url: self.config.server.clone(),
                reason: f.reason,
            }),
            Err(f) => self.fail(&job.id, f.reason).await,
        }
    }

    async fn report(
        &self,
        job_id: &str,
        status: &str,
        message: Option<String>,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .client
            .call_completed(
                "report_agent_job",
                &json!({ "id": self.config.agent_id, "job_id": job_id, "status": status, "message": message }),
            )
            .await?;
        Ok(())
    }

    async fn fail(&self, job_id: &str, reason: String) -> Result<Handled, ClientError> {
        match self.report(job_id, "failed", Some(reason.clone())).await {
            Ok(()) => {}
            // The job moved on meanwhile (cancelled, reclaimed): nothing to fail.
            Err(ClientError::Api { problem }) if problem.status == 409 || problem.status == 404 => {
                tracing::warn!(job = %job_id, detail = %problem.detail, "could not report the failure");
            }
            Err(e) => return Err(e),
        }
        Ok(Handled::Failed(reason))
    }

    /// Makes (or reuses) this job's key, sends the CSR.
    async fn send_csr(&self, d: &AgentJob) -> Result<Handled, Failure> {
        let job_id = &d.job.id;
        let cn = d
            .common_name
            .clone()
            .ok_or_else(|| Failure::new("the job names no certificate"))?;
        let names = subject_names(&d.sans)?;
        let mut st = self.keys.job_state(job_id)?;
        let algorithm = st
            .algorithm
            .or(d.key_type)
            .unwrap_or(KeyAlgorithm::EcdsaP256);
        let existing = match &st.key_id {
            Some(id) => self.keys.load_key(id, algorithm)?,
            None => None,
        };
        let key = match existing {
            Some(k) => k,
            None => {
                let k = pki::generate_key(algorithm)
                    .map_err(|e| Failure::new(format!("key generation failed: {e}")))?;
                let id = self.keys.store_key(&k)?;
                st = JobState {
                    key_id: Some(id),
                    algorithm: Some(algorithm),
                    version_id: None,
                };
                self.keys.save_job_state(job_id, &st)?;
                k
            }
        };
        let csr = pki::csr_for(&key, &cn, &names)
            .map_err(|e| Failure::new(format!("the CSR could not be built: {e}")))?;
        let out: AgentCsrOutput = self
            .client
            .call_completed(
                "submit_agent_csr",
                &json!({ "id": self.config.agent_id, "job_id": job_id, "csr_pem": csr }),
            )
            .await
            .map_err(|e| Failure::from_call("the CSR was refused", e))?;
        // A local CA signs at once; an external CA signs later through an
        // issuer job, and the key stays here for the deployment that follows.
        let version_id = match (&out.version, &out.issuer_job) {
            (Some(v), _) => v.id.clone(),
            (None, Some(j)) => format!("pending:{}", j.id),
            (None, None) => {
                return Err(Failure::new(
                    "the server accepted the CSR but returned no version",
                ));
            }
        };
        st.version_id = Some(version_id.clone());
        self.keys.save_job_state(job_id, &st)?;
        Ok(Handled::CsrSent { version_id })
    }

    /// Puts an ACME HTTP-01 token in place (or takes it away): in the
    /// target's `acme_webroot`, or on this agent's own listener.
    async fn challenge(&self, d: &AgentJob) -> Result<Handled, Failure> {
        let c = challenge::Challenge::from_payload(&d.job.payload)?;
        let webroot = match &d.target {
            Some(t) => {
                certctl_engine::domain::TargetConfig::parse(t.kind, &t.config)
                    .map_err(|e| Failure::new(e.to_string()))?
                    .acme_webroot
            }
            None => None,
        };
        let roots = &self.config.deploy_roots;
        let done = match (&c.action, &webroot, &self.http01) {
            (challenge::Action::Present { key_authorization }, Some(w), _) => {
                let path = challenge::place(roots, w, &c.token, key_authorization)?;
                format!(
                    "HTTP-01 token for {} written to {}",
                    c.identifier,
                    path.display()
                )
            }
            (challenge::Action::Remove, Some(w), _) => {
                let removed = challenge::remove(roots, w, &c.token)?;
                format!(
                    "HTTP-01 token for {} {}",
                    c.identifier,
                    if removed {
                        "removed"
                    } else {
                        "was already gone"
                    }
                )
            }
            (challenge::Action::Present { key_authorization }, None, Some(l)) => {
                l.present(&c, key_authorization).await?;
                format!("HTTP-01 token for {} served on {}", c.identifier, l.address)
            }
            (challenge::Action::Remove, None, Some(l)) => {
                l.remove(&c).await;
                format!("HTTP-01 token for {} no longer served", c.identifier)
            }
            (challenge::Action::Remove, None, None) => "nothing to remove".to_owned(),
            (challenge::Action::Present { .. }, None, None) => {
                return Err(Failure::new(
                    "the target has no config.acme_webroot and this agent has no --http01-listen; the HTTP-01 challenge cannot be answered",
                ));
            }
        };
        Ok(Handled::Challenge(done))
    }

    async fn deploy(&self, d: &AgentJob) -> Result<Handled, Failure> {
        let target = d
            .target
            .as_ref()
            .ok_or_else(|| Failure::new("the deployment names no target"))?;
        let version = d
            .version
            .as_ref()
            .ok_or_else(|| Failure::new("the deployment names no certificate version"))?;
        let config = deployable_config(target).map_err(|e| Failure::new(e.to_string()))?;
        let (leaf_der, spki) = leaf_der_and_spki(&version.cert_pem)?;
        let fingerprint = state::key_id(&leaf_der);
        if fingerprint != version.fingerprint {
            return Err(Failure::new(
                "the certificate does not match its fingerprint",
            ));
        }
        let key_pem = self.keys.key_pem_for(&spki)?.ok_or_else(|| {
            Failure::new(format!(
                "the private key of version {} is not in this agent's key dir",
                version.id
            ))
        })?;
        let material = connectors::Material {
            leaf_pem: version.cert_pem.clone(),
            chain_pem: version.chain_pem.clone(),
            key_pem,
            fingerprint: fingerprint.clone(),
        };
        let plan = connectors::for_kind(target.kind).plan(&config, &material, &self.config.exec)?;
        let deployed = deploy::apply(plan, &self.config.deploy_roots).await?;
        if let Some(endpoint) = &config.verify_endpoint {
            let sni = config
                .server_name
                .clone()
                .or_else(|| d.common_name.clone())
                .unwrap_or_else(|| "localhost".into());
            let (served, error) =
                verify::wait_for(endpoint, &sni, &fingerprint, self.config.verify_timeout).await;
            let report: Result<serde_json::Value, _> = self
                .client
                .call_completed(
                    "verify_job",
                    &json!({
                        "id": d.job.id, "agent_id": self.config.agent_id, "endpoint": endpoint,
                        "expected_fingerprint": fingerprint, "served_fingerprint": served, "error": error,
                    }),
                )
                .await;
            if let Err(e) = report {
                tracing::warn!(job = %d.job.id, error = %e, "could not report the verification");
            }
            match (served, error) {
                (Some(s), _) if s == fingerprint => {}
                (Some(s), _) => {
                    return Err(Failure::new(format!(
                        "verification failed: {endpoint} serves {s}, not the deployed {fingerprint}"
                    )));
                }
                (None, e) => {
                    return Err(Failure::new(format!(
                        "verification failed: {}",
                        e.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(Handled::Deployed {
            changed: deployed != deploy::Deployed::Unchanged,
        })
    }
}

fn subject_names(sans: &[String]) -> Result<SubjectNames, Failure> {
    let mut names = SubjectNames::default();
    for s in sans {
        if let Ok(ip) = s.parse() {
            names.ips.push(ip);
        } else if s.contains('@') {
            names.emails.push(s.clone());
        } else {
            names.dns.push(s.clone());
        }
    }
    Ok(names)
}

/// The DER of the first certificate in `pem` and its SubjectPublicKeyInfo.
fn leaf_der_and_spki(pem: &str) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Failure::new(format!("the certificate is not PEM: {e}")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| Failure::new(format!("the certificate does not parse: {e}")))?;
    let spki = cert.public_key().raw.to_vec();
    Ok((block.contents.clone(), spki))
}
