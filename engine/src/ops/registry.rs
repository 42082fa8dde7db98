//! The catalogue as data: operations behind a object-safe trait, so faces can
//! list them (MCP tools, REST parity tests) and approvals can run a stored
//! input by operation name.

use std::future::Future;

use serde::Deserialize;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::OnceLock;

use super::{Ctx, OpMeta, Operation, Outcome};
use crate::domain::Principal;
use crate::engine::Engine;
use crate::error::{Error, Result};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An operation with its input and output as JSON.
pub trait DynOperation: Send + Sync {
    fn meta(&self) -> &'static OpMeta;
    /// JSON Schema of the input.
    fn input_schema(&self) -> serde_json::Value;
    /// JSON Schema of the output (the `result` of a completed call).
    fn output_schema(&self) -> serde_json::Value;
    /// The permission this input needs (more than the operation's own for
    /// some kinds of an operation over several kinds); the operation's own
    /// when the input does not parse.
    fn permission_of(&self, input: &serde_json::Value) -> crate::domain::Permission;
    /// Runs through the full entry point (authorize, gate, execute, audit).
    fn call_json<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<serde_json::Value>>>;
    /// [`DynOperation::call_json`] with the completed output serialized
    /// straight to JSON text, for faces that send it on as it is: a list
    /// page is not copied into a `serde_json::Value` tree first.
    fn call_json_text<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<Vec<u8>>>>;
    /// The subject of a stored input as things are now (what approving
    /// compares with what the approval showed).
    fn describe_approved<'a, 'c>(
        &'a self,
        ctx: &'a mut Ctx<'c>,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<super::Subject>>
    where
        'c: 'a;
    /// Runs an already-approved input inside an existing transaction.
    fn execute_approved<'a, 'c>(
        &'a self,
        ctx: &'a mut Ctx<'c>,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value>>
    where
        'c: 'a;
}

struct Op<O>(PhantomData<fn() -> O>);

/// Parses a JSON input, turning serde's message into a typed error.
pub(crate) fn parse_input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    // PostgreSQL text cannot hold NUL: such a string would fail as a storage
    // error (a 500) wherever it is written, or read as a lookup key. It is
    // the caller's input that is wrong, so it is refused here, once.
    if holds_nul(&v) {
        return Err(Error::invalid(
            "invalid input: text may not contain NUL characters",
        ));
    }
    serde_json::from_value(v).map_err(|e| Error::invalid(format!("invalid input: {e}")))
}

fn holds_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(e.to_string()))
}

/// Calls `O` with a JSON input and turns a completed result into what the
/// face writes out (a `Value`, or JSON text). Authorization comes first: a
/// refused caller gets 403, not a lesson in the input's schema.
async fn call_mapped<O: Operation, T>(
    engine: &Engine,
    principal: &Principal,
    input: serde_json::Value,
    map: impl FnOnce(&O::Output) -> Result<T>,
) -> Result<Outcome<T>> {
    engine
        .authorize_call(principal, &O::META, engine.now())
        .await?;
    let input: O::Input = parse_input(input)?;
    Ok(match engine.call::<O>(principal, input).await? {
        Outcome::Completed { result } => Outcome::Completed {
            result: map(&result)?,
        },
        Outcome::ApprovalRequired(t) => Outcome::ApprovalRequired(t),
    })
}

pub(crate) fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

