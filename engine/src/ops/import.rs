//! Bringing certificates issued elsewhere under management: a PEM bundle in,
//! one managed certificate per leaf out. Imports are idempotent by the
//! SHA-256 fingerprint, so re-running an import changes nothing.
//!
//! Each outside CA becomes an issuer of kind `External` (`iss-ext-...`,
//! named after its distinguished name, created on first import), and the
//! imported versions are recorded under it: serials are unique per CA, as
//! RFC 5280 promises, never enter a local CA's CRL or OCSP answers, and the
//! inventory shows which outside CAs the fleet depends on. The certificate
//! itself is renewed from the issuer the caller names (default: its outside
//! CA, which cannot issue, so renewal asks the operator to choose one).

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificates::subject_names;
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::bootstrap::DEFAULT_PROFILE_ID;
use crate::domain::{EffectiveStatus, Issuer, IssuerKind, ManagedCertificate, Permission};
use crate::error::{Error, Result};
use crate::pki::{self, CertificateInfo};
use crate::store::NewVersion;

/// Prefix of the ids of issuers that stand for outside CAs.
pub const EXTERNAL_ISSUER_PREFIX: &str = "iss-ext-";

/// Most certificates one call imports; larger bundles are sent in batches
/// (the CLI does that, with a progress bar).
pub const MAX_IMPORT_BATCH: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportCertificatesInput {
    /// PEM text with one or more `CERTIFICATE` blocks: leaf certificates,
    /// each optionally followed by its CA certificates (its chain).
    pub pem: String,
    /// The issuer that renews these certificates; defaults to each one's
    /// outside CA (nothing is renewed until one of yours is chosen).
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// Profile for renewals; defaults to `prof-default`.
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// What happened to one leaf of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// A new managed certificate was created.
    Imported,
    /// A certificate with this fingerprint was already managed.
    Exists,
    /// Not imported; `message` says why.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportItem {
    /// SHA-256 fingerprint of the leaf (lower-case hex).
    pub fingerprint: String,
    pub common_name: Option<String>,
    pub outcome: ImportOutcome,
    /// The managed certificate (new or existing).
    pub certificate_id: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportReport {
    pub imported: usize,
    pub existing: usize,
    pub skipped: usize,
    /// One entry per leaf certificate, in bundle order.
    pub items: Vec<ImportItem>,
}

pub struct ImportCertificates;

impl Operation for ImportCertificates {
    type Input = ImportCertificatesInput;
    type Output = ImportReport;
    const META: OpMeta = OpMeta {
        name: "import_certificates",
        title: "Import certificates",
        description: "Bring certificates issued elsewhere under management from a PEM bundle (leaf certificates, each optionally followed by its chain); idempotent by fingerprint, private keys are never accepted.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn prepare(input: &Self::Input, _memo: &mut super::Memo) -> Result<()> {
        parse_bundle(&input.pem).map(|_| ())
    }

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let leaves = parse_bundle(&input.pem)?.len();
        Ok(Subject {
            resource_id: None,
            summary: format!("Import {leaves} certificate(s) from a PEM bundle"),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let leaves = parse_bundle(&input.pem)?;
        // Renewed by the scheduler only when they belong to an issuer that
        // can issue; an outside CA's certificates wait until one is chosen.
        let renewable = match &input.issuer_id {
            Some(issuer_id) => {
                let record =
                    ctx.tx.issuer(issuer_id).await?.ok_or_else(|| {
                        Error::invalid(format!("unknown issuer_id '{issuer_id}'"))
                    })?;
                record.issuer.kind != IssuerKind::External
            }
            None => false,
        };
        let profile_id = input
            .profile_id
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE_ID.to_owned());
        if ctx.tx.profile(&profile_id).await?.is_none() {
            return Err(Error::invalid(format!("unknown profile_id '{profile_id}'")));
        }
        if let Some(o) = &input.owner_id
            && ctx.tx.owner(o).await?.is_none()
        {
            return Err(Error::invalid(format!("unknown owner_id '{o}'")));
        }
        if let Some(t) = &input.team_id
            && ctx.tx.team(t).await?.is_none()
        {
            return Err(Error::invalid(format!("unknown team_id '{t}'")));
        }

        let mut report = ImportReport {
            imported: 0,
            existing: 0,
            skipped: 0,
            items: Vec::with_capacity(leaves.len()),
        };
        let mut outside_cas: HashMap<String, String> = HashMap::new();
        for leaf in leaves {
            let outside = match outside_cas.get(&leaf.info.issuer_dn) {
                Some(id) => id.clone(),
                None => {
                    let id = ensure_external_issuer(ctx, &leaf.info.issuer_dn).await?;
                    outside_cas.insert(leaf.info.issuer_dn.clone(), id.clone());
                    id
                }
            };
            let renew_from = input.issuer_id.clone().unwrap_or_else(|| outside.clone());
            let item = import_one(
                ctx,
                &leaf,
                (&outside, &renew_from, renewable),
                &profile_id,
                &input,
            )
            .await?;
            match item.outcome {
                ImportOutcome::Imported => report.imported += 1,
                ImportOutcome::Exists => report.existing += 1,
                ImportOutcome::Skipped => report.skipped += 1,
            }
            report.items.push(item);
        }
        ctx.note("imported", report.imported);
        ctx.note("existing", report.existing);
        ctx.note("skipped", report.skipped);
        Ok(report)
    }
}

/// A leaf with the CA certificates that followed it in the bundle.
struct Leaf {
    info: CertificateInfo,
    chain_pem: String,
}

/// Splits a bundle into leaves and their chains. Malformed PEM, a private
/// key, or a bundle without any leaf fails the whole call before anything is
/// written.
fn parse_bundle(text: &str) -> Result<Vec<Leaf>> {
    if text.contains("PRIVATE KEY-----") {
        return Err(Error::invalid(
            "the bundle contains a private key; certctl imports certificates only (keys stay on the servers that use them)",
        ));
    }
    let infos = pki::parse_certificate_bundle(text)?;
    let mut leaves: Vec<Leaf> = Vec::new();
    for info in infos {
        if info.is_ca {
            if let Some(last) = leaves.last_mut() {
                last.chain_pem.push_str(&pki::pem_certificate(&info.der));
            }
            continue;
        }
        leaves.push(Leaf {
            info,
            chain_pem: String::new(),
        });
    }
    if leaves.is_empty() {
        return Err(Error::invalid(
            "the bundle has no leaf certificate (only CA certificates, or nothing)",
        ));
    }
    if leaves.len() > MAX_IMPORT_BATCH {
        return Err(Error::invalid(format!(
            "the bundle has {} leaf certificates; import at most {MAX_IMPORT_BATCH} per call",
            leaves.len()
        )));
    }
    Ok(leaves)
}

async fn import_one(
    ctx: &mut Ctx<'_>,
    leaf: &Leaf,
    (outside_ca, issuer_id, renewable): (&str, &str, bool),
    profile_id: &str,
    input: &ImportCertificatesInput,
) -> Result<ImportItem> {
    let info = &leaf.info;
    let mut item = ImportItem {
        fingerprint: info.fingerprint_sha256.clone(),
        common_name: info.subject_cn.clone(),
        outcome: ImportOutcome::Skipped,
        certificate_id: None,
        message: None,
    };
    if let Some(existing) = ctx
        .tx
        .certificate_with_fingerprint(&info.fingerprint_sha256)
        .await?
    {
        item.outcome = ImportOutcome::Exists;
        item.certificate_id = Some(existing);
        return Ok(item);
    }
    let Some(key_algorithm) = info.key_algorithm else {
        item.message = Some(
            "its key type is not one certctl manages (P-256, P-384, RSA 2048-4096, Ed25519)".into(),
        );
        return Ok(item);
    };
    // Names: the SANs, or the common name when there are none (old certificates).
    let mut sans: Vec<String> = info
        .names
        .dns
        .iter()
        .cloned()
        .chain(info.names.ips.iter().map(|ip| ip.to_string()))
        .chain(info.names.emails.iter().cloned())
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if sans.is_empty()
        && let Some(cn) = &info.subject_cn
    {
        sans.push(cn.to_ascii_lowercase());
    }
    if let Err(e) = subject_names(&sans) {
        item.message = Some(format!("its names cannot be managed: {e}"));
        return Ok(item);
    }
    if ctx.tx.serial_taken(outside_ca, &info.serial_hex).await? {
        item.message = Some(format!(
            "another certificate from {} has serial {} (the CA reused a serial)",
            info.issuer_dn, info.serial_hex
        ));
        return Ok(item);
    }
    let common_name = info
        .subject_cn
        .as_ref()
        .map(|cn| cn.to_ascii_lowercase())
        .filter(|cn| sans.contains(cn))
        .unwrap_or_else(|| sans[0].clone());
    let id = ctx.new_id("mc");
    let cert = ManagedCertificate {
        id: id.clone(),
        name: common_name.clone(),
        common_name,
        sans,
        status: EffectiveStatus::Pending,
        environment: input.environment.clone().unwrap_or_default(),
        issuer_id: issuer_id.to_owned(),
        profile_id: profile_id.to_owned(),
        owner_id: input.owner_id.clone(),
        team_id: input.team_id.clone(),
        renewal_policy_id: None,
        labels: [("imported".to_owned(), serde_json::Value::Bool(true))]
            .into_iter()
            .collect(),
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
    let life = info.not_after - info.not_before;
    let c = crate::policy::candidate_of(ctx, &cert, Some(life), Some(key_algorithm)).await?;
    if let Some(refused) = crate::policy::check_item(ctx, &c, false).await? {
        item.message = Some(refused);
        return Ok(item);
    }
    ctx.tx.insert_certificate(&cert).await?;
    let version_id = ctx.new_id("cv");
    ctx.tx
        .insert_version(&NewVersion {
            id: version_id.clone(),
            certificate_id: id.clone(),
            issuer_id: outside_ca.to_owned(),
            serial: info.serial_hex.clone(),
            fingerprint: info.fingerprint_sha256.clone(),
            key_algorithm,
            not_before: info.not_before,
            not_after: info.not_after,
            cert_pem: pki::pem_certificate(&info.der),
            chain_pem: leaf.chain_pem.clone(),
            csr_pem: None,
            private_key_sealed: None,
            created_at: ctx.now,
        })
        .await?;
    // Its renewal time, like every new version, when an issuer of ours
    // renews it (update_certificate schedules it once one is chosen).
    if renewable {
        crate::notify::after_new_version(
            ctx.tx,
            ctx.engine.config(),
            ctx.now,
            false,
            &cert,
            &crate::notify::VersionFacts {
                id: &version_id,
                serial: &info.serial_hex,
                not_before: info.not_before,
                not_after: info.not_after,
            },
        )
        .await?;
    } else {
        ctx.tx.set_renewal_schedule(&id, None).await?;
    }
    item.outcome = ImportOutcome::Imported;
    item.certificate_id = Some(id);
    Ok(item)
}

/// The issuer standing for the outside CA named `issuer_dn`, created the
/// first time one of its certificates is imported (two importers at once
/// agree on one row: the id is derived from the name).
async fn ensure_external_issuer(ctx: &mut Ctx<'_>, issuer_dn: &str) -> Result<String> {
    let digest = pki::fingerprint_sha256(issuer_dn.as_bytes());
    let id = format!("{EXTERNAL_ISSUER_PREFIX}{}", &digest[..20]);
    if ctx.tx.issuer(&id).await?.is_some() {
        return Ok(id);
    }
    let issuer = Issuer {
        id: id.clone(),
        // Names are unique; the id's hash keeps two CAs with the same
        // display text apart.
        name: format!("External: {issuer_dn} ({})", &digest[..8]),
        kind: IssuerKind::External,
        config: serde_json::json!({ "issuer_dn": issuer_dn }),
        secret_fields: Vec::new(),
        enabled: true,
        ca_cert_pem: None,
        ca_chain_pem: None,
        ca_subject: None,
        ca_not_after: None,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    ctx.tx.insert_issuer(&issuer, None).await?;
    Ok(id)
}
