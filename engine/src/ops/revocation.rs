//! Revocation: one certificate, or many chosen by a filter, with an RFC 5280
//! reason. Both are destructive and pass the approval gate. Each revocation
//! records the certificate's pre-encoded CRL entry (so CRLs are rebuilt by
//! concatenation) and tells the CRL/OCSP caches at once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificates::load;
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{EffectiveStatus, ManagedCertificate, Permission, RevocationReason};
use crate::error::{Error, Result};
use crate::pki::crl::encode_entry;
use crate::store::{CertificateFilter, NewRevocation};

/// Most certificates one bulk revocation may revoke.
pub const MAX_BULK_REVOCATIONS: i64 = 10_000;

fn unspecified() -> RevocationReason {
    RevocationReason::Unspecified
}

// ---------------------------------------------------------------- one

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificateInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
    /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
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
        description: "Revoke a certificate's current version with an RFC 5280 reason so relying parties stop trusting it (CRL and OCSP); cannot be undone and normally needs approval.",
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
    let (Some(version_id), Some(serial), Some(not_after)) =
        (c.current_version_id.clone(), c.serial.clone(), c.not_after)
    else {
        return Err(Error::internal("active certificate without a version"));
    };
    ctx.tx
        .revoke_current(&c.id, &version_id, reason, ctx.now)
        .await?;
    ctx.tx
        .insert_revocation(&NewRevocation {
            issuer_id: c.issuer_id.clone(),
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
        .revoked(&c.issuer_id, &serial, ctx.now);
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
}

pub struct BulkRevokeCertificates;

impl BulkRevokeCertificates {
    async fn candidates(ctx: &mut Ctx<'_>, input: &BulkRevokeInput) -> Result<Vec<String>> {
        if input.filter == CertificateFilter::default() && input.ids.is_empty() {
            return Err(Error::invalid(
                "give a filter or ids: a bulk revocation never applies to every certificate",
            ));
        }
        let limit = input.limit.unwrap_or(MAX_BULK_REVOCATIONS);
        if !(1..=MAX_BULK_REVOCATIONS).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit must be 1 to {MAX_BULK_REVOCATIONS}"
            )));
        }
        let view = ctx.engine.status_view(ctx.now);
        if input.ids.is_empty() {
            return ctx
                .tx
                .certificate_ids_matching(&input.filter, view, limit)
                .await;
        }
        if input.ids.len() as i64 > limit {
            return Err(Error::invalid(format!(
                "{} ids given, more than the limit of {limit}",
                input.ids.len()
            )));
        }
        // Explicit ids must also match the filter when one is given.
        if input.filter == CertificateFilter::default() {
            return Ok(input.ids.clone());
        }
        let matching: std::collections::HashSet<String> = ctx
            .tx
            .certificate_ids_matching(&input.filter, view, MAX_BULK_REVOCATIONS)
            .await?
            .into_iter()
            .collect();
        Ok(input
            .ids
            .iter()
            .filter(|id| matching.contains(*id))
            .cloned()
            .collect())
    }
}

impl Operation for BulkRevokeCertificates {
    type Input = BulkRevokeInput;
    type Output = BulkRevokeOutput;
    const META: OpMeta = OpMeta {
        name: "bulk_revoke_certificates",
        title: "Revoke many certificates",
        description: "Revoke every certificate matching a filter or list of ids (for a key compromise or a decommissioned team) with one RFC 5280 reason; already-revoked and short-lived ones are skipped and listed; needs approval.",
        risk: Risk::Destructive,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let ids = Self::candidates(ctx, input).await?;
        let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
        Ok(Subject {
            resource_id: None,
            summary: format!(
                "Revoke {} certificate(s) with reason {}: {}{}",
                ids.len(),
                input.reason.as_str(),
                shown.join(", "),
                if ids.len() > shown.len() { ", ..." } else { "" }
            ),
            profile_requires_approval: false,
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let ids = Self::candidates(ctx, &input).await?;
        let view = ctx.engine.status_view(ctx.now);
        let mut out = BulkRevokeOutput {
            revoked: Vec::new(),
            skipped: Vec::new(),
        };
        for id in ids {
            let Some(c) = ctx.tx.certificate(&id, view).await? else {
                out.skipped.push(SkippedRevocation {
                    reason: format!("certificate {id} not found"),
                    id,
                });
                continue;
            };
            match revoke(ctx, &c, input.reason).await {
                Ok(()) => out.revoked.push(id),
                Err(e @ (Error::Conflict(_) | Error::PolicyViolation(_))) => {
                    out.skipped.push(SkippedRevocation {
                        id,
                        reason: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        ctx.note("reason", input.reason.as_str());
        ctx.note("revoked", out.revoked.len());
        ctx.note("skipped", out.skipped.len());
        Ok(out)
    }
}
