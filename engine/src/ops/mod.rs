//! The operation catalogue: every user-visible action is one [`Operation`]
//! with a typed input and output, a name, a one-line description and a risk
//! class. MCP tools, REST routes and CLI commands are mirrors of this list;
//! all of them run through [`crate::Engine::call`], which authorizes, applies
//! the approval gate, executes and audits, so no face can skip a rule.

/// Declares a simple operation: the struct, its metadata, the subject the
/// gate and audit log see, and the body. Every write is gateable unless it
/// says `gateable: false` (the approval decisions themselves).
macro_rules! operation {
    (
        $(#[$doc:meta])*
        $ty:ident {
            name: $name:literal,
            title: $title:literal,
            description: $desc:literal,
            risk: $risk:ident,
            permission: $perm:ident,
            idempotent: $idem:literal,
            resource: $res:literal,
            $(gateable: $gate:literal,)?
            input: $in:ty,
            output: $out:ty,
            subject: |$si:ident| ($rid:expr, $summary:expr),
        }
        |$ctx:ident, $input:ident| $body:block
    ) => {
        $(#[$doc])*
        pub struct $ty;

        impl $crate::ops::Operation for $ty {
            type Input = $in;
            type Output = $out;
            const META: $crate::ops::OpMeta = $crate::ops::OpMeta {
                name: $name,
                title: $title,
                description: $desc,
                risk: $crate::ops::Risk::$risk,
                permission: $crate::domain::Permission::$perm,
                idempotent: $idem,
                open_world: false,
                resource: $res,
                gateable: {
                    let gateable = !matches!($crate::ops::Risk::$risk, $crate::ops::Risk::Read);
                    $(let gateable = gateable && $gate;)?
                    gateable
                },
            };

            async fn describe(
                ctx: &mut $crate::ops::Ctx<'_>,
                $si: &Self::Input,
            ) -> $crate::Result<$crate::ops::Subject> {
                let resource_id: Option<String> = $rid;
                // A gated call on an unknown id is refused, not queued.
                if Self::META.gateable
                    && let Some(id) = &resource_id
                {
                    $crate::ops::ensure_exists(ctx, $res, id).await?;
                }
                Ok($crate::ops::Subject {
                    resource_id,
                    summary: $summary,
                    profile_requires_approval: false,
                    four_eyes: None,
                    bound: Vec::new(),
                })
            }

            async fn execute(
                $ctx: &mut $crate::ops::Ctx<'_>,
                $input: Self::Input,
            ) -> $crate::Result<Self::Output> $body
        }
    };
}

#[macro_use]
mod listing;

mod admin;
pub(crate) mod agent_groups;
mod agents_work;
pub(crate) mod approval_secrets;
mod approvals;
mod audit_checkpoints;
mod bulk;
mod bulk_certificates;
mod bulk_run;
mod certificates;
mod deployments;
mod discovery;
mod enrollment;
mod export;
mod import;
mod inventory;
mod issuers;
mod job_decisions;
mod network_scan;
mod notifications;
mod objects;
mod registry;
mod revocation;
mod stats;

pub use admin::*;
pub use agent_groups::*;
pub use agents_work::*;
pub use approvals::*;
pub use audit_checkpoints::*;
pub use bulk::*;
pub use bulk_certificates::*;
pub use bulk_run::BulkStep;
pub use certificates::*;
pub use deployments::*;
pub use discovery::*;
pub use enrollment::*;
pub use export::*;
pub use import::*;
pub use inventory::*;
pub use issuers::*;
pub use job_decisions::*;
pub use listing::*;
pub use network_scan::*;
pub use notifications::*;
pub use objects::*;
pub use registry::{DynOperation, catalogue, find};
pub use revocation::*;
pub use stats::*;

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::domain::{Permission, Principal};
use crate::engine::Engine;
use crate::error::Result;
use crate::store::Tx;

/// How much harm an operation can do; drives MCP annotations and the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads only.
    Read,
    /// Creates or changes something that can be changed back.
    Write,
    /// Cannot be undone, or takes something away (revoke, delete, deploy).
    Destructive,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Destructive => "destructive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "write" => Self::Write,
            "destructive" => Self::Destructive,
            _ => return None,
        })
    }
}

