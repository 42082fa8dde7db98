//! The engine: the single entry point every face calls.
//!
//! [`Engine::call`] runs one operation in four steps that no caller can skip:
//! 1. authorize the principal against the operation's permission;
//! 2. apply the approval gate (risk-class policy, or a profile that requires
//!    approval): a gated call stores its exact input as an approval and
//!    returns, changing nothing else;
//! 3. execute inside one transaction;
//! 4. append the audit event in that same transaction (or, for failures and
//!    refusals, in a transaction of its own).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clock::{Clock, UnixTime};
use crate::config::EngineConfig;
use crate::domain::approval::GateReason;
use crate::domain::{Approval, ApprovalStatus, Outcome as AuditOutcome, Permission, Principal};
use crate::error::{Error, Result};
use crate::ops::{ApprovalTicket, Ctx, Followup, Operation, Outcome, Risk, Subject};
use crate::pki::{MasterKey, SigningCa};
use crate::store::{NewAuditEvent, StatusView, Store, Tx};

/// The lifecycle engine. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    master: MasterKey,
    /// Decrypted signing CAs by issuer id, loaded on first use.
    cas: RwLock<HashMap<String, Arc<SigningCa>>>,
    /// CRL and OCSP caches (see `revocation.rs`).
    revocation: crate::revocation::RevocationCaches,
    /// Group commit of read operations' audit events.
    read_audit: crate::read_audit::ReadAudit,
    /// Calls holding a transaction at once. A call holds its transaction's
    /// connection and may take a second one from the pool for a store-level
    /// read; with as many calls as connections, each would wait for a second
    /// connection that never comes. One slot fewer than the pool always leaves
    /// a connection free, so some call can always finish.
    call_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the engine and makes sure the installation has its local CA
    /// and default profile (safe when several processes start at once).
    pub async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        master: MasterKey,
    ) -> Result<Arc<Self>> {
        let slots = (store.max_connections().max(2) - 1) as usize;
        let engine = Arc::new(Self {
            call_slots: tokio::sync::Semaphore::new(slots),
            store,
            clock,
            config,
            master,
            cas: RwLock::new(HashMap::new()),
            revocation: Default::default(),
            read_audit: Default::default(),
        });
        crate::bootstrap::ensure_defaults(&engine).await?;
        Ok(engine)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// A 32-byte secret derived from the master key for one purpose (e.g.
    /// signing MCP request state). Replicas sharing the master key derive the
    /// same secret; the master key itself never leaves the engine.
    pub fn derive_secret(&self, purpose: &str) -> zeroize::Zeroizing<Vec<u8>> {
        self.master.derive(purpose)
    }

    pub(crate) fn read_audit(&self) -> &crate::read_audit::ReadAudit {
        &self.read_audit
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// How stored statuses turn into effective ones right now.
    pub fn status_view(&self, now: UnixTime) -> StatusView {
        StatusView {
            now,
            expiring_window: self.config.expiring_window_seconds,
        }
    }

    /// The decrypted signing CA of a local issuer, cached after first use.
    pub(crate) fn signing_ca(
        &self,
        issuer_id: &str,
        material: &crate::pki::CaMaterial,
    ) -> Result<Arc<SigningCa>> {
        if let Some(ca) = self.cas.read().ok().and_then(|m| m.get(issuer_id).cloned()) {
            return Ok(ca);
        }
        let ca = Arc::new(SigningCa::load(material, &self.master, issuer_id)?);
        if let Ok(mut m) = self.cas.write() {
            m.insert(issuer_id.to_owned(), ca.clone());
        }
        Ok(ca)
    }

    pub(crate) fn revocation_caches(&self) -> &crate::revocation::RevocationCaches {
        &self.revocation
    }

    /// Runs one operation through authorization, the approval gate,
    /// execution and audit.
    pub async fn call<O: Operation>(
        &self,
        principal: &Principal,
        input: O::Input,
    ) -> Result<Outcome<O::Output>> {
        Ok(self.call_keeping_key::<O>(principal, input).await?.0)
    }

    /// [`Engine::call`], also returning the private key the operation
    /// generated on the server, if any. Only EST `serverkeygen` uses it
    /// (through [`Engine::enroll_with_server_key`]): the key is in the
    /// enrollment's response once, and stored sealed for PKCS#12 export.
    pub(crate) async fn call_keeping_key<O: Operation>(
        &self,
        principal: &Principal,
        input: O::Input,
    ) -> Result<(Outcome<O::Output>, Option<zeroize::Zeroizing<String>>)> {
        // The operation's facts as this input sees them: an operation over
        // several kinds names the kind it touches and may need more of the role.
        let meta = &crate::ops::OpMeta {
            permission: O::permission(&input),
            resource: O::resource(&input),
            ..O::META
        };
        let now = self.clock.now();
        self.authorize_call(principal, meta, now).await?;
        let mut memo = crate::ops::Memo::default();
        // Checks and work before the transaction; a failure is audited alike.
        let early = match O::prepare(&input, &mut memo) {
            Ok(()) => O::outside_tx(self, &input, &mut memo).await,
            Err(e) => Err(e),
        };
        if let Err(e) = early {
            self.audit_failure(
                principal,
                meta,
                None,
                Default::default(),
                &e,
                None,
                now,
                Vec::new(),
            )
            .await?;
            return Err(e);
        }
        // Held until the call's transaction ends (see `call_slots`).
        let slot = self.call_slot().await?;
        let mut tx = if meta.risk == Risk::Read {
            self.store.begin_read().await?
        } else {
            self.store.begin_write().await?
        };
        let mut ctx = Ctx {
            engine: self,
            principal,
            tx: &mut tx,
            now,
            audit_details: serde_json::Map::new(),
            audit_resource_id: None,
            followup: None,
            refusals: Vec::new(),
            operation: meta.name,
            memo,
        };
        let result = run_gated::<O>(&mut ctx, input).await;
        let server_key = ctx.memo.server_key.take();
        let followup = ctx.followup.take();
        let refusals = std::mem::take(&mut ctx.refusals);
        let details = std::mem::take(&mut ctx.audit_details);
        let resource_id = ctx.audit_resource_id.take();
        match result {
            Ok(Step::Done(output, subject)) => {
                let resource_id = resource_id.or(subject.resource_id);
                // Reads commit their snapshot first and audit through the
                // group commit (their event is written before the call
                // returns, batched with concurrent reads'); writes audit in
                // their own transaction.
                if meta.risk == Risk::Read {
                    tx.commit().await?;
                    // The call's transaction has ended: its slot goes back
                    // before the audit wait, so more reads than slots can
                    // share one group commit (the leader writes on a
                    // connection of its own, not on a slot).
                    drop(slot);
                    let event = self.event(
                        principal,
                        meta.name,
                        meta.resource,
                        resource_id,
                        AuditOutcome::Success,
                        details,
                        now,
                    );
                    self.append_read_audit(event).await?;
                    return Ok((Outcome::Completed { result: output }, server_key));
                }
                let mut w = tx;
                self.append(
                    &mut w,
                    principal,
                    meta.name,
                    meta.resource,
                    resource_id,
                    AuditOutcome::Success,
                    details,
                    now,
                )
                .await?;
                w.commit().await?;
                drop(slot);
                // Work the operation left for after its commit (the chunks
                // of a bulk operation, each with its own transaction).
                let output = O::after_commit(self, output).await;
                Ok((Outcome::Completed { result: output }, server_key))
            }
            Ok(Step::Gated(ticket)) => {
                tx.commit().await?;
                Ok((Outcome::ApprovalRequired(ticket), None))
            }
            Err(e) => {
                drop(tx);
                self.audit_failure(
                    principal,
                    meta,
                    resource_id,
                    details,
                    &e,
                    followup,
                    now,
                    refusals,
                )
                .await?;
                Err(e)
            }
        }
    }

    /// A slot for a transaction (see `call_slots`): held by engine work that
    /// runs its own transactions outside [`Engine::call`] (bulk chunks).
    pub(crate) async fn call_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.call_slots
            .acquire()
            .await
            .map_err(|_| crate::Error::internal("the engine is shutting down"))
    }

    /// Runs one operation for many inputs in one write transaction, each
    /// through the same steps as [`Engine::call`]: the principal is
    /// authorized, every input passes the approval gate (a gated one stores
    /// its approval and changes nothing else), executes, and gets its own
    /// audit event. One commit instead of one per input is what makes the
    /// scheduler's renewal check cheap at a large fleet.
    ///
    /// All or nothing: when an input fails, the transaction is rolled back
    /// and the answer names that input and its error (nothing of the batch
    /// is kept or audited); the caller runs it alone through
    /// [`Engine::call`], which audits the failure, and retries the rest.
    /// Operations that reach outside certctl (`outside_tx`) are not batched.
    pub(crate) async fn call_batch<O: Operation>(
        &self,
        principal: &Principal,
        inputs: Vec<O::Input>,
    ) -> Result<std::result::Result<Vec<Outcome<O::Output>>, (usize, Error)>> {
        let meta = &O::META;
        if meta.risk == Risk::Read {
            return Err(Error::internal("read operations are not batched"));
        }
        let now = self.clock.now();
        self.authorize_call(principal, meta, now).await?;
        let mut prepared = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let mut memo = crate::ops::Memo::default();
            if let Err(e) = O::prepare(&input, &mut memo) {
                return Ok(Err((i, e)));
            }
            prepared.push((input, memo));
        }
        let _slot = self.call_slot().await?;
        let mut tx = self.store.begin_write().await?;
        let mut outcomes = Vec::with_capacity(prepared.len());
        for (i, (input, memo)) in prepared.into_iter().enumerate() {
            if let Err(e) = authorize(principal, O::permission(&input)) {
                return Ok(Err((i, e)));
            }
            let resource = O::resource(&input);
            let mut ctx = Ctx {
                engine: self,
                principal,
                tx: &mut tx,
                now,
                audit_details: serde_json::Map::new(),
                audit_resource_id: None,
                followup: None,
                refusals: Vec::new(),
                operation: meta.name,
                memo,
            };
            match run_gated::<O>(&mut ctx, input).await {
                Ok(Step::Done(output, subject)) => {
                    let resource_id = ctx.audit_resource_id.take().or(subject.resource_id);
                    let details = std::mem::take(&mut ctx.audit_details);
                    self.append(
                        ctx.tx,
                        principal,
                        meta.name,
                        resource,
                        resource_id,
                        AuditOutcome::Success,
                        details,
                        now,
                    )
                    .await?;
                    outcomes.push(Outcome::Completed { result: output });
                }
                Ok(Step::Gated(ticket)) => outcomes.push(Outcome::ApprovalRequired(ticket)),
                // Dropping the transaction rolls the whole batch back.
                Err(e) => return Ok(Err((i, e))),
            }
        }
        tx.commit().await?;
        Ok(Ok(outcomes))
    }

    /// Checks the principal's role against an operation's permission and
    /// audits a refusal. Faces that parse input themselves call it first, so
    /// a caller without the role learns nothing about the input's shape.
    pub(crate) async fn authorize_call(
        &self,
        principal: &Principal,
        meta: &crate::ops::OpMeta,
        now: UnixTime,
    ) -> Result<()> {
        let checked = authorize(principal, meta.permission)
            .and_then(|()| crate::auth::check_client_certificate_scope(principal, meta.name));
        if let Err(e) = checked {
            self.audit_refusal(principal, meta.name, meta.resource, None, &e, now)
                .await?;
            return Err(e);
        }
        Ok(())
    }

    /// Confirms the caller's own pending request in chat (an MCP client asked
    /// the human and they accepted). Allowed only where the approval policy
    /// permits in-chat confirmation for the operation's risk class and the
    /// gate was not a profile's four-eyes requirement.
    pub async fn confirm_in_chat(
        &self,
        principal: &Principal,
        approval_id: &str,
    ) -> Result<Outcome<crate::ops::DecisionOutput>> {
        let input = crate::ops::ApproveRequestInput {
            approval_id: approval_id.to_owned(),
            note: Some("confirmed in chat".into()),
            in_chat: true,
        };
        self.call::<crate::ops::ApproveRequest>(principal, input)
            .await
    }

    #[allow(clippy::too_many_arguments)] // the audit event's columns, spelled out
    pub(crate) async fn append(
        &self,
        tx: &mut Tx,
        principal: &Principal,
        action: &str,
        resource_type: &str,
        resource_id: Option<String>,
        outcome: AuditOutcome,
        details: serde_json::Map<String, serde_json::Value>,
        now: UnixTime,
    ) -> Result<()> {
        let event = self.event(
            principal,
            action,
            resource_type,
            resource_id,
            outcome,
            details,
            now,
        );
        tx.append_audit(&event).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the audit event's columns, spelled out
    pub(crate) fn event(
        &self,
        principal: &Principal,
        action: &str,
        resource_type: &str,
        resource_id: Option<String>,
        outcome: AuditOutcome,
        details: serde_json::Map<String, serde_json::Value>,
        now: UnixTime,
    ) -> NewAuditEvent {
        NewAuditEvent {
            id: crate::ids::new_id("ev", self.clock()),
            at: now,
            actor: principal.id.clone(),
            actor_role: principal.role.as_str().to_owned(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id,
            outcome,
            details: serde_json::Value::Object(details),
        }
    }

    async fn audit_refusal(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        resource_id: Option<String>,
        e: &Error,
        now: UnixTime,
    ) -> Result<()> {
        let mut details = serde_json::Map::new();
        details.insert("error".into(), e.to_string().into());
        let mut tx = self.store.begin_write().await?;
        self.append(
            &mut tx,
            principal,
            action,
            resource,
            resource_id,
            AuditOutcome::Denied,
            details,
            now,
        )
        .await?;
        tx.commit().await
    }

    #[allow(clippy::too_many_arguments)] // everything the failure event records
    async fn audit_failure(
        &self,
        principal: &Principal,
        meta: &crate::ops::OpMeta,
        resource_id: Option<String>,
        mut details: serde_json::Map<String, serde_json::Value>,
        e: &Error,
        followup: Option<Followup>,
        now: UnixTime,
        refusals: Vec<crate::domain::PolicyViolation>,
    ) -> Result<()> {
        let outcome = match e {
            Error::Forbidden(_) | Error::Unauthenticated => AuditOutcome::Denied,
            _ => AuditOutcome::Failure,
        };
        details.insert("error".into(), e.to_string().into());
        details.insert("error_code".into(), e.code().into());
        let mut tx = self.store.begin_write().await?;
        // The attempt an enforce-mode policy refused is kept: its violations
        // (and their notifications) commit with the failure's audit event.
        if !refusals.is_empty() {
            let ids: Vec<serde_json::Value> =
                refusals.iter().map(|v| v.id.clone().into()).collect();
            details.insert("policy_violations".into(), ids.into());
        }
        for v in &refusals {
            crate::policy::record(&mut tx, v).await?;
        }
        if let Some(Followup::ApprovalFailed { approval_id, error }) = followup {
            let result = serde_json::json!({ "error": error });
            if tx
                .decide_approval(
                    &approval_id,
                    ApprovalStatus::Failed,
                    &principal.id,
                    None,
                    Some(&result),
                    now,
                )
                .await?
            {
                self.append(
                    &mut tx,
                    principal,
                    "approval.failed",
                    "approval",
                    Some(approval_id),
                    AuditOutcome::Failure,
                    serde_json::Map::from_iter([("error".to_owned(), error.into())]),
                    now,
                )
                .await?;
            }
        }
        self.append(
            &mut tx,
            principal,
            meta.name,
            meta.resource,
            resource_id,
            outcome,
            details,
            now,
        )
        .await?;
        tx.commit().await
    }
}

enum Step<T> {
    Done(T, Subject),
    Gated(ApprovalTicket),
}

/// Checks the principal's role against the permission an operation needs.
pub(crate) fn authorize(principal: &Principal, permission: Permission) -> Result<()> {
    if principal.role.allows(permission) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "role '{}' may not perform this operation (needs {:?} permission)",
            principal.role.as_str(),
            permission
        )))
    }
}

