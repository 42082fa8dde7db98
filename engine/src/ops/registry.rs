//! The catalogue as data: operations behind a object-safe trait, so faces can
//! list them (MCP tools, REST parity tests) and approvals can run a stored
//! input by operation name.

use std::future::Future;
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
    serde_json::from_value(v).map_err(|e| Error::invalid(format!("invalid input: {e}")))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(e.to_string()))
}

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
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

    fn call_json<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<serde_json::Value>>> {
        Box::pin(async move {
            // Authorization first: a refused caller gets 403, not a lesson
            // in the input's schema.
            engine
                .authorize_call(principal, &O::META, engine.now())
                .await?;
            let input: O::Input = parse_input(input)?;
            let out = engine.call::<O>(principal, input).await?;
            Ok(match out {
                Outcome::Completed { result } => Outcome::Completed {
                    result: to_value(&result)?,
                },
                Outcome::ApprovalRequired(t) => Outcome::ApprovalRequired(t),
            })
        })
    }

    fn call_json_text<'a>(
        &'a self,
        engine: &'a Engine,
        principal: &'a Principal,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<Outcome<Vec<u8>>>> {
        Box::pin(async move {
            engine
                .authorize_call(principal, &O::META, engine.now())
                .await?;
            let input: O::Input = parse_input(input)?;
            let out = engine.call::<O>(principal, input).await?;
            Ok(match out {
                Outcome::Completed { result } => Outcome::Completed {
                    result: serde_json::to_vec(&result)
                        .map_err(|e| Error::internal(e.to_string()))?,
                },
                Outcome::ApprovalRequired(t) => Outcome::ApprovalRequired(t),
            })
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
            GetIssuer,
            CreateIssuer,
            UpdateIssuer,
            DeleteIssuer,
            TestIssuer,
            ListTargets,
            GetTarget,
            SaveTarget,
            DeleteTarget,
            ListAgents,
            GetAgent,
            RegisterAgent,
            DisableAgent,
            ListAgentGroups,
            GetAgentGroup,
            SaveAgentGroup,
            DeleteAgentGroup,
            ListAgentGroupMembers,
            ListJobs,
            GetJob,
            CancelJob,
            ListOwners,
            GetOwner,
            SaveOwner,
            DeleteOwner,
            ListTeams,
            GetTeam,
            SaveTeam,
            DeleteTeam,
            ListProfiles,
            GetProfile,
            SaveProfile,
            DeleteProfile,
            ListRenewalPolicies,
            SaveRenewalPolicy,
            DeleteRenewalPolicy,
            ListPolicies,
            GetPolicy,
            SavePolicy,
            DeletePolicy,
            ListPolicyViolations,
            ListApprovals,
            GetApproval,
            ApproveRequest,
            RejectRequest,
            CancelRequest,
            ExpireApprovals,
            GetAuditLog,
            VerifyAuditLog,
            GetStatsSummary,
            ListPrincipals,
            CreatePrincipal,
            RevokePrincipal,
            AgentHeartbeat,
            GetAgentWork,
            SubmitAgentCsr,
            ApproveJob,
            RejectJob,
            GetCertificatesByStatus,
            GetCertificatesByOwnership,
            GetExpirationTimeline,
            GetJobTrends,
            GetIssuanceRate,
            BulkRevokeCertificates,
            BulkRenewCertificates,
            BulkReassignCertificates,
            GetBulkOperation,
            ListBulkOperations,
            ExportCertificate,
            CreateExportLink,
            EnrollCertificate,
            ReenrollCertificate,
            ListNotificationChannels,
            SaveNotificationChannel,
            DeleteNotificationChannel,
            ListNotificationRules,
            SaveNotificationRule,
            DeleteNotificationRule,
            ListNotifications,
            RetryNotification,
            SendTestNotification,
            GetAgentJob,
            ReportAgentJob,
            VerifyJob,
            GetJobVerification,
            ReportAgentDiscoveries,
            ListDiscoveredCertificates,
            GetDiscoveredCertificate,
            ClaimDiscoveredCertificate,
            DismissDiscoveredCertificate,
            GetDiscoverySummary,
            ListNetworkScanTargets,
            GetNetworkScanTarget,
            CreateNetworkScanTarget,
            UpdateNetworkScanTarget,
            DeleteNetworkScanTarget,
            ScanNetworkTarget,
        ]
    })
}

/// The operation with this name.
pub fn find(name: &str) -> Option<&'static dyn DynOperation> {
    catalogue()
        .iter()
        .find(|o| o.meta().name == name)
        .map(|b| b.as_ref())
}