/// Static facts about an operation.
#[derive(Debug, Clone, Copy)]
pub struct OpMeta {
    /// snake_case verb_noun, the MCP tool name.
    pub name: &'static str,
    /// A short human title.
    pub title: &'static str,
    /// One line: what it does and when to use it.
    pub description: &'static str,
    pub risk: Risk,
    /// What the caller's role must allow.
    pub permission: Permission,
    /// Repeating the call with the same input changes nothing more.
    pub idempotent: bool,
    /// Reaches outside certctl (a public CA, DNS).
    pub open_world: bool,
    /// The kind of resource it acts on (audit `resource_type`).
    pub resource: &'static str,
    /// Whether the approval gate may stop it (false for the approval
    /// decisions themselves, which would otherwise need approving forever).
    pub gateable: bool,
}

/// What the gate and the audit log need to know about one call.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub resource_id: Option<String>,
    /// Plain-language summary: which certificate, which reason, which targets.
    pub summary: String,
    /// The certificate's profile requires approval for this operation.
    pub profile_requires_approval: bool,
    /// Another person must approve this call whatever the approval policy
    /// says, for this reason (a change that lowers an approval requirement,
    /// or grants the power to approve).
    pub four_eyes: Option<crate::domain::approval::GateReason>,
    /// The facts the summary describes (ids with their current versions and
    /// serials, profile, issuer, ...). An approval stores them and runs only
    /// while they still hold: approving what was shown, not what is there now.
    pub bound: Vec<String>,
}

/// Work the entry point must do after a failed execution, outside the
/// rolled-back transaction.
#[derive(Debug, Clone)]
pub(crate) enum Followup {
    /// An approved operation failed when it ran: the approval becomes `failed`.
    ApprovalFailed { approval_id: String, error: String },
}

/// Everything an operation may use while it runs.
pub struct Ctx<'a> {
    pub engine: &'a Engine,
    pub principal: &'a Principal,
    /// The transaction the operation and its audit event commit in.
    pub tx: &'a mut Tx,
    /// The time of the call, read once.
    pub now: UnixTime,
    /// Extra details for the audit event.
    pub audit_details: serde_json::Map<String, serde_json::Value>,
    /// The resource id for the audit event, when execution learns it (creates).
    pub audit_resource_id: Option<String>,
    pub(crate) followup: Option<Followup>,
    /// Violations of `enforce` policy rules that refused this call; the entry
    /// point stores them with the failure's audit event.
    pub(crate) refusals: Vec<crate::domain::PolicyViolation>,
    /// The operation being run (for policy violation records).
    pub(crate) operation: &'static str,
    /// Rows read by `describe`, reused by `execute` in the same transaction.
    pub(crate) memo: Memo,
}

/// Per-call cache: work done before the transaction (`prepare`) and rows
/// `describe` already read. Rows are only valid until the operation writes
/// them; code that reads after its own writes goes to the store.
#[derive(Default)]
pub struct Memo {
    pub(crate) certificate: Option<crate::domain::ManagedCertificate>,
    pub(crate) profile: Option<crate::domain::Profile>,
    pub(crate) issuer: Option<crate::store::IssuerRecord>,
    /// A CSR parsed and verified by `prepare`, with the text it came from.
    pub(crate) csr: Option<(String, crate::pki::ParsedCsr)>,
    /// What `test_issuer` learned from the CA in `outside_tx`.
    pub(crate) issuer_test: Option<IssuerTestResult>,
    /// The private key `issue_version` generated on the server (PKCS#8 PEM),
    /// handed back only to [`crate::Engine::enroll_with_server_key`]; every
    /// other caller drops it with the memo (it is stored sealed).
    pub(crate) server_key: Option<zeroize::Zeroizing<String>>,
    /// The agent whose CSR `issue_version` certifies (it holds the key): the
    /// new version is queued for deployment to its targets of the
    /// certificate, now or, for an external CA, when the issuer job records it.
    pub(crate) key_holder_agent: Option<String>,
    /// What `scan_network_target` found in `outside_tx`, with the target id.
    pub(crate) network_scan: Option<(String, crate::netscan::ScanOutcome)>,
    /// Policy findings already reported in this call: (rule, certificate, reason).
    pub(crate) policy_seen: std::collections::HashSet<(String, Option<String>, String)>,
}

impl Ctx<'_> {
    /// Adds a detail to this call's audit event.
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.audit_details.insert(key.to_owned(), value.into());
    }

    pub fn new_id(&self, prefix: &str) -> String {
        crate::ids::new_id(prefix, self.engine.clock())
    }
}

