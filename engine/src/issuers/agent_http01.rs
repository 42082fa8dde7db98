//! HTTP-01 answered by the agent on the target host (ACME issuer with
//! `http01_solver = agent`).
//!
//! The control plane never connects to agents, so a challenge travels as
//! work: for each pending HTTP-01 authorization the issuer job queues a
//! `validation` job for the agent of the certificate's target, with the
//! token and the key authorization (`action: present`). The agent, on its
//! next poll, takes the job, writes `/.well-known/acme-challenge/TOKEN`
//! into the target's `acme_webroot` (or serves it on its own listener) and
//! completes the job. Only then does the issuer job tell the CA the
//! challenge is ready. When the order is validated (or fails) a second
//! `validation` job (`action: remove`) has the agent delete the file.
//!
//! Each challenge job is recorded in the issuer job's payload
//! (`agent_http01`, by token), saved at once, so an attempt that dies while
//! it waits is resumed with the same challenge job instead of a second one,
//! and leftovers of earlier attempts are removed when the order ends.

use std::time::Duration;

use super::IssuerError;
use super::acme_dns::Http01Solver;
use super::runner::JobCheckpoint;
use crate::domain::{Job, JobKind, JobStatus, Outcome as AuditOutcome};

/// How often the issuer job looks at the challenge job while it waits.
const POLL: Duration = Duration::from_millis(200);

/// The payload key under which challenge jobs are recorded.
const KEY: &str = "agent_http01";

pub(super) struct AgentHttp01<'a> {
    pub(super) cp: &'a JobCheckpoint<'a>,
    pub(super) timeout: Duration,
}

/// One challenge handed to an agent, as recorded in the issuer job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Placed {
    /// The `validation` job that puts the token in place.
    job_id: String,
    agent_id: String,
    identifier: String,
    /// A removal job was queued (or nothing was ever placed).
    #[serde(default)]
    removed: bool,
}

fn transient(e: impl std::fmt::Display) -> IssuerError {
    IssuerError::transient(format!("the HTTP-01 challenge for the agent: {e}"))
}

