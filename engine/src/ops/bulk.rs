//! Bulk renew and reassign (bulk revoke lives with revocation), and the
//! records every bulk operation leaves. Each bulk call is one operation: one
//! approval covers the whole batch, which then runs in committed chunks
//! (`bulk_run.rs`) with its progress and a result per certificate in its
//! record; the call answers once it completed. `dry_run: true` lists what
//! would change, changes nothing and is not gated.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificates::{RenewCertificateInput, check_refs, renew};
use super::{Ctx, Subject};
use crate::domain::{BulkItem, BulkItemOutcome, BulkKind, EffectiveStatus};
use crate::error::{Error, Result};
use crate::store::{CertificateFilter, CertificatePatch};

/// Most certificates one bulk operation may change.
pub const MAX_BULK: i64 = 10_000;

/// The certificates a bulk call applies to: ids matching the filter, or the
/// explicit ids (which must also match the filter when one is given).
pub(crate) async fn select(
    ctx: &mut Ctx<'_>,
    filter: &CertificateFilter,
    ids: &[String],
    limit: Option<i64>,
) -> Result<Vec<String>> {
    if *filter == CertificateFilter::default() && ids.is_empty() {
        return Err(Error::invalid(
            "give a filter or ids: a bulk operation never applies to every certificate",
        ));
    }
    let limit = limit.unwrap_or(MAX_BULK);
    if !(1..=MAX_BULK).contains(&limit) {
        return Err(Error::invalid(format!("limit must be 1 to {MAX_BULK}")));
    }
    let view = ctx.engine.status_view(ctx.now);
    if ids.is_empty() {
        return ctx.tx.certificate_ids_matching(filter, view, limit).await;
    }
    if ids.len() as i64 > limit {
        return Err(Error::invalid(format!(
            "{} ids given, more than the limit of {limit}",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = ids.iter().filter(|i| seen.insert(*i)).cloned().collect();
    if *filter == CertificateFilter::default() {
        return Ok(unique);
    }
    let matching: std::collections::HashSet<String> = ctx
        .tx
        .certificate_ids_matching(filter, view, MAX_BULK)
        .await?
        .into_iter()
        .collect();
    Ok(unique
        .into_iter()
        .filter(|id| matching.contains(id))
        .collect())
}

/// The selected certificates as an approval of the batch binds them, and
/// the gates their own calls would meet.
pub(crate) struct Selection {
    /// Each id with the version it has now, its profile and issuer.
    pub facts: Vec<String>,
    /// Ids whose profile requires approval for issuance, with the profile.
    pub profile_gated: Vec<(String, String)>,
}

/// Reads what an approval of a bulk call over `ids` is bound to.
pub(crate) async fn selection(ctx: &mut Ctx<'_>, ids: &[String]) -> Result<Selection> {
    let view = ctx.engine.status_view(ctx.now);
    let mut strict: std::collections::HashMap<String, bool> = Default::default();
    let mut out = Selection {
        facts: Vec::with_capacity(ids.len()),
        profile_gated: Vec::new(),
    };
    for id in ids {
        let Some(c) = ctx.tx.certificate(id, view).await? else {
            out.facts.push(format!("{id}@missing"));
            continue;
        };
        out.facts.push(format!(
            "{id}@{} profile {} issuer {}",
            c.current_version_id.as_deref().unwrap_or("none"),
            c.profile_id,
            c.issuer_id
        ));
        let requires = match strict.get(&c.profile_id) {
            Some(r) => *r,
            None => {
                let r = ctx
                    .tx
                    .profile(&c.profile_id)
                    .await?
                    .is_some_and(|p| p.requires_approval);
                strict.insert(c.profile_id.clone(), r);
                r
            }
        };
        if requires {
            out.profile_gated.push((c.id, c.profile_id));
        }
    }
    Ok(out)
}

/// A subject line naming how many certificates and the first few.
pub(crate) fn summary(verb: &str, ids: &[String], dry_run: bool) -> String {
    let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
    format!(
        "{}{verb} {} certificate(s): {}{}",
        if dry_run { "Dry run: " } else { "" },
        ids.len(),
        shown.join(", "),
        if ids.len() > shown.len() { ", ..." } else { "" }
    )
}

/// What a bulk call answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BulkOutput {
    /// The record of this run (get_object, kind bulk_operation); absent for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_operation_id: Option<String>,
    pub dry_run: bool,
    /// Certificates selected.
    pub total: i64,
    /// Changed (or, in a dry run, that would change).
    pub succeeded: i64,
    pub skipped: i64,
    /// One result per certificate, in selection order.
    pub items: Vec<BulkItem>,
}

fn output(id: Option<String>, dry_run: bool, items: Vec<BulkItem>) -> BulkOutput {
    let succeeded = items
        .iter()
        .filter(|i| i.outcome != BulkItemOutcome::Skipped)
        .count() as i64;
    BulkOutput {
        bulk_operation_id: id,
        dry_run,
        total: items.len() as i64,
        succeeded,
        skipped: items.len() as i64 - succeeded,
        items,
    }
}

/// Stores a run's record and answers with it, before its chunks run
/// (`finish_items` fills in the results once the call committed).
async fn started(
    ctx: &mut Ctx<'_>,
    kind: BulkKind,
    request: serde_json::Value,
    ids: Vec<String>,
) -> Result<BulkOutput> {
    let total = ids.len() as i64;
    let id = super::bulk_run::start(ctx, kind, request, ids).await?;
    Ok(BulkOutput {
        bulk_operation_id: Some(id),
        dry_run: false,
        total,
        succeeded: 0,
        skipped: 0,
        items: Vec::new(),
    })
}

fn skipped(id: String, why: String) -> BulkItem {
    BulkItem {
        id,
        outcome: BulkItemOutcome::Skipped,
        detail: Some(why),
    }
}

/// Errors that skip one certificate of a batch instead of failing it all.
fn skips(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict(_)
            | Error::PolicyViolation(_)
            | Error::InvalidInput(_)
            | Error::NotFound { .. }
    )
}

/// Stores the violations of an enforce rule that refused one item: the batch
/// commits, so they are written with it.
async fn keep_refusals(ctx: &mut Ctx<'_>) -> Result<()> {
    for v in std::mem::take(&mut ctx.refusals) {
        crate::policy::record(ctx.tx, &v).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- renew

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRenewInput {
    /// Which certificates: the same filters as list_certificates.
    #[serde(default)]
    pub filter: CertificateFilter,
    /// Explicit certificate ids; combined with `filter` (both must match).
    #[serde(default)]
    pub ids: Vec<String>,
    /// At most this many certificates (default and maximum 10000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// List what would be renewed without renewing anything (not gated).
    #[serde(default)]
    pub dry_run: bool,
}

/// One of `bulk_certificates`' actions (see `bulk_certificates.rs`).
pub(crate) struct BulkRenew;

impl BulkRenew {
    pub(crate) async fn describe(ctx: &mut Ctx<'_>, input: &BulkRenewInput) -> Result<Subject> {
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        // Each renewal meets its own gate: one under a profile that requires
        // approval makes the whole batch need another approver.
        let sel = selection(ctx, &ids).await?;
        let mut summary = summary("Renew", &ids, input.dry_run);
        if !sel.profile_gated.is_empty() {
            summary.push_str(&format!(
                "; {} of them under a profile that requires approval by another approver",
                sel.profile_gated.len()
            ));
        }
        Ok(Subject {
            resource_id: None,
            summary,
            profile_requires_approval: !sel.profile_gated.is_empty(),
            four_eyes: None,
            bound: sel.facts,
        })
    }

    pub(crate) async fn execute(ctx: &mut Ctx<'_>, input: BulkRenewInput) -> Result<BulkOutput> {
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        if !input.dry_run {
            let request =
                serde_json::to_value(&input).map_err(|e| Error::internal(e.to_string()))?;
            return started(ctx, BulkKind::Renew, request, ids).await;
        }
        let view = ctx.engine.status_view(ctx.now);
        let gated: std::collections::HashMap<String, String> = selection(ctx, &ids)
            .await?
            .profile_gated
            .into_iter()
            .collect();
        let risk_gated = ctx
            .engine
            .config()
            .approvals
            .gates(<super::BulkCertificates as super::Operation>::META.risk);
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let item = match ctx.tx.certificate(&id, view).await? {
                None => skipped(id.clone(), format!("certificate {id} not found")),
                Some(c)
                    if matches!(
                        c.status,
                        EffectiveStatus::Archived | EffectiveStatus::Pending
                    ) =>
                {
                    skipped(
                        id,
                        format!(
                            "it is {}; only issued certificates are renewed",
                            c.status.as_str()
                        ),
                    )
                }
                Some(_) => BulkItem {
                    detail: match gated.get(&id) {
                        Some(p) => Some(format!(
                            "needs approval by another approver: profile {p} requires it"
                        )),
                        None if risk_gated => {
                            Some("needs approval: the batch is gated as destructive".into())
                        }
                        None => None,
                    },
                    id,
                    outcome: BulkItemOutcome::WouldChange,
                },
            };
            items.push(item);
        }
        Ok(output(None, true, items))
    }
}

/// After a renewal or reassignment committed: runs its chunks and answers
/// with every per-item result.
pub(crate) async fn finish_items(engine: &crate::Engine, out: BulkOutput) -> BulkOutput {
    match &out.bulk_operation_id {
        Some(id) => match super::bulk_run::finish(engine, id).await {
            Some(b) => super::bulk_run::bulk_output(b),
            None => out,
        },
        None => out,
    }
}

/// One certificate of a bulk renewal, through the same rules as
/// renew_certificate; refusals skip it with the reason.
pub(crate) async fn renew_item(ctx: &mut Ctx<'_>, id: String) -> Result<BulkItem> {
    let one = RenewCertificateInput {
        id: id.clone(),
        csr_pem: None,
    };
    match renew(ctx, one).await {
        Ok(out) => Ok(BulkItem {
            id,
            outcome: BulkItemOutcome::Done,
            detail: Some(match out.version {
                Some(v) => format!("issued serial {}", v.serial),
                None => format!("job {} ({})", out.job.id, out.job.status.as_str()),
            }),
        }),
        Err(e) if skips(&e) => {
            keep_refusals(ctx).await?;
            Ok(skipped(id, e.to_string()))
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- reassign

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReassignInput {
    /// Which certificates: the same filters as list_certificates.
    #[serde(default)]
    pub filter: CertificateFilter,
    /// Explicit certificate ids; combined with `filter` (both must match).
    #[serde(default)]
    pub ids: Vec<String>,
    /// At most this many certificates (default and maximum 10000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// The new owner; an empty string clears it; omit to keep each one's.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// The new team; an empty string clears it; omit to keep each one's.
    #[serde(default)]
    pub team_id: Option<String>,
    /// List what would be reassigned without changing anything (not gated).
    #[serde(default)]
    pub dry_run: bool,
}

/// One of `bulk_certificates`' actions (see `bulk_certificates.rs`).
pub(crate) struct BulkReassign;

impl BulkReassign {
    pub(crate) async fn describe(ctx: &mut Ctx<'_>, input: &BulkReassignInput) -> Result<Subject> {
        if input.owner_id.is_none() && input.team_id.is_none() {
            return Err(Error::invalid("give owner_id, team_id or both"));
        }
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        let to = [
            input.owner_id.as_deref().map(|o| format!("owner '{o}'")),
            input.team_id.as_deref().map(|t| format!("team '{t}'")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ");
        let bound = selection(ctx, &ids).await?.facts;
        Ok(Subject {
            resource_id: None,
            summary: format!("{} to {to}", summary("Reassign", &ids, input.dry_run)),
            profile_requires_approval: false,
            four_eyes: None,
            bound,
        })
    }

    pub(crate) async fn execute(ctx: &mut Ctx<'_>, input: BulkReassignInput) -> Result<BulkOutput> {
        let request = serde_json::to_value(&input).map_err(|e| Error::internal(e.to_string()))?;
        let (owner, team) = reassign_targets(&request)?;
        check_refs(
            ctx,
            owner.clone().flatten().as_deref(),
            team.clone().flatten().as_deref(),
            None,
        )
        .await?;
        let ids = select(ctx, &input.filter, &input.ids, input.limit).await?;
        if !input.dry_run {
            return started(ctx, BulkKind::Reassign, request, ids).await;
        }
        let view = ctx.engine.status_view(ctx.now);
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(c) = ctx.tx.certificate(&id, view).await? else {
                items.push(skipped(id.clone(), format!("certificate {id} not found")));
                continue;
            };
            let same_owner = owner.as_ref().is_none_or(|o| *o == c.owner_id);
            let same_team = team.as_ref().is_none_or(|t| *t == c.team_id);
            items.push(if same_owner && same_team {
                skipped(id, "already assigned so".into())
            } else {
                BulkItem {
                    id,
                    outcome: BulkItemOutcome::WouldChange,
                    detail: None,
                }
            });
        }
        Ok(output(None, true, items))
    }
}

/// The new owner and team of a reassignment request: `None` keeps each
/// certificate's, `Some(None)` clears it.
#[allow(clippy::type_complexity)] // the two optional changes, spelled out
pub(crate) fn reassign_targets(
    request: &serde_json::Value,
) -> Result<(Option<Option<String>>, Option<Option<String>>)> {
    let input: BulkReassignInput = super::registry::parse_input(request.clone())?;
    if input.owner_id.is_none() && input.team_id.is_none() {
        return Err(Error::invalid("give owner_id, team_id or both"));
    }
    let clear_empty = |s: String| if s.is_empty() { None } else { Some(s) };
    Ok((
        input.owner_id.map(clear_empty),
        input.team_id.map(clear_empty),
    ))
}

/// One certificate of a bulk reassignment: skipped when it already has the
/// owner and team or a metadata rule refuses the change.
pub(crate) async fn reassign_item(
    ctx: &mut Ctx<'_>,
    id: String,
    owner: &Option<Option<String>>,
    team: &Option<Option<String>>,
) -> Result<BulkItem> {
    let view = ctx.engine.status_view(ctx.now);
    let Some(mut c) = ctx.tx.certificate(&id, view).await? else {
        return Ok(skipped(id.clone(), format!("certificate {id} not found")));
    };
    let same_owner = owner.as_ref().is_none_or(|o| *o == c.owner_id);
    let same_team = team.as_ref().is_none_or(|t| *t == c.team_id);
    if same_owner && same_team {
        return Ok(skipped(id, "already assigned so".into()));
    }
    if let Some(o) = owner {
        c.owner_id = o.clone();
    }
    if let Some(t) = team {
        c.team_id = t.clone();
    }
    // The metadata rules, before anything is written for this one.
    let candidate = crate::policy::candidate_of(ctx, &c, None, None).await?;
    if let Some(refused) = crate::policy::check_item(ctx, &candidate, true).await? {
        return Ok(skipped(id, refused));
    }
    let patch = CertificatePatch {
        owner_id: owner.clone(),
        team_id: team.clone(),
        ..Default::default()
    };
    ctx.tx.update_certificate(&id, &patch, ctx.now).await?;
    Ok(BulkItem {
        id,
        outcome: BulkItemOutcome::Done,
        detail: None,
    })
}

// ---------------------------------------------------------------- records

/// Most bulk operation records a list reads before paging.
pub(crate) const MAX_LISTED: i64 = 10_000;
