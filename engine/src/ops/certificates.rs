//! Certificate operations: list, get, create, update, archive, issue, renew
//! (revocation lives in `revocation.rs`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::bootstrap::{DEFAULT_PROFILE_ID, LOCAL_ISSUER_ID};
use crate::domain::{
    CertificateVersion, EffectiveStatus, IssuerKind, Job, JobKind, JobStatus, KeygenMode,
    LifecycleStatus, ManagedCertificate, Permission, Profile, Target,
};
use crate::error::{Error, Result};
use crate::pki::{self, LeafRequest, SubjectNames};
use crate::store::{CertificateFilter, CertificatePatch, CertificateSort, NewVersion};

// ---------------------------------------------------------------- list

// No `deny_unknown_fields` here: serde does not support it together with
// `flatten`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ListCertificatesInput {
    #[serde(flatten)]
    pub filter: CertificateFilter,
    /// Default `not_after` (soonest expiry first); a `-` prefix descends.
    pub sort: Option<CertificateSort>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1-based page (offset paging; not with `cursor`).
    pub page: Option<i64>,
    /// 1 to 1000, default 50.
    pub per_page: Option<i64>,
    /// Return only these fields of each certificate (sparse fieldset); `id` is always included.
    pub fields: Option<Vec<String>>,
}

/// A certificate in a list; with `fields`, only the requested fields are
/// present. Shared: a list page served from the page cache hands out the
/// cached objects instead of copying them for every call, and writes a whole
/// certificate out as the JSON text the cache made once (the same object).
#[derive(Debug, Clone)]
pub struct SparseCertificate(
    pub Arc<serde_json::Map<String, serde_json::Value>>,
    Option<Arc<serde_json::value::RawValue>>,
);

impl PartialEq for SparseCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Serialize for SparseCertificate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.1 {
            Some(text) => text.as_ref().serialize(s),
            None => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SparseCertificate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde_json::Map::deserialize(d).map(|m| Self(Arc::new(m), None))
    }
}

