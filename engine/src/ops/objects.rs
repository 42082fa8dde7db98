//! One read, one list and one delete for the configuration and record kinds
//! that have no lifecycle of their own (owners, teams, profiles, policies,
//! agent groups, targets, jobs, ...). A separate get, list and delete per kind
//! taught a model the same `{id}` call fifteen times under fifteen names and
//! cost a third of the MCP tool list; one operation with a `kind` says it once.
//! REST keeps a route per kind (`GET /owners/{id}`), which fills in `kind`.
//!
//! Each kind keeps its own rules: deleting an issuer, agent group, profile,
//! policy rule or notification channel needs an admin (see
//! [`Operation::permission`]), audit events name the kind as their resource
//! type, and in-use checks refuse deletes that would leave dangling references.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Ctx, Deleted, List, OpMeta, Operation, Risk, Subject, paginate};
use crate::domain::BulkOperation;
use crate::domain::{
    Agent, AgentGroup, ApiPrincipal, Issuer, Job, NotificationChannel, NotificationRule, Owner,
    Permission, PolicyRule, Profile, RenewalPolicy, Target, Team,
};
use crate::error::{Error, Result};
use crate::store::{DiscoveredCertificate, NetworkScanTarget, OrgTable, SimpleTable, Verification};

/// Declares a kind enum whose variants serialize as the audit resource types.
macro_rules! kinds {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            /// The kind's name (the audit `resource_type`).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
        }
    };
}

kinds! {
    /// What `get_object` can read.
    GetKind {
        Issuer = "issuer",
        Target = "target",
        Agent = "agent",
        AgentGroup = "agent_group",
        Job = "job",
        Verification = "verification",
        Owner = "owner",
        Team = "team",
        Profile = "profile",
        RenewalPolicy = "renewal_policy",
        Policy = "policy",
        BulkOperation = "bulk_operation",
        DiscoveredCertificate = "discovered_certificate",
        NetworkScanTarget = "network_scan_target",
        NotificationRule = "notification_rule",
    }
}

kinds! {
    /// What `list_objects` can list.
    ListKind {
        AgentGroup = "agent_group",
        Owner = "owner",
        Team = "team",
        Profile = "profile",
        RenewalPolicy = "renewal_policy",
        Policy = "policy",
        Principal = "principal",
        BulkOperation = "bulk_operation",
        NotificationChannel = "notification_channel",
        NotificationRule = "notification_rule",
        NetworkScanTarget = "network_scan_target",
    }
}

kinds! {
    /// What `delete_object` can delete.
    DeleteKind {
        Issuer = "issuer",
        Target = "target",
        AgentGroup = "agent_group",
        Owner = "owner",
        Team = "team",
        Profile = "profile",
        RenewalPolicy = "renewal_policy",
        Policy = "policy",
        NotificationChannel = "notification_channel",
        NotificationRule = "notification_rule",
        NetworkScanTarget = "network_scan_target",
    }
}