impl<O: Operation> DynOperation for Op<O> {
    fn meta(&self) -> &'static OpMeta {
        &O::META
    }

    fn input_schema(&self) -> serde_json::Value {
        schema_of::<O::Input>()
    }

    fn output_schema(&self) -> serde_json::Value {
        schema_of::<O::Output>()
    }

    fn permission_of(&self, input: &serde_json::Value) -> crate::domain::Permission {
        match O::Input::deserialize(input) {
            Ok(i) => O::permission(&i),
            Err(_) => O::META.permission,
        }
    }

    fn call_json<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<serde_json::Value>>> {
        Box::pin(call_mapped::<O, _>(engine, principal, input, to_value))
    }

    fn call_json_text<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<Vec<u8>>>> {
        Box::pin(call_mapped::<O, _>(engine, principal, input, |r| {
            serde_json::to_vec(r).map_err(|e| Error::internal(e.to_string()))
        }))
    }

    fn describe_approved<'a, 'c>(
        &'a self,
        ctx: &'a mut Ctx<'c>,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<super::Subject>>
    where
        'c: 'a,
    {
        Box::pin(async move {
            let input: O::Input = parse_input(input)?;
            O::describe(ctx, &input).await
        })
    }

    fn execute_approved<'a, 'c>(
        &'a self,
        ctx: &'a mut Ctx<'c>,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value>>
    where
        'c: 'a,
    {
        Box::pin(async move {
            let input: O::Input = parse_input(input)?;
            let out = O::execute(ctx, input).await?;
            to_value(&out)
        })
    }
}

macro_rules! catalogue_of {
    ($($op:ty),* $(,)?) => {
        vec![$(Box::new(Op::<$op>(PhantomData)) as Box<dyn DynOperation>),*]
    };
}

/// Every operation, in a stable order.
pub fn catalogue() -> &'static [Box<dyn DynOperation>] {
    use super::*;
    static CATALOGUE: OnceLock<Vec<Box<dyn DynOperation>>> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        catalogue_of![
            ListCertificates,
            GetCertificate,
            CreateCertificate,
            UpdateCertificate,
            ArchiveCertificate,
            IssueCertificate,
            RenewCertificate,
            RevokeCertificate,
            ImportCertificates,
            ListIssuers,
            CreateIssuer,
            UpdateIssuer,
            TestIssuer,
            ListTargets,
            SaveTarget,
            ListAgents,
            RegisterAgent,
            DisableAgent,
            SaveAgentGroup,
            ListAgentGroupMembers,
            UpdateAgent,
            ListJobs,
            CancelJob,
            SaveOwner,
            SaveTeam,
            SaveProfile,
            SaveRenewalPolicy,
            SavePolicy,
            ListPolicyViolations,
            ListApprovals,
            GetApproval,
            ApproveRequest,
            RejectRequest,
            CancelRequest,
            ClaimApprovalResult,
            ExpireApprovals,
            GetAuditLog,
            VerifyAuditLog,
            CheckpointAuditLog,
            GetAuditCheckpoints,
            GetStatsSummary,
            CreatePrincipal,
            RevokePrincipal,
            AgentHeartbeat,
            GetAgentWork,
            SubmitAgentCsr,
            ApproveJob,
            RejectJob,
            GetStats,
            BulkCertificates,
            ExportCertificate,
            CreateExportLink,
            EnrollCertificate,
            ReenrollCertificate,
            SaveNotificationChannel,
            SaveNotificationRule,
            ListNotifications,
            RetryNotification,
            SendTestNotification,
            GetAgentJob,
            ReportAgentJob,
            VerifyJob,
            ReportAgentDiscoveries,
            ListDiscoveredCertificates,
            ClaimDiscoveredCertificate,
            DismissDiscoveredCertificate,
            GetDiscoverySummary,
            CreateNetworkScanTarget,
            UpdateNetworkScanTarget,
            ScanNetworkTarget,
            GetObject,
            ListObjects,
            DeleteObject,
        ]
    })
}

/// Operations of earlier releases that an operation over several kinds now
/// serves: (old name, new name, the field and value the old name implied).
/// Reads and lists never wait for approval; deletes and bulk runs may, and
/// an approval requested before the change must still run as asked.
const RETIRED: &[(&str, &str, &str, &str)] = &[
    ("delete_issuer", "delete_object", "kind", "issuer"),
    ("delete_target", "delete_object", "kind", "target"),
    ("delete_agent_group", "delete_object", "kind", "agent_group"),
    ("delete_owner", "delete_object", "kind", "owner"),
    ("delete_team", "delete_object", "kind", "team"),
    ("delete_profile", "delete_object", "kind", "profile"),
    (
        "delete_renewal_policy",
        "delete_object",
        "kind",
        "renewal_policy",
    ),
    ("delete_policy", "delete_object", "kind", "policy"),
    (
        "delete_notification_channel",
        "delete_object",
        "kind",
        "notification_channel",
    ),
    (
        "delete_notification_rule",
        "delete_object",
        "kind",
        "notification_rule",
    ),
    (
        "delete_network_scan_target",
        "delete_object",
        "kind",
        "network_scan_target",
    ),
    (
        "bulk_renew_certificates",
        "bulk_certificates",
        "action",
        "renew",
    ),
    (
        "bulk_revoke_certificates",
        "bulk_certificates",
        "action",
        "revoke",
    ),
    (
        "bulk_reassign_certificates",
        "bulk_certificates",
        "action",
        "reassign",
    ),
];

/// The operation a stored approval names, and the input to run: the stored
/// one, or for an operation since folded into a broader one, the stored
/// input with the field the old name implied.
pub(crate) fn stored(
    name: &str,
    input: &serde_json::Value,
) -> Option<(&'static dyn DynOperation, serde_json::Value)> {
    if let Some(op) = find(name) {
        return Some((op, input.clone()));
    }
    let (_, new, field, value) = RETIRED.iter().find(|r| r.0 == name)?;
    let mut input = input.clone();
    input
        .as_object_mut()?
        .insert((*field).into(), (*value).into());
    Some((find(new)?, input))
}

/// The operation with this name.
pub fn find(name: &str) -> Option<&'static dyn DynOperation> {
    catalogue()
        .iter()
        .find(|o| o.meta().name == name)
        .map(|b| b.as_ref())
}
