//! Issuer operations. Creating a `local` issuer makes a new root and issuing
//! CA; `local_sub_ca` imports a CA certificate and key signed by an external
//! root (an enterprise ADCS, say).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{Issuer, IssuerKind, Permission};
use crate::error::{Error, Result};
use crate::pki;

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyInput {}

async fn load(ctx: &mut Ctx<'_>, id: &str) -> Result<crate::store::IssuerRecord> {
    ctx.tx
        .issuer(id)
        .await?
        .ok_or_else(|| Error::not_found("issuer", id))
}

/// A page of issuers.
pub type IssuerList = super::List<Issuer>;

pub struct ListIssuers;

impl Operation for ListIssuers {
    type Input = super::ListParams;
    type Output = IssuerList;
    const META: OpMeta = OpMeta {
        name: "list_issuers",
        title: "List issuers",
        description: "List the CAs certctl can issue from (local CA, sub-CA, ACME, ...) with their kind and CA certificate.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "issuer",
        gateable: false,
    };

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let rows: Vec<Issuer> = ctx
            .engine
            .store()
            .list_issuers()
            .await?
            .into_iter()
            .map(|r| r.issuer)
            .collect();
        super::paginate(
            rows,
            &input,
            "name",
            &["name", "kind", "created_at", "updated_at", "id"],
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdInput {
    /// The resource id.
    pub id: String,
}

pub struct GetIssuer;

impl Operation for GetIssuer {
    type Input = IdInput;
    type Output = Issuer;
    const META: OpMeta = OpMeta {
        name: "get_issuer",
        title: "Get an issuer",
        description: "Get one issuer with its configuration and, for local CAs, the CA certificate and chain (PEM).",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "issuer",
        gateable: false,
    };

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        ctx.audit_resource_id = Some(input.id.clone());
        ctx.tx
            .issuer(&input.id)
            .await?
            .map(|r| r.issuer)
            .ok_or_else(|| Error::not_found("issuer", input.id))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssuerInput {
    pub name: String,
    /// `local` (a new root and issuing CA) or `local_sub_ca` (import a CA signed by an external root).
    pub kind: IssuerKind,
    /// Connector settings (no secrets).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Sub-CA mode: the CA certificate to issue under (PEM).
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// Sub-CA mode: the chain above it up to the external root (PEM).
    #[serde(default)]
    pub ca_chain_pem: Option<String>,
    /// Sub-CA mode: the CA's private key (PEM); stored encrypted, never returned.
    #[serde(default)]
    pub ca_key_pem: Option<String>,
}

pub struct CreateIssuer;

impl Operation for CreateIssuer {
    type Input = CreateIssuerInput;
    type Output = Issuer;
    const META: OpMeta = OpMeta {
        name: "create_issuer",
        title: "Create an issuer",
        description: "Add an issuer: a new local CA, or a sub-CA imported from an external root (certificate, chain and key).",
        risk: Risk::Write,
        permission: Permission::Admin,
        idempotent: false,
        open_world: false,
        resource: "issuer",
        gateable: true,
    };

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        Ok(Subject {
            resource_id: None,
            summary: format!("Create {} issuer '{}'", input.kind.as_str(), input.name),
            profile_requires_approval: false,
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let name = input.name.trim();
        if name.is_empty() {
            return Err(Error::invalid("issuer name must not be empty"));
        }
        let id = ctx.new_id("iss");
        let master = ctx.engine.master_key();
        let material = match input.kind {
            IssuerKind::Local => Some(pki::create_local_ca(
                master,
                &ctx.engine.config().organization,
                ctx.now,
                &id,
            )?),
            IssuerKind::LocalSubCa => {
                let (Some(cert), Some(key)) = (&input.ca_cert_pem, &input.ca_key_pem) else {
                    return Err(Error::invalid(
                        "sub-CA mode needs ca_cert_pem and ca_key_pem (and ca_chain_pem up to the root)",
                    ));
                };
                Some(pki::import_sub_ca(
                    master,
                    cert,
                    input.ca_chain_pem.as_deref().unwrap_or(""),
                    key,
                    ctx.now,
                    &id,
                )?)
            }
            other => {
                return Err(Error::invalid(format!(
                    "issuer kind '{}' is not available in this release",
                    other.as_str()
                )));
            }
        };
        let issuer = Issuer {
            id: id.clone(),
            name: name.to_owned(),
            kind: input.kind,
            config: serde_json::Value::Object(input.config),
            enabled: true,
            ca_cert_pem: None,
            ca_chain_pem: None,
            ca_subject: None,
            ca_not_after: None,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        ctx.tx.insert_issuer(&issuer, material.as_ref()).await?;
        ctx.audit_resource_id = Some(id.clone());
        ctx.tx
            .issuer(&id)
            .await?
            .map(|r| r.issuer)
            .ok_or_else(|| Error::internal("issuer vanished after insert"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIssuerInput {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Replaces the connector settings.
    #[serde(default)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct UpdateIssuer;

impl Operation for UpdateIssuer {
    type Input = UpdateIssuerInput;
    type Output = Issuer;
    const META: OpMeta = OpMeta {
        name: "update_issuer",
        title: "Update an issuer",
        description: "Rename, enable or disable an issuer, or change its connector settings.",
        risk: Risk::Write,
        permission: Permission::Admin,
        idempotent: true,
        open_world: false,
        resource: "issuer",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let r = load(ctx, &input.id).await?;
        Ok(Subject {
            resource_id: Some(r.issuer.id.clone()),
            summary: format!("Update issuer {} ({})", r.issuer.id, r.issuer.name),
            profile_requires_approval: false,
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let mut issuer = load(ctx, &input.id).await?.issuer;
        if let Some(n) = input.name.filter(|n| !n.trim().is_empty()) {
            issuer.name = n.trim().to_owned();
        }
        if let Some(e) = input.enabled {
            issuer.enabled = e;
        }
        if let Some(c) = input.config {
            issuer.config = serde_json::Value::Object(c);
        }
        issuer.updated_at = ctx.now;
        ctx.tx.update_issuer(&issuer).await?;
        Ok(issuer)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

pub struct DeleteIssuer;

impl Operation for DeleteIssuer {
    type Input = IdInput;
    type Output = Deleted;
    const META: OpMeta = OpMeta {
        name: "delete_issuer",
        title: "Delete an issuer",
        description: "Delete an issuer that no certificate uses; its CA key is destroyed with it.",
        risk: Risk::Destructive,
        permission: Permission::Admin,
        idempotent: false,
        open_world: false,
        resource: "issuer",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let r = load(ctx, &input.id).await?;
        Ok(Subject {
            resource_id: Some(r.issuer.id.clone()),
            summary: format!(
                "Delete issuer {} ({}) and destroy its CA key",
                r.issuer.id, r.issuer.name
            ),
            profile_requires_approval: false,
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        if ctx.tx.issuer_in_use(&input.id).await? {
            return Err(Error::conflict(format!(
                "issuer {} still has certificates; archive or move them first",
                input.id
            )));
        }
        if !ctx.tx.delete_issuer(&input.id).await? {
            return Err(Error::not_found("issuer", input.id));
        }
        Ok(Deleted {
            id: input.id,
            deleted: true,
        })
    }
}
