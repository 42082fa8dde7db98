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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssuerInput {
    pub name: String,
    /// `acme`, `step_ca`, `vault` and `script` connect to an external CA (settings: docs/issuers.md).
    pub kind: IssuerKind,
    /// Connector settings (no secrets), e.g. the ACME directory URL or the Vault role.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Connector secrets (tokens, keys, EAB HMAC): stored encrypted, never returned.
    #[serde(default)]
    pub secrets: serde_json::Map<String, serde_json::Value>,
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
        description: "Add an issuer: a new local CA, a sub-CA imported from an external root, or a connector to an external CA (ACME, step-ca, Vault PKI, script); secrets are stored encrypted and never returned.",
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
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let name = input.name.trim();
        if name.is_empty() {
            return Err(Error::invalid("issuer name must not be empty"));
        }
        let id = ctx.new_id("iss");
        let master = ctx.engine.master_key();
        crate::issuers::validate(
            input.kind,
            &input.config,
            &input.secrets,
            ctx.engine.config().outbound,
        )?;
        let sealed = crate::issuers::seal_secrets(master, &id, &input.secrets)?;
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
            IssuerKind::Acme | IssuerKind::StepCa | IssuerKind::Vault | IssuerKind::Script => None,
            // Refused by `validate` above; outside CAs come from imports.
            IssuerKind::External => {
                return Err(Error::invalid(
                    "external issuers are created by import_certificates",
                ));
            }
        };
        let issuer = Issuer {
            id: id.clone(),
            name: name.to_owned(),
            kind: input.kind,
            config: serde_json::Value::Object(input.config),
            secret_fields: Vec::new(),
            enabled: true,
            ca_cert_pem: None,
            ca_chain_pem: None,
            ca_subject: None,
            ca_not_after: None,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        ctx.tx
            .insert_issuer_with_secrets(&issuer, material.as_ref(), sealed.as_ref())
            .await?;
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
    /// Replaces the connector secrets (stored encrypted, never returned).
    #[serde(default)]
    pub secrets: Option<serde_json::Map<String, serde_json::Value>>,
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
            four_eyes: None,
            bound: Vec::new(),
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
        let empty = serde_json::Map::new();
        if let Some(c) = input.config {
            crate::issuers::validate(issuer.kind, &c, &empty, ctx.engine.config().outbound)?;
            issuer.config = serde_json::Value::Object(c);
        }
        if let Some(secrets) = input.secrets {
            let config = issuer.config.as_object().cloned().unwrap_or_default();
            crate::issuers::validate(issuer.kind, &config, &secrets, ctx.engine.config().outbound)?;
            match crate::issuers::seal_secrets(ctx.engine.master_key(), &issuer.id, &secrets)? {
                Some(sealed) => {
                    ctx.tx.set_issuer_secrets(&issuer.id, &sealed).await?;
                    issuer.secret_fields = sealed.fields;
                }
                None => {
                    return Err(Error::invalid(
                        "secrets must not be empty; give the full set of secrets",
                    ));
                }
            }
            ctx.note("secrets_replaced", true);
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerTestResult {
    pub id: String,
    pub kind: IssuerKind,
    /// Whether the CA answered and accepted the credentials.
    pub ok: bool,
    /// What was checked, or the CA's own explanation of what is wrong.
    pub detail: String,
}

pub struct TestIssuer;

impl Operation for TestIssuer {
    type Input = IdInput;
    type Output = IssuerTestResult;
    const META: OpMeta = OpMeta {
        name: "test_issuer",
        title: "Test an issuer",
        description: "Check that an issuer's CA is reachable and accepts certctl's credentials (ACME directory and account, Vault token and role, step-ca provisioner, script present); issues nothing.",
        risk: Risk::Read,
        permission: Permission::Admin,
        idempotent: true,
        open_world: true,
        resource: "issuer",
        gateable: false,
    };

    async fn outside_tx(
        engine: &crate::Engine,
        input: &Self::Input,
        memo: &mut super::Memo,
    ) -> Result<()> {
        // Read through the pool, then reach the CA with no transaction open.
        let record = engine
            .store()
            .issuer(&input.id)
            .await?
            .ok_or_else(|| Error::not_found("issuer", input.id.clone()))?;
        let kind = record.issuer.kind;
        let result = if kind.is_local() {
            match &record.ca {
                Some(m) => engine
                    .signing_ca(&record.issuer.id, m)
                    .map(|_| {
                        "the local CA key opens with this installation's master key".to_owned()
                    })
                    .map_err(|e| e.to_string()),
                None => Err("the local issuer has no CA material".to_owned()),
            }
        } else {
            match crate::issuers::connector_for(
                engine.master_key(),
                &record,
                engine.config().outbound,
            ) {
                Ok(c) => c.test().await.map_err(|e| e.message),
                Err(e) => Err(e.to_string()),
            }
        };
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        memo.issuer_test = Some(IssuerTestResult {
            id: input.id.clone(),
            kind,
            ok,
            detail,
        });
        Ok(())
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        ctx.audit_resource_id = Some(input.id.clone());
        let result = ctx
            .memo
            .issuer_test
            .take()
            .ok_or_else(|| Error::internal("test_issuer ran without its check"))?;
        ctx.note("ok", result.ok);
        Ok(result)
    }
}