async fn run_gated<O: Operation>(ctx: &mut Ctx<'_>, input: O::Input) -> Result<Step<O::Output>> {
    let meta = &crate::ops::OpMeta {
        resource: O::resource(&input),
        ..O::META
    };
    let subject = O::describe(ctx, &input).await?;
    let gate = if !meta.gateable || O::changes_nothing(&input) {
        None
    } else if subject.profile_requires_approval {
        Some(GateReason::Profile)
    } else if let Some(reason) = subject.four_eyes {
        Some(reason)
    } else if ctx.engine.config().approvals.gates(meta.risk) {
        Some(GateReason::Risk)
    } else {
        None
    };
    let Some(reason) = gate else {
        let out = O::execute(ctx, input).await?;
        return Ok(Step::Done(out, subject));
    };
    let input_json = serde_json::to_value(&input).map_err(|e| Error::internal(e.to_string()))?;
    let input_text = zeroize::Zeroizing::new(input_json.to_string());
    // Keyed, so the hash of an input holding a low-entropy secret cannot be
    // guessed offline by someone who reads the table.
    let hash_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &ctx.engine.derive_secret("approval-input-hash"),
    );
    let input_hash = hex::encode(aws_lc_rs::hmac::sign(&hash_key, input_text.as_bytes()));
    let policy = &ctx.engine.config().approvals;
    // Readers of the approval see the input with its secrets sealed.
    let (shown_input, has_secret) =
        crate::ops::approval_secrets::redact(meta.name, &input_json, false);
    let approval = Approval {
        id: ctx.new_id("ap"),
        operation: meta.name.to_owned(),
        input: shown_input,
        summary: subject.summary.clone(),
        risk: meta.risk,
        gate_reason: reason,
        resource_type: meta.resource.to_owned(),
        resource_id: subject.resource_id.clone(),
        requested_by: ctx.principal.id.clone(),
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at: None,
        decision_note: None,
        result: None,
        created_at: ctx.now,
        expires_at: ctx.now + policy.ttl_seconds,
    };
    let input_sealed = if has_secret {
        Some(crate::ops::approval_secrets::seal(
            ctx.engine,
            "input",
            &approval.id,
            &input_json,
        )?)
    } else {
        None
    };
    ctx.tx
        .insert_approval(
            &approval,
            &input_hash,
            &subject.bound,
            input_sealed.as_deref(),
        )
        .await?;
    crate::notify::approval_requested(ctx.tx, ctx.now, &approval).await?;
    let in_chat = reason == GateReason::Risk && policy.allows_in_chat(meta.risk);
    let mut details = serde_json::Map::new();
    details.insert("approval_id".into(), approval.id.clone().into());
    details.insert("summary".into(), approval.summary.clone().into());
    details.insert("gate_reason".into(), reason.as_str().into());
    ctx.engine
        .append(
            ctx.tx,
            ctx.principal,
            meta.name,
            meta.resource,
            subject.resource_id.clone(),
            AuditOutcome::ApprovalRequired,
            details,
            ctx.now,
        )
        .await?;
    Ok(Step::Gated(ApprovalTicket {
        how_to_decide: format!(
            "a principal with the approver or admin role other than {} approves with \
             `certctl approvals approve {}` or POST /api/v1/approvals/{}/approve{}",
            ctx.principal.id,
            approval.id,
            approval.id,
            if in_chat {
                "; the requester may also confirm it in chat"
            } else {
                ""
            }
        ),
        approval_id: approval.id,
        operation: approval.operation,
        summary: approval.summary,
        expires_at: approval.expires_at,
        in_chat_confirmation_allowed: in_chat,
    }))
}