impl AgentHttp01<'_> {
    fn recorded(&self, token: &str) -> Option<Placed> {
        let p = self.cp.payload.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::from_value(p[KEY][token].clone()).ok()
    }

    async fn record(&self, token: &str, placed: &Placed) -> Result<(), IssuerError> {
        let value = serde_json::to_value(placed).map_err(transient)?;
        let payload = {
            let mut p = self.cp.payload.lock().unwrap_or_else(|e| e.into_inner());
            if !p[KEY].is_object() {
                p[KEY] = serde_json::json!({});
            }
            p[KEY][token] = value;
            p.clone()
        };
        self.cp.save_payload(&payload).await
    }

    /// The agent that answers and the target it answers for: the agent whose
    /// CSR this is (it serves one of the certificate's targets), otherwise
    /// the agent of the first target that names one.
    async fn choose(&self) -> Result<(String, String), IssuerError> {
        let engine = self.cp.engine;
        let key_holder =
            self.cp.payload.lock().unwrap_or_else(|e| e.into_inner())["deploy_agent_id"]
                .as_str()
                .map(str::to_owned);
        let mut tx = engine.store().begin_read().await.map_err(transient)?;
        let targets = tx
            .certificate_targets(&self.cp.certificate_id)
            .await
            .map_err(transient)?;
        let mut chosen = None;
        if let Some(agent) = &key_holder {
            for t in &targets {
                if crate::ops::agent_groups::serves(&mut tx, t, agent)
                    .await
                    .map_err(transient)?
                {
                    chosen = Some((agent.clone(), t.id.clone()));
                    break;
                }
            }
        }
        if chosen.is_none() {
            chosen = targets
                .iter()
                .find_map(|t| Some((t.agent_id.clone()?, t.id.clone())));
        }
        tx.commit().await.map_err(transient)?;
        chosen.ok_or_else(|| {
            IssuerError::rejected(format!(
                "certificate {} has no target with an agent to answer HTTP-01 (the issuer's http01_solver is agent)",
                self.cp.certificate_id
            ))
        })
    }

    /// Queues a `validation` job for the agent, with an audit event naming it.
    async fn queue(
        &self,
        agent_id: &str,
        target_id: &str,
        payload: serde_json::Value,
        action: &str,
    ) -> Result<String, IssuerError> {
        let engine = self.cp.engine;
        let now = engine.now();
        let job = Job {
            id: crate::ids::new_id("job", engine.clock()),
            kind: JobKind::Validation,
            status: JobStatus::Pending,
            certificate_id: Some(self.cp.certificate_id.clone()),
            target_id: Some(target_id.to_owned()),
            agent_id: Some(agent_id.to_owned()),
            attempts: 0,
            max_attempts: 1,
            run_after: now,
            last_error: None,
            payload,
            created_at: now,
            updated_at: now,
        };
        let mut tx = engine.store().begin_write().await.map_err(transient)?;
        tx.insert_job(&job).await.map_err(transient)?;
        let details = serde_json::Map::from_iter([
            ("job_id".to_owned(), job.id.clone().into()),
            ("issuer_job_id".to_owned(), self.cp.job_id.clone().into()),
            ("agent_id".to_owned(), agent_id.into()),
            ("identifier".to_owned(), job.payload["identifier"].clone()),
            ("action".to_owned(), action.into()),
        ]);
        engine
            .append(
                &mut tx,
                &super::runner::principal(),
                "certificate.http01_challenge_queued",
                "certificate",
                Some(self.cp.certificate_id.clone()),
                AuditOutcome::Success,
                details,
                now,
            )
            .await
            .map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        Ok(job.id)
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, IssuerError> {
        let mut tx = self
            .cp
            .engine
            .store()
            .begin_read()
            .await
            .map_err(transient)?;
        let job = tx.job(id).await.map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        Ok(job)
    }

    /// Waits until the agent completed the challenge job; fails (and ends
    /// the job, so the agent does not place it late) after the timeout.
    async fn wait(&self, placed: &Placed) -> Result<(), IssuerError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let job = self.job(&placed.job_id).await?.ok_or_else(|| {
                IssuerError::transient(format!("challenge job {} vanished", placed.job_id))
            })?;
            match job.status {
                JobStatus::Completed => return Ok(()),
                JobStatus::Failed | JobStatus::Cancelled => {
                    return Err(IssuerError::rejected(format!(
                        "agent {} could not put the HTTP-01 challenge for {} in place (job {}): {}",
                        placed.agent_id,
                        placed.identifier,
                        job.id,
                        job.last_error.as_deref().unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.timed_out(placed).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn timed_out(&self, placed: &Placed) -> IssuerError {
        let engine = self.cp.engine;
        let now = engine.now();
        let heartbeat = match engine.store().begin_read().await {
            Ok(mut tx) => {
                let a = tx.agent(&placed.agent_id).await.ok().flatten();
                let _ = tx.commit().await;
                match a.and_then(|a| a.last_heartbeat_at) {
                    Some(t) => format!("its last heartbeat was {} s ago", (now - t).max(0)),
                    None => "it has never sent a heartbeat".to_owned(),
                }
            }
            Err(_) => "its heartbeat could not be read".to_owned(),
        };
        let reason = format!(
            "agent {} did not put the HTTP-01 challenge for {} in place within {} s ({heartbeat}); the CA was not asked to validate",
            placed.agent_id,
            placed.identifier,
            self.timeout.as_secs()
        );
        let ended = async {
            let mut tx = engine.store().begin_write().await?;
            tx.end_open_job(&placed.job_id, &reason, now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = ended {
            tracing::warn!(job = %placed.job_id, error = %e, "could not end the timed-out challenge job");
        }
        IssuerError::transient(reason)
    }
}

#[async_trait::async_trait]
impl Http01Solver for AgentHttp01<'_> {
    async fn present(&self, name: &str, token: &str, key_auth: &str) -> Result<(), IssuerError> {
        // RFC 8555 §8.3: base64url only. The agent checks again; a token
        // that is anything else never reaches it.
        let base64url = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !base64url(token) {
            return Err(IssuerError::rejected(format!(
                "the ACME CA sent an HTTP-01 token for {name} that is not base64url; refused"
            )));
        }
        // A resumed attempt finds the challenge job of the attempt that died.
        if let Some(placed) = self.recorded(token).filter(|p| !p.removed) {
            let status = self.job(&placed.job_id).await?.map(|j| j.status);
            if matches!(
                status,
                Some(JobStatus::Pending | JobStatus::Running | JobStatus::Completed)
            ) {
                return self.wait(&placed).await;
            }
        }
        let (agent_id, target_id) = self.choose().await?;
        let payload = serde_json::json!({
            "challenge": "http-01",
            "action": "present",
            "identifier": name,
            "token": token,
            "key_authorization": key_auth,
            "issuer_job_id": self.cp.job_id,
        });
        let job_id = self
            .queue(&agent_id, &target_id, payload, "present")
            .await?;
        let placed = Placed {
            job_id,
            agent_id,
            identifier: name.to_owned(),
            removed: false,
        };
        self.record(token, &placed).await?;
        self.wait(&placed).await
    }

    async fn cleanup(&self, _name: &str, token: &str) {
        if let Err(e) = self.remove(token).await {
            tracing::warn!(token, error = %e, "could not queue the HTTP-01 challenge's removal");
        }
    }
}

impl AgentHttp01<'_> {
    /// Has the agent delete the token file, unless it never took the job
    /// (then the job is cancelled: nothing was written).
    async fn remove(&self, token: &str) -> Result<(), IssuerError> {
        let Some(mut placed) = self.recorded(token).filter(|p| !p.removed) else {
            return Ok(());
        };
        let Some(job) = self.job(&placed.job_id).await? else {
            return Ok(());
        };
        let engine = self.cp.engine;
        if job.status == JobStatus::Cancelled {
            // Ended before the agent took it: nothing was written.
        } else if job.status == JobStatus::Pending {
            let mut tx = engine.store().begin_write().await.map_err(transient)?;
            tx.end_open_job(
                &job.id,
                "the order ended before the agent took the challenge",
                engine.now(),
            )
            .await
            .map_err(transient)?;
            tx.commit().await.map_err(transient)?;
        } else if let (Some(agent), Some(target)) = (&job.agent_id, &job.target_id) {
            let payload = serde_json::json!({
                "challenge": "http-01",
                "action": "remove",
                "identifier": placed.identifier,
                "token": token,
                "issuer_job_id": self.cp.job_id,
            });
            self.queue(agent, target, payload, "remove").await?;
        }
        placed.removed = true;
        self.record(token, &placed).await
    }
}

/// Removes what earlier attempts of this issuer job left in place (an
/// attempt that died after the agent placed a token, an order whose
/// authorization was already valid when it was resumed).
pub(super) async fn sweep(cp: &JobCheckpoint<'_>) {
    let tokens: Vec<String> = {
        let p = cp.payload.lock().unwrap_or_else(|e| e.into_inner());
        p[KEY]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| !v["removed"].as_bool().unwrap_or(false))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let solver = AgentHttp01 {
        cp,
        timeout: Duration::ZERO,
    };
    for token in tokens {
        solver.cleanup("", &token).await;
    }
}
