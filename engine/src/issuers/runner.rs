//! The issuer job worker: claims due issuance, renewal and revocation jobs
//! of external issuers, runs their connector outside any transaction, and
//! records the outcome in one short transaction.
//!
//! Issuance jobs carry the CSR in their payload (`csr_pem`, `ttl_seconds`);
//! a connector's progress (an ACME order URL) is saved into the payload as
//! `connector_state` while the job runs, so the next attempt, on this process
//! or another after a crash, resumes it.

use std::sync::Mutex;

use crate::Engine;
use crate::domain::{
    EffectiveStatus, Job, JobKind, Outcome as AuditOutcome, Principal, RevocationReason,
};
use crate::error::{Error, Result};
use crate::pki::{self, ParsedCsr};
use crate::store::{JobResult, NewVersion};

use super::{Checkpoint, IssueRequest, Issued, IssuerError};

/// The job kinds this worker claims.
pub const KINDS: [JobKind; 3] = [JobKind::Issuance, JobKind::Renewal, JobKind::Revocation];

/// How long a claimed job is held by default (`scheduler.job_lease_seconds`
/// sets it). A connector that needs longer (a slow ACME validation) fails
/// the attempt and resumes on the next one.
pub const LEASE_SECONDS: i64 = 600;

/// The principal recorded for the worker's audit events.
pub fn principal() -> Principal {
    Principal::system("issuer-jobs")
}

/// What one run of the worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub completed: usize,
    pub failed: usize,
}

/// Claims up to `limit` due jobs for `worker` and runs them one after the
/// other (the built-in HTTP-01 solver binds one port at a time).
pub async fn run_due(engine: &Engine, worker: &str, limit: i64) -> Result<RunReport> {
    let now = engine.now();
    let jobs = engine
        .store()
        .claim_jobs_of(
            worker,
            now,
            engine.config().scheduler.job_lease_seconds.max(1),
            limit,
            &KINDS,
        )
        .await?;
    let mut report = RunReport::default();
    for job in jobs {
        let id = job.id.clone();
        match run_job(engine, worker, job).await {
            Ok(true) => report.completed += 1,
            Ok(false) => report.failed += 1,
            Err(e) => {
                report.failed += 1;
                tracing::warn!(job = %id, error = %e, "issuer job could not be run");
                let _ = engine
                    .store()
                    .finish_job(&id, worker, &JobResult::Failed(e.to_string()), engine.now())
                    .await;
            }
        }
    }
    Ok(report)
}

/// Saves connector progress into the running job's payload.
pub(super) struct JobCheckpoint<'a> {
    pub(super) engine: &'a Engine,
    worker: &'a str,
    pub(super) job_id: String,
    /// The certificate the job issues for (empty for revocations).
    pub(super) certificate_id: String,
    issuer_id: String,
    pub(super) payload: Mutex<serde_json::Value>,
}

impl JobCheckpoint<'_> {
    /// Saves the whole payload while this worker holds the job's lease.
    pub(super) async fn save_payload(
        &self,
        payload: &serde_json::Value,
    ) -> Result<(), IssuerError> {
        let saved = self
            .engine
            .store()
            .save_job_payload(&self.job_id, self.worker, payload, self.engine.now())
            .await
            .map_err(|e| IssuerError::transient(format!("cannot save the job's progress: {e}")))?;
        if saved {
            Ok(())
        } else {
            Err(IssuerError::transient(
                "this worker no longer holds the job (its lease ran out)",
            ))
        }
    }
}