/// Any object `get_object` and `list_objects` return, as itself (no wrapper).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Object {
    Issuer(Box<Issuer>),
    Target(Box<Target>),
    Agent(Box<Agent>),
    AgentGroup(AgentGroup),
    Job(Box<Job>),
    Verification(Verification),
    Owner(Owner),
    Team(Team),
    Profile(Box<Profile>),
    RenewalPolicy(RenewalPolicy),
    Policy(PolicyRule),
    Principal(ApiPrincipal),
    BulkOperation(Box<BulkOperation>),
    DiscoveredCertificate(Box<DiscoveredCertificate>),
    NetworkScanTarget(Box<NetworkScanTarget>),
    NotificationChannel(Box<NotificationChannel>),
    NotificationRule(Box<NotificationRule>),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetObjectInput {
    pub kind: GetKind,
    /// Its id (for `verification`: the deployment job's id).
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteObjectInput {
    pub kind: DeleteKind,
    pub id: String,
}

list_input! {
    required ListObjectsInput {
        kind: ListKind,
        /// Owners only: those in this team.
        team_id: Option<String>,
        /// Network scan targets only: enabled or disabled ones.
        enabled: Option<bool>,
    }
}

/// The output schema of `op` when a face fixes its `kind` (or `view`) to
/// `value`: the one object type (or a page of them) rather than any of them,
/// so REST documents `GET /owners/{id}` as returning an owner.
pub fn fixed_output_schema(op: &str, value: &str) -> Option<serde_json::Value> {
    use super::registry::schema_of;
    use super::{OwnershipStats, StatusCounts, TimeSeries};
    macro_rules! one_of {
        ($wrap:ident; $($kind:literal => $t:ty),* $(,)?) => {
            match value {
                $($kind => Some(schema_of::<$wrap<$t>>()),)*
                _ => None,
            }
        };
    }
    type Plain<T> = T;
    match op {
        "get_object" => one_of!(Plain;
            "issuer" => Issuer, "target" => Target, "agent" => Agent,
            "agent_group" => AgentGroup, "job" => Job, "verification" => Verification,
            "owner" => Owner, "team" => Team, "profile" => Profile,
            "renewal_policy" => RenewalPolicy, "policy" => PolicyRule,
            "bulk_operation" => BulkOperation,
            "discovered_certificate" => DiscoveredCertificate,
            "network_scan_target" => NetworkScanTarget,
            "notification_rule" => NotificationRule,
        ),
        "list_objects" => one_of!(List;
            "agent_group" => AgentGroup, "owner" => Owner, "team" => Team,
            "profile" => Profile, "renewal_policy" => RenewalPolicy, "policy" => PolicyRule,
            "principal" => ApiPrincipal, "bulk_operation" => BulkOperation,
            "notification_channel" => NotificationChannel,
            "notification_rule" => NotificationRule,
            "network_scan_target" => NetworkScanTarget,
        ),
        "bulk_certificates" => one_of!(Plain;
            "revoke" => super::BulkRevokeOutput, "renew" => super::BulkOutput,
            "reassign" => super::BulkOutput,
        ),
        "get_stats" => one_of!(Plain;
            "by_status" => StatusCounts, "by_ownership" => OwnershipStats,
            "expiration_timeline" => TimeSeries, "job_trends" => TimeSeries,
            "issuance_rate" => TimeSeries,
        ),
        _ => None,
    }
}

fn found<T>(kind: &'static str, id: &str, row: Option<T>) -> Result<T> {
    row.ok_or_else(|| Error::not_found(kind, id))
}

pub struct GetObject;

impl Operation for GetObject {
    type Input = GetObjectInput;
    type Output = Object;
    const META: OpMeta = OpMeta {
        name: "get_object",
        title: "Get an object by kind and id",
        description: "Get one issuer (with its CA chain), target, agent, agent group, job, deployment verification, owner, team, profile, renewal policy, policy rule, bulk operation, discovered certificate, network scan target or notification rule. Certificates: get_certificate; approvals: get_approval.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "object",
        gateable: false,
    };

    fn resource(input: &Self::Input) -> &'static str {
        input.kind.as_str()
    }

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            ..Subject::default()
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        use GetKind as K;
        let id = input.id.as_str();
        let kind = input.kind.as_str();
        let tx = &mut *ctx.tx;
        Ok(match input.kind {
            K::Issuer => Object::Issuer(Box::new(found(kind, id, tx.issuer(id).await?)?.issuer)),
            K::Target => Object::Target(Box::new(found(kind, id, tx.target(id).await?)?)),
            K::Agent => Object::Agent(Box::new(found(kind, id, tx.agent(id).await?)?)),
            K::AgentGroup => Object::AgentGroup(found(kind, id, tx.agent_group(id).await?)?),
            K::Job => Object::Job(Box::new(found(kind, id, tx.job(id).await?)?)),
            K::Verification => {
                found("job", id, tx.job(id).await?)?;
                Object::Verification(tx.verification(id).await?.ok_or_else(|| {
                    Error::not_found("verification", format!("{id} (not reported yet)"))
                })?)
            }
            K::Owner => Object::Owner(found(kind, id, tx.owner(id).await?)?),
            K::Team => Object::Team(found(kind, id, tx.team(id).await?)?),
            K::Profile => Object::Profile(Box::new(found(kind, id, tx.profile(id).await?)?)),
            K::RenewalPolicy => {
                Object::RenewalPolicy(found(kind, id, tx.renewal_policy(id).await?)?)
            }
            K::Policy => Object::Policy(found(kind, id, tx.policy_rule(id).await?)?),
            K::BulkOperation => {
                Object::BulkOperation(Box::new(found(kind, id, tx.bulk_operation(id).await?)?))
            }
            K::DiscoveredCertificate => Object::DiscoveredCertificate(Box::new(found(
                kind,
                id,
                tx.discovered_certificate(id).await?,
            )?)),
            K::NetworkScanTarget => {
                Object::NetworkScanTarget(Box::new(found(kind, id, tx.scan_target(id).await?)?))
            }
            K::NotificationRule => Object::NotificationRule(Box::new(found(
                kind,
                id,
                tx.notification_rule(id).await?,
            )?)),
        })
    }
}