impl JsonSchema for SparseCertificate {
    fn schema_name() -> Cow<'static, str> {
        "SparseCertificate".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = ManagedCertificate::json_schema(generator);
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("required");
            obj.insert(
                "description".into(),
                "A managed certificate; when `fields` was given, only those fields (and `id`) are present."
                    .into(),
            );
        }
        schema
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificatePage {
    pub data: Vec<SparseCertificate>,
    /// Total matching certificates (first page only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

const CERT_FIELDS: &[&str] = &[
    "id",
    "name",
    "common_name",
    "sans",
    "status",
    "environment",
    "issuer_id",
    "profile_id",
    "owner_id",
    "team_id",
    "renewal_policy_id",
    "labels",
    "current_version_id",
    "serial",
    "fingerprint",
    "key_algorithm",
    "not_before",
    "not_after",
    "revoked_at",
    "revocation_reason",
    "created_at",
    "updated_at",
];

pub struct ListCertificates;

impl Operation for ListCertificates {
    type Input = ListCertificatesInput;
    type Output = CertificatePage;
    const META: OpMeta = OpMeta {
        name: "list_certificates",
        title: "List certificates",
        description: "List managed certificates by status (e.g. expiring), owner, team, issuer, profile, environment or expiry; use it to find certificates before acting on them.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: false,
    };

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let window = super::ListParams {
            page: input.page,
            per_page: input.per_page,
            cursor: input.cursor.clone(),
            ..Default::default()
        };
        let (limit, offset) = window.window()?;
        if let Some(fields) = &input.fields
            && let Some(bad) = fields.iter().find(|f| !CERT_FIELDS.contains(&f.as_str()))
        {
            return Err(Error::invalid(format!(
                "unknown field '{bad}'; known fields: {}",
                CERT_FIELDS.join(", ")
            )));
        }
        let page = ctx
            .engine
            .store()
            .list_certificates_cached(
                &input.filter,
                input.sort.unwrap_or_default(),
                input.cursor.as_deref(),
                offset,
                limit,
                ctx.engine.status_view(ctx.now),
            )
            .await?;
        let objects = page.objects()?;
        let data = match &input.fields {
            None => objects
                .iter()
                .map(|(m, text)| SparseCertificate(m.clone(), Some(text.clone())))
                .collect(),
            Some(fields) => objects
                .iter()
                .map(|(m, _)| {
                    SparseCertificate(
                        Arc::new(
                            m.iter()
                                .filter(|(k, _)| *k == "id" || fields.iter().any(|f| f == *k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        ),
                        None,
                    )
                })
                .collect::<Vec<_>>(),
        };
        ctx.note("returned", data.len());
        Ok(CertificatePage {
            data,
            total: page.page.total,
            next_cursor: page.page.next_cursor.clone(),
        })
    }
}

// ---------------------------------------------------------------- get

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateIdInput {
    /// The certificate id (`mc-...`).
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateDetails {
    pub certificate: ManagedCertificate,
    /// Issued versions, newest first, with PEM certificate and chain.
    pub versions: Vec<CertificateVersion>,
    /// Targets the certificate is deployed to.
    pub targets: Vec<Target>,
    /// Its latest policy violations (at most 20, newest first); all of them
    /// with list_policy_violations.
    #[serde(default)]
    pub policy_violations: Vec<crate::domain::PolicyViolation>,
}

pub struct GetCertificate;

impl Operation for GetCertificate {
    type Input = CertificateIdInput;
    type Output = CertificateDetails;
    const META: OpMeta = OpMeta {
        name: "get_certificate",
        title: "Get a certificate",
        description: "Get one certificate with its versions (PEM certificate and chain), status and the targets it is deployed to.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: false,
    };

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let certificate = load(ctx, &input.id).await?;
        ctx.audit_resource_id = Some(certificate.id.clone());
        let versions = ctx.engine.store().versions(&certificate.id).await?;
        let targets = ctx.tx.certificate_targets(&certificate.id).await?;
        let policy_violations = ctx.tx.certificate_violations(&certificate.id, 20).await?;
        Ok(CertificateDetails {
            certificate,
            versions,
            targets,
            policy_violations,
        })
    }
}

/// The certificate, from this call's memo when `describe` already read it.
/// Reads the profile and issuer along with it (one query) for the issuance path.
async fn load_memo(ctx: &mut Ctx<'_>, id: &str) -> Result<ManagedCertificate> {
    if let Some(c) = ctx.memo.certificate.as_ref().filter(|c| c.id == id) {
        return Ok(c.clone());
    }
    let view = ctx.engine.status_view(ctx.now);
    let (c, profile, issuer) = ctx
        .tx
        .certificate_bundle(id, view)
        .await?
        .ok_or_else(|| Error::not_found("certificate", id))?;
    ctx.memo.certificate = Some(c.clone());
    ctx.memo.profile = Some(profile);
    ctx.memo.issuer = Some(issuer);
    Ok(c)
}

/// The certificate's issuer, from this call's memo when already read.
async fn issuer_memo(ctx: &mut Ctx<'_>, id: &str) -> Result<crate::store::IssuerRecord> {
    if let Some(i) = ctx.memo.issuer.as_ref().filter(|i| i.issuer.id == id) {
        return Ok(i.clone());
    }
    let i = ctx
        .tx
        .issuer(id)
        .await?
        .ok_or_else(|| Error::internal(format!("issuer {id} is missing")))?;
    ctx.memo.issuer = Some(i.clone());
    Ok(i)
}

/// The certificate's profile, from this call's memo when already read.
async fn profile_memo(ctx: &mut Ctx<'_>, id: &str) -> Result<Profile> {
    if let Some(p) = ctx.memo.profile.as_ref().filter(|p| p.id == id) {
        return Ok(p.clone());
    }
    let p = ctx
        .tx
        .profile(id)
        .await?
        .ok_or_else(|| Error::internal(format!("profile {id} is missing")))?;
    ctx.memo.profile = Some(p.clone());
    Ok(p)
}

/// The facts about a certificate that an approval of a call on it is bound
/// to: the version (and serial) it acts on, the names, and where the next
/// version would come from. A renewal, a profile or issuer change, or new
/// names in between make the approval stale.
pub(crate) fn facts(c: &ManagedCertificate) -> Vec<String> {
    vec![
        format!("certificate {}", c.id),
        format!(
            "version {} (serial {})",
            c.current_version_id.as_deref().unwrap_or("none"),
            c.serial.as_deref().unwrap_or("none")
        ),
        format!("names {}", c.sans.join(",")),
        format!("profile {}", c.profile_id),
        format!("issuer {}", c.issuer_id),
    ]
}

pub(crate) async fn load(ctx: &mut Ctx<'_>, id: &str) -> Result<ManagedCertificate> {
    let view = ctx.engine.status_view(ctx.now);
    ctx.tx
        .certificate(id, view)
        .await?
        .ok_or_else(|| Error::not_found("certificate", id))
}

// ---------------------------------------------------------------- create

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCertificateInput {
    /// The primary DNS name (also added to the SANs).
    pub common_name: String,
    /// Additional subject alternative names: DNS names or IP addresses.
    #[serde(default)]
    pub sans: Vec<String>,
    /// A human name; defaults to the common name.
    #[serde(default)]
    pub name: Option<String>,
    /// Environment label, e.g. `production`.
    #[serde(default)]
    pub environment: Option<String>,
    /// Issuer id; defaults to the local CA (`iss-local`).
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// Profile id; defaults to `prof-default`.
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub renewal_policy_id: Option<String>,
    #[serde(default)]
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Targets to deploy to.
    #[serde(default)]
    pub target_ids: Vec<String>,
}

pub struct CreateCertificate;

impl Operation for CreateCertificate {
    type Input = CreateCertificateInput;
    type Output = ManagedCertificate;
    const META: OpMeta = OpMeta {
        name: "create_certificate",
        title: "Create a certificate",
        description: "Add a certificate to the inventory (names, issuer, profile, owner, targets) without issuing it yet; issue it next with issue_certificate or let an agent submit a CSR.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        Ok(Subject {
            resource_id: None,
            summary: format!("Create certificate {}", input.common_name),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let common_name = input.common_name.trim().to_ascii_lowercase();
        let mut sans = vec![common_name.clone()];
        for s in &input.sans {
            let s = s.trim().to_ascii_lowercase();
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
        let names = subject_names(&sans)?;
        let issuer_id = input.issuer_id.unwrap_or_else(|| LOCAL_ISSUER_ID.into());
        let profile_id = input
            .profile_id
            .unwrap_or_else(|| DEFAULT_PROFILE_ID.into());
        let issuer = ctx
            .tx
            .issuer(&issuer_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("unknown issuer_id '{issuer_id}'")))?;
        if !issuer.issuer.enabled {
            return Err(Error::invalid(format!("issuer '{issuer_id}' is disabled")));
        }
        let profile = ctx
            .tx
            .profile(&profile_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("unknown profile_id '{profile_id}'")))?;
        pki::check_request(
            &profile,
            profile.default_key_type,
            &names,
            profile.default_ttl_seconds,
        )?;
        check_refs(
            ctx,
            input.owner_id.as_deref(),
            input.team_id.as_deref(),
            input.renewal_policy_id.as_deref(),
        )
        .await?;
        for t in &input.target_ids {
            if ctx.tx.target(t).await?.is_none() {
                return Err(Error::invalid(format!("unknown target_id '{t}'")));
            }
        }
        let id = ctx.new_id("mc");
        let cert = ManagedCertificate {
            id: id.clone(),
            name: input
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| common_name.clone()),
            common_name,
            sans,
            status: EffectiveStatus::Pending,
            environment: input.environment.unwrap_or_default(),
            issuer_id,
            profile_id,
            owner_id: input.owner_id,
            team_id: input.team_id,
            renewal_policy_id: input.renewal_policy_id,
            labels: input.labels,
            current_version_id: None,
            serial: None,
            fingerprint: None,
            key_algorithm: None,
            not_before: None,
            not_after: None,
            revoked_at: None,
            revocation_reason: None,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        crate::policy::check_certificate(ctx, &cert, None, None, true).await?;
        ctx.tx.insert_certificate(&cert).await?;
        for t in &input.target_ids {
            ctx.tx.attach_target(&id, t).await?;
        }
        ctx.audit_resource_id = Some(id);
        ctx.note("common_name", cert.common_name.clone());
        Ok(cert)
    }
}

pub(crate) async fn check_refs(
    ctx: &mut Ctx<'_>,
    owner: Option<&str>,
    team: Option<&str>,
    policy: Option<&str>,
) -> Result<()> {
    if let Some(o) = owner
        && ctx.tx.owner(o).await?.is_none()
    {
        return Err(Error::invalid(format!("unknown owner_id '{o}'")));
    }
    if let Some(t) = team
        && ctx.tx.team(t).await?.is_none()
    {
        return Err(Error::invalid(format!("unknown team_id '{t}'")));
    }
    if let Some(p) = policy
        && ctx.tx.renewal_policy(p).await?.is_none()
    {
        return Err(Error::invalid(format!("unknown renewal_policy_id '{p}'")));
    }
    Ok(())
}

/// Splits SAN strings into DNS names, IP addresses and e-mail addresses.
pub(crate) fn subject_names(sans: &[String]) -> Result<SubjectNames> {
    let mut names = SubjectNames::default();
    for s in sans {
        if let Ok(ip) = s.parse::<IpAddr>() {
            names.ips.push(ip);
        } else if s.contains('@') {
            names.emails.push(s.clone());
        } else {
            pki::validate_dns_name(s)?;
            names.dns.push(s.clone());
        }
    }
    if names.is_empty() {
        return Err(Error::invalid("a certificate needs at least one name"));
    }
    Ok(names)
}

// ---------------------------------------------------------------- update

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCertificateInput {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// New owner; an empty string clears it.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// New team; an empty string clears it.
    #[serde(default)]
    pub team_id: Option<String>,
    /// New renewal policy; an empty string clears it.
    #[serde(default)]
    pub renewal_policy_id: Option<String>,
    /// Replaces all labels.
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// Targets to add.
    #[serde(default)]
    pub add_target_ids: Vec<String>,
    /// The issuer future versions come from (e.g. for an imported certificate).
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// The profile future versions are checked against.
    #[serde(default)]
    pub profile_id: Option<String>,
}

pub struct UpdateCertificate;

fn clearable(v: Option<String>) -> Option<Option<String>> {
    v.map(|s| if s.is_empty() { None } else { Some(s) })
}

impl Operation for UpdateCertificate {
    type Input = UpdateCertificateInput;
    type Output = ManagedCertificate;
    const META: OpMeta = OpMeta {
        name: "update_certificate",
        title: "Update a certificate",
        description: "Change a certificate's name, environment, owner, team, renewal policy, labels, targets, or the issuer and profile its next version comes from; names and keys change only by issuing a new version.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let c = load(ctx, &input.id).await?;
        // Moving a certificate off a profile that requires approval would
        // let its next issuance skip the second person: the move itself
        // needs that person (the stricter rule applies).
        let mut summary = format!("Update certificate {} ({})", c.id, c.common_name);
        let mut profile_requires_approval = false;
        if let Some(to) = input.profile_id.as_deref().filter(|p| *p != c.profile_id) {
            let strict = ctx
                .tx
                .profile(&c.profile_id)
                .await?
                .is_some_and(|p| p.requires_approval);
            summary.push_str(&format!(
                ", moving it from profile {}{} to profile {to}",
                c.profile_id,
                if strict {
                    " (which requires approval)"
                } else {
                    ""
                }
            ));
            profile_requires_approval = strict;
        }
        if let Some(i) = input.issuer_id.as_deref().filter(|i| *i != c.issuer_id) {
            summary.push_str(&format!(", issuing from {i} instead of {}", c.issuer_id));
        }
        Ok(Subject {
            resource_id: Some(c.id.clone()),
            summary,
            profile_requires_approval,
            four_eyes: None,
            bound: facts(&c),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        load(ctx, &input.id).await?;
        let patch = CertificatePatch {
            name: input.name.filter(|n| !n.trim().is_empty()),
            environment: input.environment,
            owner_id: clearable(input.owner_id),
            team_id: clearable(input.team_id),
            renewal_policy_id: clearable(input.renewal_policy_id),
            labels: input.labels,
            issuer_id: input.issuer_id,
            profile_id: input.profile_id,
        };
        if let Some(i) = &patch.issuer_id {
            let record = ctx
                .tx
                .issuer(i)
                .await?
                .ok_or_else(|| Error::invalid(format!("unknown issuer_id '{i}'")))?;
            if record.issuer.kind == IssuerKind::External || !record.issuer.enabled {
                return Err(Error::invalid(format!(
                    "issuer '{i}' cannot issue (it is disabled or stands for external CAs)"
                )));
            }
        }
        if let Some(p) = &patch.profile_id
            && ctx.tx.profile(p).await?.is_none()
        {
            return Err(Error::invalid(format!("unknown profile_id '{p}'")));
        }
        check_refs(
            ctx,
            patch.owner_id.clone().flatten().as_deref(),
            patch.team_id.clone().flatten().as_deref(),
            patch.renewal_policy_id.clone().flatten().as_deref(),
        )
        .await?;
        for t in &input.add_target_ids {
            if ctx.tx.target(t).await?.is_none() {
                return Err(Error::invalid(format!("unknown target_id '{t}'")));
            }
            ctx.tx.attach_target(&input.id, t).await?;
        }
        ctx.tx
            .update_certificate(&input.id, &patch, ctx.now)
            .await?;
        // A new policy, or a new issuer (an imported certificate moving to
        // one of ours), changes when it renews.
        if patch.renewal_policy_id.is_some() || patch.issuer_id.is_some() {
            crate::notify::reschedule(ctx, Some(&input.id), None).await?;
        }
        let updated = load(ctx, &input.id).await?;
        // The metadata rules (issuer, domains, metadata, environment, renewal
        // lead over the current version's lifetime); key and lifetime rules
        // were checked when the version was issued.
        let life = updated
            .not_before
            .zip(updated.not_after)
            .map(|(b, a)| a - b);
        let c = crate::policy::candidate_of(ctx, &updated, life, None).await?;
        let c = crate::policy::Candidate {
            lifetime_seconds: None,
            ..c
        };
        crate::policy::check(ctx, &c).await?;
        Ok(updated)
    }
}

// ---------------------------------------------------------------- archive

pub struct ArchiveCertificate;

impl Operation for ArchiveCertificate {
    type Input = CertificateIdInput;
    type Output = ManagedCertificate;
    const META: OpMeta = OpMeta {
        name: "archive_certificate",
        title: "Archive a certificate",
        description: "Retire a certificate from management: it stays in history but is no longer renewed or listed by default. It does not revoke it.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let c = load(ctx, &input.id).await?;
        Ok(Subject {
            resource_id: Some(c.id.clone()),
            summary: format!(
                "Archive certificate {} ({}); it will no longer be renewed",
                c.id, c.common_name
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound: facts(&c),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let c = load(ctx, &input.id).await?;
        if c.status == EffectiveStatus::Archived {
            return Err(Error::conflict(format!(
                "certificate {} is already archived",
                c.id
            )));
        }
        ctx.tx
            .set_certificate_status(&c.id, LifecycleStatus::Archived, ctx.now)
            .await?;
        load(ctx, &input.id).await
    }
}

// ---------------------------------------------------------------- issue

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificateInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// PKCS#10 CSR (PEM or base64 DER) made where the key lives. Omit only for
    /// profiles with server-side key generation.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// Validity in seconds; defaults to the profile's, at most its maximum.
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueOutput {
    pub certificate: ManagedCertificate,
    /// The new version, when the issuer signed it now (the local CA kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<CertificateVersion>,
    /// The issuance job, when an external CA signs it (ACME, step-ca, Vault,
    /// script): `pending` until the job loop has the certificate; follow it with get_object (kind job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

pub struct IssueCertificate;

impl Operation for IssueCertificate {
    type Input = IssueCertificateInput;
    type Output = IssueOutput;
    const META: OpMeta = OpMeta {
        name: "issue_certificate",
        title: "Issue a certificate",
        description: "Issue a new version of a certificate from a CSR (the key stays where it was generated), checked against the certificate's profile. The local CA signs at once; an external CA (ACME, step-ca, Vault, script) gets a job that the job loop completes.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn prepare(input: &Self::Input, memo: &mut super::Memo) -> Result<()> {
        prepare_csr(input.csr_pem.as_deref(), memo)
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        issuance_subject(ctx, &input.id, "Issue").await
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let cert = load_memo(ctx, &input.id).await?;
        match issue_version(
            ctx,
            cert.clone(),
            input.csr_pem.as_deref(),
            input.ttl_seconds,
            JobKind::Issuance,
        )
        .await?
        {
            Issuance::Now(issued) => Ok(IssueOutput {
                certificate: issued.0,
                version: Some(issued.1),
                job: None,
            }),
            Issuance::Queued(job) => Ok(IssueOutput {
                certificate: cert,
                version: None,
                job: Some(job),
            }),
        }
    }
}

/// Parses and verifies a CSR before the transaction: a malformed or forged
/// CSR is refused without touching the database, and the signature check
/// does not hold the write lock.
fn prepare_csr(csr_pem: Option<&str>, memo: &mut super::Memo) -> Result<()> {
    if let Some(text) = csr_pem {
        memo.csr = Some((text.to_owned(), pki::parse_csr(text)?));
    }
    Ok(())
}

async fn issuance_subject(ctx: &mut Ctx<'_>, id: &str, verb: &str) -> Result<Subject> {
    let c = load_memo(ctx, id).await?;
    let profile = profile_memo(ctx, &c.profile_id).await.ok();
    Ok(Subject {
        resource_id: Some(c.id.clone()),
        summary: format!(
            "{verb} certificate {} for {} from issuer {} under profile {}",
            c.id,
            c.sans.join(", "),
            c.issuer_id,
            c.profile_id
        ),
        profile_requires_approval: profile.is_some_and(|p| p.requires_approval),
        four_eyes: None,
        bound: facts(&c),
    })
}

/// What [`issue_version`] did.
pub(crate) enum Issuance {
    /// The local CA signed: the certificate as it now is and its new version.
    Now(Box<(ManagedCertificate, CertificateVersion)>),
    /// An external CA will sign: the pending job (carrying the CSR) that the
    /// job loop runs outside any transaction.
    Queued(Job),
}

/// Issues and stores a new version of `cert`: the one path every issuance
/// and renewal takes, so profile rules are checked in one place. The local
/// CA signs here; for an external issuer the same checks run and a job of
/// `job_kind` is recorded instead, since no CA is called inside a transaction.
pub(crate) async fn issue_version(
    ctx: &mut Ctx<'_>,
    mut cert: ManagedCertificate,
    csr_pem: Option<&str>,
    ttl_seconds: Option<i64>,
    job_kind: JobKind,
) -> Result<Issuance> {
    if cert.status == EffectiveStatus::Archived {
        return Err(Error::conflict(format!(
            "certificate {} is archived",
            cert.id
        )));
    }
    let record = issuer_memo(ctx, &cert.issuer_id).await?;
    if !record.issuer.enabled {
        return Err(Error::conflict(format!(
            "issuer {} is disabled",
            cert.issuer_id
        )));
    }
    if record.issuer.kind == IssuerKind::External {
        return Err(Error::conflict(format!(
            "certificate {} was imported from a CA certctl does not manage; choose one of your issuers for it before renewing",
            cert.id
        )));
    }
    let external = !record.issuer.kind.is_local();
    let profile = profile_memo(ctx, &cert.profile_id).await?;
    let ttl = ttl_seconds.unwrap_or(profile.default_ttl_seconds);
    let names = subject_names(&cert.sans)?;
    let version_id = ctx.new_id("cv");

    // The key: from the CSR (normal path), or generated here when both the
    // installation and the profile allow server-side key generation.
    let (spki_der, key_algorithm, csr_text, sealed_key) = match csr_pem {
        Some(text) => {
            let csr = match ctx.memo.csr.take() {
                Some((prepared, csr)) if prepared == text => csr,
                _ => pki::parse_csr(text)?,
            };
            for dns in &csr.names.dns {
                if !names.dns.contains(dns) {
                    return Err(Error::policy(format!(
                        "the CSR asks for {dns}, which is not a name of certificate {}",
                        cert.id
                    )));
                }
            }
            for ip in &csr.names.ips {
                if !names.ips.contains(ip) {
                    return Err(Error::policy(format!(
                        "the CSR asks for {ip}, which is not a name of certificate {}",
                        cert.id
                    )));
                }
            }
            pki::check_request(&profile, csr.key_algorithm, &names, ttl)?;
            (csr.spki_der, csr.key_algorithm, Some(text.to_owned()), None)
        }
        None => {
            if external {
                return Err(Error::policy(format!(
                    "a CSR is required: issuer {} ({}) is an external CA, and server-side key generation is only offered with the local CA",
                    cert.issuer_id,
                    record.issuer.kind.as_str()
                )));
            }
            if profile.keygen_mode != KeygenMode::Server {
                return Err(Error::policy(format!(
                    "a CSR is required: profile '{}' has keys generated on the server that uses the certificate",
                    profile.name
                )));
            }
            if ctx.engine.config().keygen_mode != KeygenMode::Server {
                return Err(Error::policy(
                    "a CSR is required: server-side key generation is disabled (CERTCTL_KEYGEN_MODE=agent)",
                ));
            }
            pki::check_request(&profile, profile.default_key_type, &names, ttl)?;
            tracing::warn!(
                certificate = %cert.id,
                profile = %profile.name,
                "generating a private key on the control plane (server-side key generation)"
            );
            let key = pki::generate_key(profile.default_key_type)?;
            let sealed = ctx
                .engine
                .master_key()
                .seal(key.pkcs8_pem.as_bytes(), &version_id)?;
            ctx.note("server_keygen", true);
            ctx.memo.server_key = Some(key.pkcs8_pem.clone());
            (key.spki_der.clone(), key.algorithm, None, Some(sealed))
        }
    };

    // Only a CSR's key can be on an agent.
    let key_holder = match &csr_text {
        Some(_) => ctx.memo.key_holder_agent.take(),
        None => None,
    };
    // Policy rules, with the key and lifetime this version will have.
    crate::policy::check_certificate(ctx, &cert, Some(ttl), Some(key_algorithm), false).await?;

    if external {
        let job = Job {
            id: ctx.new_id("job"),
            kind: job_kind,
            status: JobStatus::Pending,
            certificate_id: Some(cert.id.clone()),
            target_id: None,
            agent_id: None,
            attempts: 0,
            max_attempts: 5,
            run_after: ctx.now,
            last_error: None,
            payload: serde_json::json!({
                "requested_by": ctx.principal.id,
                "issuer_id": cert.issuer_id,
                "csr_pem": csr_text,
                "ttl_seconds": ttl,
                // The issuer job queues the deployments when the CA has signed.
                "deploy_agent_id": key_holder,
            }),
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        ctx.tx.insert_job(&job).await?;
        ctx.audit_resource_id = Some(cert.id.clone());
        ctx.note("job_id", job.id.clone());
        ctx.note("issuer_kind", record.issuer.kind.as_str());
        return Ok(Issuance::Queued(job));
    }
    let material = record
        .ca
        .as_ref()
        .ok_or_else(|| Error::internal(format!("issuer {} has no CA material", cert.issuer_id)))?;
    let ca = ctx.engine.signing_ca(&cert.issuer_id, material)?;
    let not_before = ctx.now - 60;
    let not_after = ctx.now + ttl;
    if not_after > ca.not_after() {
        return Err(Error::policy(format!(
            "the requested validity ends after the issuing CA expires ({}); ask for a shorter ttl",
            crate::clock::to_rfc3339(ca.not_after())
        )));
    }
    let base = ctx.engine.config().public_url.clone();
    let crl_url = base
        .as_ref()
        .map(|b| format!("{b}/api/v1/crl/{}", cert.issuer_id));
    let ocsp_url = base
        .as_ref()
        .map(|b| format!("{b}/api/v1/ocsp/{}", cert.issuer_id));
    let leaf = ca.issue(&LeafRequest {
        spki_der: &spki_der,
        key_algorithm,
        common_name: &cert.common_name,
        names: &names,
        not_before,
        not_after,
        ekus: &profile.ekus,
        crl_distribution_url: crl_url.as_deref(),
        ocsp_url: ocsp_url.as_deref(),
    })?;
    let new = NewVersion {
        id: version_id,
        certificate_id: cert.id.clone(),
        issuer_id: cert.issuer_id.clone(),
        serial: leaf.serial_hex.clone(),
        fingerprint: leaf.fingerprint_sha256.clone(),
        key_algorithm,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        cert_pem: leaf.cert_pem,
        chain_pem: leaf.chain_pem,
        csr_pem: csr_text,
        private_key_sealed: sealed_key,
        created_at: ctx.now,
    };
    // A certificate that had a version is being renewed (for notifications).
    let renewed = cert.current_version_id.is_some();
    ctx.tx.insert_version(&new).await?;
    if let Some(agent_id) = &key_holder {
        let deployments = super::deployments::queue_deployments(
            ctx.tx, ctx.engine, ctx.now, &cert.id, &new.id, agent_id,
        )
        .await?;
        ctx.note("deployment_jobs", deployments);
    }
    ctx.audit_resource_id = Some(cert.id.clone());
    ctx.note("serial", new.serial.clone());
    ctx.note("version_id", new.id.clone());
    ctx.note("not_after", new.not_after);
    // The rows as `insert_version` wrote them, without reading them back.
    ctx.memo.certificate = None;
    cert.status = EffectiveStatus::of(
        LifecycleStatus::Active,
        Some(new.not_after),
        ctx.now,
        ctx.engine.config().expiring_window_seconds,
    );
    cert.current_version_id = Some(new.id.clone());
    cert.serial = Some(new.serial.clone());
    cert.fingerprint = Some(new.fingerprint.clone());
    cert.key_algorithm = Some(new.key_algorithm);
    cert.not_before = Some(new.not_before);
    cert.not_after = Some(new.not_after);
    cert.revoked_at = None;
    cert.revocation_reason = None;
    cert.updated_at = new.created_at;
    let version = CertificateVersion {
        has_private_key: new.private_key_sealed.is_some(),
        id: new.id,
        certificate_id: new.certificate_id,
        issuer_id: new.issuer_id,
        serial: new.serial,
        fingerprint: new.fingerprint,
        key_algorithm: new.key_algorithm,
        not_before: new.not_before,
        not_after: new.not_after,
        cert_pem: new.cert_pem,
        chain_pem: new.chain_pem,
        revoked_at: None,
        revocation_reason: None,
        created_at: new.created_at,
    };
    // Next renewal time, and the `renewed` event, in this transaction.
    crate::notify::after_issue(ctx, renewed, &cert, &version).await?;
    Ok(Issuance::Now(Box::new((cert, version))))
}

// ---------------------------------------------------------------- renew

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewCertificateInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// A fresh CSR. Without one, an agent-keyed certificate gets a renewal job
    /// that waits for its agent's CSR.
    #[serde(default)]
    pub csr_pem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenewOutput {
    /// The renewal job: `completed` when issued now, `awaiting_csr` when an agent must send a CSR,
    /// `pending` when an external CA signs it (the job loop completes it).
    pub job: Job,
    /// The new version, when issued now.
    pub version: Option<CertificateVersion>,
}

pub struct RenewCertificate;

impl Operation for RenewCertificate {
    type Input = RenewCertificateInput;
    type Output = RenewOutput;
    const META: OpMeta = OpMeta {
        name: "renew_certificate",
        title: "Renew a certificate",
        description: "Renew a certificate now: issues a new version from a CSR (or server-generated key), or queues a renewal job for the certificate's agent.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn prepare(input: &Self::Input, memo: &mut super::Memo) -> Result<()> {
        prepare_csr(input.csr_pem.as_deref(), memo)
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        issuance_subject(ctx, &input.id, "Renew").await
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        renew(ctx, input).await
    }
}

/// One renewal (renew_certificate, and each certificate of a bulk renewal).
pub(crate) async fn renew(ctx: &mut Ctx<'_>, input: RenewCertificateInput) -> Result<RenewOutput> {
    let cert = load_memo(ctx, &input.id).await?;
    // A certificate never issued may still be "renewed" by the agent
    // serving its targets: that is its first issuance, from a key the
    // agent makes.
    let first_issuance = cert.status == EffectiveStatus::Pending && input.csr_pem.is_none();
    if cert.status == EffectiveStatus::Archived
        || (cert.status == EffectiveStatus::Pending && !first_issuance)
    {
        return Err(Error::conflict(format!(
            "certificate {} is {}; only issued certificates are renewed (use issue_certificate first)",
            cert.id,
            cert.status.as_str()
        )));
    }
    let profile = profile_memo(ctx, &cert.profile_id).await?;
    let issue_now = input.csr_pem.is_some()
        || (profile.keygen_mode == KeygenMode::Server
            && ctx.engine.config().keygen_mode == KeygenMode::Server);
    // The agent that holds the key (the first target's agent, or a member
    // of the first target's agent group) gets the job in its work list.
    let agent_id = if issue_now {
        None
    } else {
        let targets = ctx.tx.certificate_targets(&cert.id).await?;
        super::agent_groups::key_agent(ctx.tx, &targets).await?
    };
    if first_issuance && (issue_now || agent_id.is_none()) {
        return Err(Error::conflict(format!(
            "certificate {} is pending and no agent serves its targets; issue it with issue_certificate first",
            cert.id
        )));
    }
    let mut job = Job {
        id: ctx.new_id("job"),
        kind: if first_issuance {
            JobKind::Issuance
        } else {
            JobKind::Renewal
        },
        status: JobStatus::AwaitingCsr,
        certificate_id: Some(cert.id.clone()),
        target_id: None,
        agent_id,
        attempts: 0,
        max_attempts: 5,
        run_after: ctx.now,
        last_error: None,
        payload: serde_json::json!({ "requested_by": ctx.principal.id }),
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    let version = if issue_now {
        match issue_version(ctx, cert, input.csr_pem.as_deref(), None, JobKind::Renewal).await? {
            Issuance::Now(issued) => {
                let v = issued.1;
                job.status = JobStatus::Completed;
                job.attempts = 1;
                job.payload["version_id"] = v.id.clone().into();
                Some(v)
            }
            // The external CA's job is the renewal job.
            Issuance::Queued(queued) => {
                ctx.note("job_id", queued.id.clone());
                return Ok(RenewOutput {
                    job: queued,
                    version: None,
                });
            }
        }
    } else {
        None
    };
    ctx.tx.insert_job(&job).await?;
    ctx.note("job_id", job.id.clone());
    Ok(RenewOutput { job, version })
}