#[async_trait::async_trait]
impl Checkpoint for JobCheckpoint<'_> {
    async fn save_state(&self, state: serde_json::Value) -> Result<(), IssuerError> {
        let payload = {
            let mut p = self.payload.lock().unwrap_or_else(|e| e.into_inner());
            p["connector_state"] = state;
            p.clone()
        };
        self.save_payload(&payload).await
    }

    fn agent_http01(
        &self,
        timeout: std::time::Duration,
    ) -> Option<Box<dyn super::acme_dns::Http01Solver + '_>> {
        Some(Box::new(super::agent_http01::AgentHttp01 {
            cp: self,
            timeout,
        }))
    }

    async fn save_account(
        &self,
        account: serde_json::Value,
    ) -> Result<serde_json::Value, IssuerError> {
        let e = self.engine;
        let sealed = super::seal_account(e.master_key(), &self.issuer_id, &account)
            .map_err(|e| IssuerError::transient(e.to_string()))?;
        let kept = e
            .store()
            .set_issuer_account(&self.issuer_id, &sealed, e.now())
            .await
            .map_err(|e| IssuerError::transient(e.to_string()))?;
        if kept {
            return Ok(account);
        }
        // Another worker registered first: use its account.
        let record = e
            .store()
            .issuer(&self.issuer_id)
            .await
            .map_err(|e| IssuerError::transient(e.to_string()))?
            .and_then(|r| r.account)
            .ok_or_else(|| IssuerError::transient("the issuer's account vanished"))?;
        let bytes = e
            .master_key()
            .open(&record, &format!("{}/account", self.issuer_id))
            .map_err(|e| IssuerError::transient(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| IssuerError::transient(e.to_string()))
    }
}

/// Runs one claimed job; returns whether it completed.
async fn run_job(engine: &Engine, worker: &str, job: Job) -> Result<bool> {
    let cert_id = job
        .certificate_id
        .clone()
        .ok_or_else(|| Error::internal("issuer job without a certificate"))?;
    let issuer_id = job.payload["issuer_id"]
        .as_str()
        .ok_or_else(|| Error::internal("issuer job without an issuer"))?
        .to_owned();
    let record = engine
        .store()
        .issuer(&issuer_id)
        .await?
        .ok_or_else(|| Error::internal(format!("issuer {issuer_id} is missing")))?;
    let checkpoint = JobCheckpoint {
        engine,
        worker,
        job_id: job.id.clone(),
        certificate_id: cert_id.clone(),
        issuer_id: issuer_id.clone(),
        payload: Mutex::new(job.payload.clone()),
    };
    let connector =
        match super::connector_for(engine.master_key(), &record, engine.config().outbound) {
            Ok(c) => c,
            Err(e) => {
                let err = IssuerError::rejected(e.to_string());
                return fail(engine, worker, &job, &cert_id, &err).await;
            }
        };
    if !record.issuer.enabled {
        let err = IssuerError::transient(format!("issuer {issuer_id} is disabled"));
        return fail(engine, worker, &job, &cert_id, &err).await;
    }
    let resume = job.payload.get("connector_state").cloned();

    if job.kind == JobKind::Revocation {
        let cert_pem = job.payload["cert_pem"].as_str().unwrap_or_default();
        let reason: RevocationReason =
            serde_json::from_value(job.payload["reason"].clone()).unwrap_or_default();
        let der = pki::cert::certificate_ders(cert_pem, "certificate")?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("revocation job without a certificate"))?;
        return match connector.revoke(&der, reason, &checkpoint).await {
            Ok(()) => {
                let mut tx = engine.store().begin_write().await?;
                let payload = checkpoint
                    .payload
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if !tx
                    .complete_running_job(&job.id, worker, &payload, engine.now())
                    .await?
                {
                    return Ok(false);
                }
                let details = serde_json::Map::from_iter([
                    ("job_id".to_owned(), job.id.clone().into()),
                    ("issuer_id".to_owned(), issuer_id.into()),
                    ("reason".to_owned(), reason.as_str().into()),
                ]);
                engine
                    .append(
                        &mut tx,
                        &principal(),
                        "certificate.revoked_at_ca",
                        "certificate",
                        Some(cert_id),
                        AuditOutcome::Success,
                        details,
                        engine.now(),
                    )
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
            Err(err) => fail(engine, worker, &job, &cert_id, &err).await,
        };
    }

    let csr_pem = job.payload["csr_pem"]
        .as_str()
        .ok_or_else(|| Error::internal("issuance job without a CSR"))?
        .to_owned();
    let csr = pki::parse_csr(&csr_pem)?;
    let (cert, replaces_der) = {
        let mut tx = engine.store().begin_read().await?;
        let c = tx
            .certificate(&cert_id, engine.status_view(engine.now()))
            .await?
            .ok_or_else(|| Error::not_found("certificate", &cert_id))?;
        // A renewal names the certificate it replaces (ACME ARI, RFC 9773 §5).
        let replaces = match (&job.kind, &c.current_version_id) {
            (JobKind::Renewal, Some(v)) => tx
                .version(v)
                .await?
                .and_then(|v| pki::cert::certificate_ders(&v.cert_pem, "certificate").ok())
                .and_then(|d| d.into_iter().next()),
            _ => None,
        };
        tx.commit().await?;
        (c, replaces)
    };
    let names = crate::ops::subject_names(&cert.sans)?;
    let req = IssueRequest {
        job_id: job.id.clone(),
        certificate_id: cert_id.clone(),
        csr_pem: csr_pem.clone(),
        csr_der: csr.der.clone(),
        common_name: cert.common_name.clone(),
        names,
        ttl_seconds: job.payload["ttl_seconds"].as_i64().unwrap_or(90 * 86400),
        now: engine.now(),
        replaces_der,
    };
    let issued = connector.issue(&req, resume, &checkpoint).await;
    // HTTP-01 tokens an agent placed in earlier attempts come down too.
    super::agent_http01::sweep(&checkpoint).await;
    let issued = match issued {
        Ok(i) => i,
        Err(err) => return fail(engine, worker, &job, &cert_id, &err).await,
    };
    let payload = checkpoint
        .payload
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match record_version(engine, worker, &job, payload, &csr, &csr_pem, &issued).await {
        Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(e @ (Error::PolicyViolation(_) | Error::Conflict(_) | Error::InvalidInput(_))) => {
            let err = IssuerError::rejected(e.to_string());
            fail(engine, worker, &job, &cert_id, &err).await
        }
        Err(e) => Err(e),
    }
}

