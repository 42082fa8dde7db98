//! Revocation: one certificate, or many chosen by a filter, with an RFC 5280
//! reason. Both are destructive and pass the approval gate. Each revocation
//! records the certificate's pre-encoded CRL entry (so CRLs are rebuilt by
//! concatenation) and tells the CRL/OCSP caches at once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bulk::{select, summary};
use super::certificates::load;
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{
    BulkItem, BulkItemOutcome, BulkKind, EffectiveStatus, IssuerKind, Job, JobKind, JobStatus,
    ManagedCertificate, Permission, RevocationReason,
};
use crate::error::{Error, Result};
use crate::pki::crl::encode_entry;
use crate::store::{CertificateFilter, NewRevocation};

/// Most certificates one bulk revocation may revoke.
pub const MAX_BULK_REVOCATIONS: i64 = super::bulk::MAX_BULK;

fn unspecified() -> RevocationReason {
    RevocationReason::Unspecified
}

// ---------------------------------------------------------------- one

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificateInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// The RFC 5280 reason.
    #[serde(default = "unspecified")]
    pub reason: RevocationReason,
}

pub struct RevokeCertificate;

impl Operation for RevokeCertificate {
    type Input = RevokeCertificateInput;
    type Output = ManagedCertificate;
    const META: OpMeta = OpMeta {
        name: "revoke_certificate",
        title: "Revoke a certificate",
        description: "Revoke a certificate's current version with an RFC 5280 reason so relying parties stop trusting it (CRL and OCSP); cannot be undone.",
        risk: Risk::Destructive,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let c = load(ctx, &input.id).await?;
        let targets = ctx.tx.certificate_targets(&c.id).await?;
        let deployed = if targets.is_empty() {
            "it is not deployed to any target".to_owned()
        } else {
            format!(
                "it is deployed to {}",
                targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(Subject {
            resource_id: Some(c.id.clone()),
            summary: format!(
                "Revoke certificate {} ({}, serial {}) with reason {}; {deployed}",
                c.id,
                c.common_name,
                c.serial.as_deref().unwrap_or("none"),
                input.reason.as_str()
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound: super::certificates::facts(&c),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let c = load(ctx, &input.id).await?;
        revoke(ctx, &c, input.reason).await?;
        ctx.note("reason", input.reason.as_str());
        ctx.note("serial", c.serial.clone().unwrap_or_default());
        load(ctx, &input.id).await
    }
}

/// Revokes `c`'s current version: checks it can be revoked, marks it, stores
/// its CRL entry and tells the caches.
async fn revoke(ctx: &mut Ctx<'_>, c: &ManagedCertificate, reason: RevocationReason) -> Result<()> {
    revocable(ctx, c).await?;
    let (Some(version_id), Some(serial), Some(not_after)) =
        (c.current_version_id.clone(), c.serial.clone(), c.not_after)
    else {
        return Err(Error::internal("active certificate without a version"));
    };
    revoke_version(ctx, c, reason, version_id, serial, not_after).await
}

/// Whether `c` can be revoked: issued, not revoked yet, not short-lived.
async fn revocable(ctx: &mut Ctx<'_>, c: &ManagedCertificate) -> Result<()> {
    match c.status {
        EffectiveStatus::Revoked => {
            return Err(Error::conflict(format!(
                "certificate {} is already revoked",
                c.id
            )));
        }
        EffectiveStatus::Pending | EffectiveStatus::Failed => {
            return Err(Error::conflict(format!(
                "certificate {} has never been issued; there is nothing to revoke",
                c.id
            )));
        }
        _ => {}
    }
    let profile = ctx.tx.profile(&c.profile_id).await?;
    if let Some(p) = profile.filter(|p| p.short_lived) {
        return Err(Error::policy(format!(
            "certificate {} uses short-lived profile '{}': it is not revoked, it expires at {}",
            c.id,
            p.name,
            c.not_after
                .map(crate::clock::to_rfc3339)
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// The writing part of [`revoke`], once [`revocable`] said yes.
async fn revoke_version(
    ctx: &mut Ctx<'_>,
    c: &ManagedCertificate,
    reason: RevocationReason,
    version_id: String,
    serial: String,
    not_after: crate::clock::UnixTime,
) -> Result<()> {
    // The CA that signed this version (not necessarily the certificate's
    // current issuer: an imported certificate may since have moved to one of
    // ours) is the one whose CRL and OCSP answers learn of it.
    let version = ctx
        .tx
        .version(&version_id)
        .await?
        .ok_or_else(|| Error::internal("current version not found"))?;
    let signer = ctx
        .tx
        .issuer(&version.issuer_id)
        .await?
        .ok_or_else(|| Error::internal("the version's issuer is missing"))?;
    ctx.tx
        .revoke_current(&c.id, &version_id, reason, ctx.now)
        .await?;
    match signer.issuer.kind {
        // An external CA learns of it through a job: it is not called inside
        // this transaction. certctl's own records say revoked from now on.
        IssuerKind::Acme | IssuerKind::Vault => {
            let job = Job {
                id: ctx.new_id("job"),
                kind: JobKind::Revocation,
                status: JobStatus::Pending,
                certificate_id: Some(c.id.clone()),
                target_id: None,
                agent_id: None,
                attempts: 0,
                max_attempts: 5,
                run_after: ctx.now,
                last_error: None,
                payload: serde_json::json!({
                    "requested_by": ctx.principal.id,
                    "issuer_id": version.issuer_id,
                    "version_id": version_id,
                    "cert_pem": version.cert_pem,
                    "reason": reason,
                }),
                created_at: ctx.now,
                updated_at: ctx.now,
            };
            ctx.tx.insert_job(&job).await?;
            ctx.note("ca_revocation_job_id", job.id.clone());
        }
        // An outside CA certctl does not manage is not told: record that.
        IssuerKind::External => ctx.note("outside_ca_not_told", version.issuer_id.clone()),
        _ => {}
    }
    ctx.tx
        .insert_revocation(&NewRevocation {
            issuer_id: version.issuer_id.clone(),
            crl_entry: encode_entry(&serial, ctx.now, reason)?,
            serial: serial.clone(),
            certificate_id: c.id.clone(),
            version_id,
            revoked_at: ctx.now,
            reason,
            not_after,
        })
        .await?;
    ctx.engine
        .revocation_caches()
        .revoked(&version.issuer_id, &serial, ctx.now);
    crate::notify::after_revoke(ctx, c, reason.as_str()).await?;
    Ok(())
}

// ---------------------------------------------------------------- bulk

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRevokeInput {
    /// Which certificates: the same filters as list_certificates (owner_id, team_id,
    /// issuer_id, profile_id, environment, common_name, status, expiry range...).
    #[serde(default)]
    pub filter: CertificateFilter,
    /// Explicit certificate ids; combined with `filter` (both must match).
    #[serde(default)]
    pub ids: Vec<String>,
    /// RFC 5280 reason for every certificate.
    #[serde(default = "unspecified")]
    pub reason: RevocationReason,
    /// At most this many certificates (default and maximum 10000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// List what would be revoked without revoking anything (not gated).
    #[serde(default)]
    pub dry_run: bool,
}

/// One certificate a bulk revocation did not revoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkippedRevocation {
    pub id: String,
    /// Why: already revoked, never issued, short-lived, not found.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BulkRevokeOutput {
    /// Ids of the certificates revoked.
    pub revoked: Vec<String>,
    pub skipped: Vec<SkippedRevocation>,
    /// Dry run: ids of the certificates that would be revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_revoke: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// The record of this run (get_object, kind bulk_operation); absent for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_operation_id: Option<String>,
}

/// One of `bulk_certificates`' actions (see `bulk_certificates.rs`).
pub(crate) struct BulkRevoke;

impl BulkRevoke {
    pub(crate) async fn describe(ctx: &mut Ctx<'_>, input: &BulkRevokeInput) -> Result<Subject> {
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        let bound = super::bulk::selection(ctx, &ids).await?.facts;
        Ok(Subject {
            resource_id: None,
            summary: format!(
                "{} with reason {}",
                summary("Revoke", &ids, input.dry_run),
                input.reason.as_str()
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound,
        })
    }

    pub(crate) async fn execute(
        ctx: &mut Ctx<'_>,
        input: BulkRevokeInput,
    ) -> Result<BulkRevokeOutput> {
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        ctx.note("reason", input.reason.as_str());
        ctx.note("dry_run", input.dry_run);
        let mut out = BulkRevokeOutput {
            revoked: Vec::new(),
            skipped: Vec::new(),
            would_revoke: Vec::new(),
            dry_run: input.dry_run,
            bulk_operation_id: None,
        };
        if !input.dry_run {
            // Revoked in chunks once this call committed (`bulk_run.rs`).
            let request =
                serde_json::to_value(&input).map_err(|e| Error::internal(e.to_string()))?;
            out.bulk_operation_id =
                Some(super::bulk_run::start(ctx, BulkKind::Revoke, request, ids).await?);
            return Ok(out);
        }
        let view = ctx.engine.status_view(ctx.now);
        for id in ids {
            let Some(c) = ctx.tx.certificate(&id, view).await? else {
                let reason = format!("certificate {id} not found");
                out.skipped.push(SkippedRevocation { reason, id });
                continue;
            };
            match revocable(ctx, &c).await {
                Ok(()) => out.would_revoke.push(id),
                Err(e @ (Error::Conflict(_) | Error::PolicyViolation(_))) => {
                    out.skipped.push(SkippedRevocation {
                        id,
                        reason: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        ctx.note("skipped", out.skipped.len());
        Ok(out)
    }

    pub(crate) async fn after_commit(
        engine: &crate::Engine,
        out: BulkRevokeOutput,
    ) -> BulkRevokeOutput {
        match &out.bulk_operation_id {
            Some(id) => match super::bulk_run::finish(engine, id).await {
                Some(b) => super::bulk_run::revoke_output(b),
                None => out,
            },
            None => out,
        }
    }
}

/// One certificate of a bulk revocation: revoked, or skipped with the
/// reason (not found, already revoked, never issued, short-lived).
pub(crate) async fn revoke_item(
    ctx: &mut Ctx<'_>,
    id: String,
    reason: RevocationReason,
) -> Result<BulkItem> {
    let view = ctx.engine.status_view(ctx.now);
    let Some(c) = ctx.tx.certificate(&id, view).await? else {
        return Ok(BulkItem {
            detail: Some(format!("certificate {id} not found")),
            id,
            outcome: BulkItemOutcome::Skipped,
        });
    };
    match revoke(ctx, &c, reason).await {
        Ok(()) => Ok(BulkItem {
            id,
            outcome: BulkItemOutcome::Done,
            detail: None,
        }),
        Err(e @ (Error::Conflict(_) | Error::PolicyViolation(_))) => Ok(BulkItem {
            id,
            outcome: BulkItemOutcome::Skipped,
            detail: Some(e.to_string()),
        }),
        Err(e) => Err(e),
    }
}
