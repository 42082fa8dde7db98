//! `bulk_certificates`: renew, revoke or reassign every certificate a filter
//! or a list of ids selects, as one operation with an `action`. The three
//! actions share their selection (filter, ids, limit, dry run), their one
//! approval for the whole batch and their committed chunks (`bulk_run.rs`);
//! each keeps its own rules (`BulkRenew`, `BulkRevoke`, `BulkReassign`).
//! The run's record stores the action's own input, as before the actions
//! were one operation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bulk::{
    BulkOutput, BulkReassign, BulkReassignInput, BulkRenew, BulkRenewInput, finish_items,
};
use super::revocation::{BulkRevoke, BulkRevokeInput, BulkRevokeOutput};
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{Permission, RevocationReason};
use crate::error::{Error, Result};
use crate::store::CertificateFilter;

/// What `bulk_certificates` does to each selected certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Server-generated keys are issued now; agent-keyed ones get a renewal job.
    Renew,
    /// With one RFC 5280 `reason`; already-revoked and short-lived ones are skipped.
    Revoke,
    /// A new `owner_id` and/or `team_id`.
    Reassign,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renew => "renew",
            Self::Revoke => "revoke",
            Self::Reassign => "reassign",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCertificatesInput {
    pub action: BulkAction,
    /// The same filters as list_certificates.
    #[serde(default)]
    pub filter: CertificateFilter,
    /// Explicit certificate ids; combined with `filter` (both must match).
    #[serde(default)]
    pub ids: Vec<String>,
    /// At most this many certificates (default and maximum 10000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// List what would change without changing anything (not gated).
    #[serde(default)]
    pub dry_run: bool,
    /// revoke: the RFC 5280 reason for every certificate (default unspecified).
    #[serde(default)]
    pub reason: Option<RevocationReason>,
    /// reassign: the new owner; "" clears it; omit to keep each one's.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// reassign: the new team; "" clears it; omit to keep each one's.
    #[serde(default)]
    pub team_id: Option<String>,
}

/// The input of one action, checked against the fields the others take.
enum Action {
    Renew(BulkRenewInput),
    Revoke(BulkRevokeInput),
    Reassign(BulkReassignInput),
}

impl BulkCertificatesInput {
    fn action(&self) -> Result<Action> {
        let i = self.clone();
        let only = |field: &str, set: bool, action: &str| {
            if set {
                Err(Error::invalid(format!(
                    "`{field}` applies to action {action} only"
                )))
            } else {
                Ok(())
            }
        };
        if i.action != BulkAction::Revoke {
            only("reason", i.reason.is_some(), "revoke")?;
        }
        if i.action != BulkAction::Reassign {
            only("owner_id", i.owner_id.is_some(), "reassign")?;
            only("team_id", i.team_id.is_some(), "reassign")?;
        }
        Ok(match i.action {
            BulkAction::Renew => Action::Renew(BulkRenewInput {
                filter: i.filter,
                ids: i.ids,
                limit: i.limit,
                dry_run: i.dry_run,
            }),
            BulkAction::Revoke => Action::Revoke(BulkRevokeInput {
                filter: i.filter,
                ids: i.ids,
                reason: i.reason.unwrap_or(RevocationReason::Unspecified),
                limit: i.limit,
                dry_run: i.dry_run,
            }),
            BulkAction::Reassign => Action::Reassign(BulkReassignInput {
                filter: i.filter,
                ids: i.ids,
                limit: i.limit,
                owner_id: i.owner_id,
                team_id: i.team_id,
                dry_run: i.dry_run,
            }),
        })
    }
}

/// What `bulk_certificates` answers: revocations list revoked and skipped
/// ids; renewals and reassignments give a result per certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum BulkCertificatesOutput {
    Revoke(BulkRevokeOutput),
    Items(BulkOutput),
}

pub struct BulkCertificates;

impl Operation for BulkCertificates {
    type Input = BulkCertificatesInput;
    type Output = BulkCertificatesOutput;
    const META: OpMeta = OpMeta {
        name: "bulk_certificates",
        title: "Renew, revoke or reassign many certificates",
        description: "Apply one action to every certificate matching a filter or list of ids: renew, revoke (a key compromise, a decommissioned team) or reassign (a team leaving, an owner changing role). One approval covers the batch; dry_run lists what would change; the run's record is get_object kind bulk_operation.",
        // Gated like every change to many certificates at once.
        risk: Risk::Destructive,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn changes_nothing(input: &Self::Input) -> bool {
        input.dry_run
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        match input.action()? {
            Action::Renew(i) => BulkRenew::describe(ctx, &i).await,
            Action::Revoke(i) => BulkRevoke::describe(ctx, &i).await,
            Action::Reassign(i) => BulkReassign::describe(ctx, &i).await,
        }
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        ctx.note("action", input.action.as_str());
        Ok(match input.action()? {
            Action::Renew(i) => BulkCertificatesOutput::Items(BulkRenew::execute(ctx, i).await?),
            Action::Revoke(i) => BulkCertificatesOutput::Revoke(BulkRevoke::execute(ctx, i).await?),
            Action::Reassign(i) => {
                BulkCertificatesOutput::Items(BulkReassign::execute(ctx, i).await?)
            }
        })
    }

    async fn after_commit(engine: &crate::Engine, out: Self::Output) -> Self::Output {
        // Renew and reassign finish alike (the record's kind tells the run).
        match out {
            BulkCertificatesOutput::Revoke(o) => {
                BulkCertificatesOutput::Revoke(BulkRevoke::after_commit(engine, o).await)
            }
            BulkCertificatesOutput::Items(o) => {
                BulkCertificatesOutput::Items(finish_items(engine, o).await)
            }
        }
    }
}