/// Ends a failed attempt: retried later when the error is transient, failed
/// for good otherwise (and audited then).
async fn fail(
    engine: &Engine,
    worker: &str,
    job: &Job,
    cert_id: &str,
    err: &IssuerError,
) -> Result<bool> {
    tracing::warn!(job = %job.id, error = %err.message, retryable = err.retryable, "issuer job failed");
    let result = if err.retryable {
        JobResult::Failed(err.message.clone())
    } else {
        JobResult::FailedPermanently(err.message.clone())
    };
    let now = engine.now();
    engine
        .store()
        .finish_job(&job.id, worker, &result, now)
        .await?;
    let final_failure = !err.retryable || job.attempts >= job.max_attempts;
    if final_failure {
        let mut tx = engine.store().begin_write().await?;
        let details = serde_json::Map::from_iter([
            ("job_id".to_owned(), job.id.clone().into()),
            ("error".to_owned(), err.message.clone().into()),
            ("error_code".to_owned(), "issuer-rejected".into()),
        ]);
        engine
            .append(
                &mut tx,
                &principal(),
                &format!("{}.failed", job.kind.as_str()),
                "certificate",
                Some(cert_id.to_owned()),
                AuditOutcome::Failure,
                details,
                now,
            )
            .await?;
        tx.commit().await?;
    }
    Ok(false)
}

/// The leaf's SubjectPublicKeyInfo DER.
fn leaf_spki(der: &[u8]) -> Result<Vec<u8>> {
    let cert = pki::cert::parse_x509(der, "issued certificate")?;
    Ok(cert.public_key().raw.to_vec())
}