/// Sorts every small list allows.
const SORT_NAMED: &[&str] = &["name", "created_at", "updated_at", "id"];

pub struct ListObjects;

impl Operation for ListObjects {
    type Input = ListObjectsInput;
    type Output = List<Object>;
    const META: OpMeta = OpMeta {
        name: "list_objects",
        title: "List objects of one kind",
        description: "List agent groups, owners, teams, profiles, renewal policies, policy rules, API principals (admin), bulk operations, notification channels and rules, or network scan targets. Certificates, issuers, targets, agents, jobs and approvals have their own list tools.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "object",
        gateable: false,
    };

    fn permission(input: &Self::Input) -> Permission {
        match input.kind {
            ListKind::Principal => Permission::Admin,
            _ => Permission::Read,
        }
    }

    fn resource(input: &Self::Input) -> &'static str {
        input.kind.as_str()
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        use ListKind as K;
        if input.team_id.is_some() && input.kind != K::Owner {
            return Err(Error::invalid("team_id filters owners only"));
        }
        if input.enabled.is_some() && input.kind != K::NetworkScanTarget {
            return Err(Error::invalid("enabled filters network scan targets only"));
        }
        let p = input.list_params();
        let store = ctx.engine.store();
        let list = match input.kind {
            K::AgentGroup => paginate(store.list_agent_groups().await?, &p, "name", SORT_NAMED)?
                .map(Object::AgentGroup),
            K::Owner => {
                let mut rows = store.list_owners().await?;
                rows.retain(|o| input.team_id.is_none() || o.team_id == input.team_id);
                paginate(
                    rows,
                    &p,
                    "name",
                    &["name", "email", "created_at", "updated_at", "id"],
                )?
                .map(Object::Owner)
            }
            K::Team => {
                paginate(store.list_teams().await?, &p, "name", SORT_NAMED)?.map(Object::Team)
            }
            K::Profile => paginate(store.list_profiles().await?, &p, "name", SORT_NAMED)?
                .map(|r| Object::Profile(Box::new(r))),
            K::RenewalPolicy => {
                paginate(store.list_renewal_policies().await?, &p, "name", SORT_NAMED)?
                    .map(Object::RenewalPolicy)
            }
            K::Policy => paginate(store.list_policy_rules().await?, &p, "name", SORT_NAMED)?
                .map(Object::Policy),
            K::Principal => paginate(
                store.list_principals().await?,
                &p,
                "created_at",
                &["name", "role", "created_at", "id"],
            )?
            .map(Object::Principal),
            K::BulkOperation => paginate(
                store.list_bulk_operations(super::bulk::MAX_LISTED).await?,
                &p,
                "-created_at",
                &["created_at"],
            )?
            .map(|r| Object::BulkOperation(Box::new(r))),
            K::NotificationChannel => paginate(
                store.list_notification_channels().await?,
                &p,
                "name",
                SORT_NAMED,
            )?
            .map(|r| Object::NotificationChannel(Box::new(r))),
            K::NotificationRule => paginate(
                store.list_notification_rules().await?,
                &p,
                "name",
                SORT_NAMED,
            )?
            .map(|r| Object::NotificationRule(Box::new(r))),
            K::NetworkScanTarget => {
                let mut rows = ctx.tx.scan_targets().await?;
                rows.retain(|t| input.enabled.is_none_or(|e| t.enabled == e));
                paginate(
                    rows,
                    &p,
                    "name",
                    &["name", "created_at", "updated_at", "last_scan_at", "id"],
                )?
                .map(|r| Object::NetworkScanTarget(Box::new(r)))
            }
        };
        Ok(list)
    }
}