/// Fails with `NotFound` when the resource of the given kind does not exist.
pub(crate) async fn ensure_exists(ctx: &mut Ctx<'_>, kind: &'static str, id: &str) -> Result<()> {
    let found = match kind {
        "target" => ctx.tx.target(id).await?.is_some(),
        "agent" => ctx.tx.agent(id).await?.is_some(),
        "agent_group" => ctx.tx.agent_group(id).await?.is_some(),
        "job" => ctx.tx.job(id).await?.is_some(),
        "owner" => ctx.tx.owner(id).await?.is_some(),
        "team" => ctx.tx.team(id).await?.is_some(),
        "profile" => ctx.tx.profile(id).await?.is_some(),
        "renewal_policy" => ctx.tx.renewal_policy(id).await?.is_some(),
        "policy" => ctx.tx.policy_rule(id).await?.is_some(),
        "issuer" => ctx.tx.issuer(id).await?.is_some(),
        "approval" => ctx.tx.approval(id).await?.is_some(),
        "discovered_certificate" => ctx.tx.discovered_certificate(id).await?.is_some(),
        "network_scan_target" => ctx.tx.scan_target(id).await?.is_some(),
        // Kinds without a cheap lookup are checked by the operation itself.
        _ => true,
    };
    if found {
        Ok(())
    } else {
        Err(crate::Error::not_found(kind, id))
    }
}

/// One operation of the catalogue.
pub trait Operation: Send + Sync + 'static {
    type Input: DeserializeOwned + Serialize + JsonSchema + Send + Sync;
    type Output: Serialize + JsonSchema + Send;
    const META: OpMeta;

    /// What the caller's role must allow for this input, when it asks more
    /// than [`OpMeta::permission`] (deleting an issuer needs an admin where
    /// deleting a target needs write). Checked by the entry point.
    fn permission(input: &Self::Input) -> Permission {
        let _ = input;
        Self::META.permission
    }

    /// The kind of resource this input acts on (audit `resource_type`), for
    /// operations over several kinds.
    fn resource(input: &Self::Input) -> &'static str {
        let _ = input;
        Self::META.resource
    }

    /// Pure work done before the transaction starts (parsing, signature
    /// checks), so it does not hold the database's write lock.
    fn prepare(input: &Self::Input, memo: &mut Memo) -> Result<()> {
        let _ = (input, memo);
        Ok(())
    }

    /// Work that reaches outside certctl (a CA) before the transaction
    /// starts, after authorization, so no transaction is open while it waits
    /// on the network. Its result goes to `execute` through the memo.
    fn outside_tx(
        engine: &Engine,
        input: &Self::Input,
        memo: &mut Memo,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (engine, input, memo);
        async { Ok(()) }
    }

    /// Whether this input asks for a run that changes nothing (a dry run):
    /// such a call is not stopped at the approval gate.
    fn changes_nothing(input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// Names the resource and summarizes the call for the gate and the audit
    /// log. Fails with `NotFound` when the resource does not exist, so a gated
    /// call on an unknown id is refused rather than queued.
    fn describe(
        ctx: &mut Ctx<'_>,
        input: &Self::Input,
    ) -> impl Future<Output = Result<Subject>> + Send {
        let _ = (ctx, input);
        async {
            Ok(Subject {
                summary: Self::META.title.to_owned(),
                ..Subject::default()
            })
        }
    }

    /// Work after the call's transaction committed, in transactions of its
    /// own (a bulk operation's chunks); returns what the caller gets. What
    /// committed stays committed: failures here are logged and left for
    /// the loops to pick up, not returned.
    fn after_commit(
        engine: &Engine,
        output: Self::Output,
    ) -> impl Future<Output = Self::Output> + Send {
        let _ = engine;
        async { output }
    }

    /// Does the work inside `ctx.tx`.
    fn execute(
        ctx: &mut Ctx<'_>,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output>> + Send;
}

/// The result of a call: done, or stopped at the approval gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome<T> {
    /// The operation ran; `result` is its output.
    Completed { result: T },
    /// The operation is waiting for a human decision; nothing changed yet.
    ApprovalRequired(ApprovalTicket),
}

impl<T> Outcome<T> {
    /// The output, or an `ApprovalRequired` error naming the approval.
    pub fn completed(self) -> Result<T> {
        match self {
            Outcome::Completed { result } => Ok(result),
            Outcome::ApprovalRequired(t) => Err(crate::Error::ApprovalRequired(format!(
                "approval {} is required: {}",
                t.approval_id, t.summary
            ))),
        }
    }
}

/// What a caller gets back when a call is gated: enough to tell a human
/// what will happen and how to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalTicket {
    pub approval_id: String,
    pub operation: String,
    pub summary: String,
    pub expires_at: UnixTime,
    /// Whether the requester may confirm it in chat (an MCP client asking the human).
    pub in_chat_confirmation_allowed: bool,
    /// Who may decide and how.
    pub how_to_decide: String,
}