/// Records a certificate an external CA returned, in one short transaction:
/// checks that it certifies the CSR's key and only the certificate's names,
/// stores it as the new current version, completes the job and appends the
/// audit event (as the issuer-jobs system principal, naming the job).
/// Returns the new version id, or `None` when the worker lost the job's lease
/// (nothing is written then).
pub async fn record_version(
    engine: &Engine,
    worker: &str,
    job: &Job,
    mut payload: serde_json::Value,
    csr: &ParsedCsr,
    csr_pem: &str,
    issued: &Issued,
) -> Result<Option<String>> {
    let cert_id = job
        .certificate_id
        .clone()
        .ok_or_else(|| Error::internal("issuer job without a certificate"))?;
    let leaf = pki::parse_certificate_pem(&issued.cert_pem)
        .map_err(|e| Error::policy(format!("the CA returned an unusable certificate: {e}")))?;
    if leaf_spki(&leaf.der)? != csr.spki_der {
        return Err(Error::policy(
            "the CA returned a certificate for a different public key than the CSR's",
        ));
    }
    if leaf.names.is_empty() {
        return Err(Error::policy(
            "the CA returned a certificate without subject alternative names",
        ));
    }
    let now = engine.now();
    let mut tx = engine.store().begin_write().await?;
    let cert = tx
        .certificate(&cert_id, engine.status_view(now))
        .await?
        .ok_or_else(|| Error::not_found("certificate", &cert_id))?;
    if cert.status == EffectiveStatus::Archived {
        return Err(Error::conflict(format!(
            "certificate {cert_id} was archived while its CA worked"
        )));
    }
    let names = crate::ops::subject_names(&cert.sans)?;
    for dns in &leaf.names.dns {
        if !names.dns.iter().any(|n| n.eq_ignore_ascii_case(dns)) {
            return Err(Error::policy(format!(
                "the CA returned a certificate for {dns}, which is not a name of certificate {cert_id}"
            )));
        }
    }
    for ip in &leaf.names.ips {
        if !names.ips.contains(ip) {
            return Err(Error::policy(format!(
                "the CA returned a certificate for {ip}, which is not a name of certificate {cert_id}"
            )));
        }
    }
    for dns in &csr.names.dns {
        if !leaf.names.dns.iter().any(|n| n.eq_ignore_ascii_case(dns)) {
            return Err(Error::policy(format!(
                "the CA left out {dns}, which the CSR asked for"
            )));
        }
    }
    let key_algorithm = leaf.key_algorithm.unwrap_or(csr.key_algorithm);
    let version_id = crate::ids::new_id("cv", engine.clock());
    let new = NewVersion {
        id: version_id.clone(),
        certificate_id: cert_id.clone(),
        issuer_id: cert.issuer_id.clone(),
        serial: leaf.serial_hex.clone(),
        fingerprint: leaf.fingerprint_sha256.clone(),
        key_algorithm,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        cert_pem: issued.cert_pem.clone(),
        chain_pem: issued.chain_pem.clone(),
        csr_pem: Some(csr_pem.to_owned()),
        private_key_sealed: None,
        created_at: now,
    };
    tx.insert_version(&new).await?;
    // Its next renewal, and the `renewed` event, in the same transaction.
    crate::notify::after_new_version(
        &mut tx,
        engine.config(),
        now,
        cert.current_version_id.is_some(),
        &cert,
        &crate::notify::VersionFacts {
            id: &new.id,
            serial: &new.serial,
            not_before: new.not_before,
            not_after: new.not_after,
        },
    )
    .await?;
    // The agent whose CSR this was holds the key: its targets get the version.
    let deployments = match payload["deploy_agent_id"].as_str() {
        Some(agent_id) => {
            crate::ops::queue_deployments(&mut tx, engine, now, &cert_id, &version_id, agent_id)
                .await?
        }
        None => Vec::new(),
    };
    payload["version_id"] = version_id.clone().into();
    if let Some(obj) = payload.as_object_mut() {
        // The CSR is in the version now; the job keeps only the reference.
        obj.remove("csr_pem");
    }
    if !tx
        .complete_running_job(&job.id, worker, &payload, now)
        .await?
    {
        tx.rollback().await?;
        return Ok(None);
    }
    let details = serde_json::Map::from_iter([
        ("job_id".to_owned(), job.id.clone().into()),
        ("issuer_id".to_owned(), cert.issuer_id.clone().into()),
        ("version_id".to_owned(), version_id.clone().into()),
        ("serial".to_owned(), new.serial.clone().into()),
        ("not_after".to_owned(), new.not_after.into()),
        ("deployment_jobs".to_owned(), deployments.into()),
    ]);
    engine
        .append(
            &mut tx,
            &principal(),
            &format!("{}.completed", job.kind.as_str()),
            "certificate",
            Some(cert_id),
            AuditOutcome::Success,
            details,
            now,
        )
        .await?;
    tx.commit().await?;
    Ok(Some(version_id))
}