pub struct DeleteObject;

impl Operation for DeleteObject {
    type Input = DeleteObjectInput;
    type Output = Deleted;
    const META: OpMeta = OpMeta {
        name: "delete_object",
        title: "Delete an object by kind and id",
        description: "Delete an issuer (destroys its CA key), target (nothing is removed from the server), agent group, owner, team, profile, renewal policy, policy rule, notification channel or rule, or network scan target. Refused while something still uses it. Issuers, agent groups, profiles, policy rules and channels need an admin.",
        risk: Risk::Destructive,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "object",
        gateable: true,
    };

    fn permission(input: &Self::Input) -> Permission {
        use DeleteKind as K;
        match input.kind {
            K::Issuer | K::AgentGroup | K::Profile | K::Policy | K::NotificationChannel => {
                Permission::Admin
            }
            _ => Permission::Write,
        }
    }

    fn resource(input: &Self::Input) -> &'static str {
        input.kind.as_str()
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let (kind, id) = (input.kind.as_str(), input.id.as_str());
        // A gated delete of an unknown id is refused, not queued.
        let summary = match input.kind {
            DeleteKind::Issuer => {
                let r = found(kind, id, ctx.tx.issuer(id).await?)?;
                format!(
                    "Delete issuer {id} ({}) and destroy its CA key",
                    r.issuer.name
                )
            }
            DeleteKind::NotificationChannel => {
                found(kind, id, ctx.tx.channel_record(id).await?)?;
                format!("Delete notification channel {id}")
            }
            DeleteKind::NotificationRule => {
                found(kind, id, ctx.tx.notification_rule(id).await?)?;
                format!("Delete notification rule {id}")
            }
            _ => {
                super::ensure_exists(ctx, kind, id).await?;
                format!("Delete {} {id}", kind.replace('_', " "))
            }
        };
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            summary,
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        use DeleteKind as K;
        let id = input.id.as_str();
        let tx = &mut *ctx.tx;
        let in_use = match input.kind {
            K::Issuer => tx
                .issuer_in_use(id)
                .await?
                .then(|| "it still has certificates; archive or move them first".to_owned()),
            K::AgentGroup => tx.agent_group_in_use(id).await?.then(|| {
                "targets still point at it; point them elsewhere first (list_targets)".to_owned()
            }),
            K::Profile => tx
                .profile_in_use(id)
                .await?
                .then(|| "certificates use it".to_owned()),
            K::NotificationChannel => match tx.rules_using_channel(id).await? {
                0 => None,
                n => Some(format!(
                    "{n} notification rule(s) still send to it; delete or change them first"
                )),
            },
            _ => None,
        };
        if let Some(why) = in_use {
            return Err(Error::conflict(format!(
                "{} {id} cannot be deleted: {why}",
                input.kind.as_str().replace('_', " ")
            )));
        }
        let deleted = match input.kind {
            K::Issuer => tx.delete_issuer(id).await?,
            K::Target => tx.delete_target(id).await?,
            K::AgentGroup => tx.delete_agent_group(id).await?,
            K::Owner => tx.delete_org(OrgTable::Owner, id).await?,
            K::Team => tx.delete_org(OrgTable::Team, id).await?,
            K::Profile => tx.delete_profile(id).await?,
            K::RenewalPolicy => tx.delete_simple(SimpleTable::RenewalPolicy, id).await?,
            K::Policy => tx.delete_simple(SimpleTable::PolicyRule, id).await?,
            K::NotificationChannel => tx.delete_notification_channel(id).await?,
            K::NotificationRule => tx.delete_notification_rule(id).await?,
            K::NetworkScanTarget => tx.delete_scan_target(id).await?,
        };
        if !deleted {
            return Err(Error::not_found(input.kind.as_str(), input.id));
        }
        Ok(Deleted {
            id: input.id,
            deleted: true,
        })
    }
}
