//! Triage of discovered certificates: what agents find on disk and the
//! network scanner finds on the wire, in one list deduplicated by SHA-256
//! fingerprint, each remembering every place it was seen. A certificate is
//! claimed (linked to a managed certificate, or imported as one through the
//! import path) or dismissed.
//!
//! Only certificates are accepted: a report carrying private key material is
//! refused whole, and key files next to certificates are known by path only.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agents_work::{agent_meta, ensure_agent_self};
use super::{Ctx, ImportCertificates, ImportCertificatesInput, ImportOutcome, List};
use super::{OpMeta, Operation, Risk, Subject, paginate};
use crate::error::{Error, Result};
use crate::pki::CertificateInfo;
use crate::store::{
    DiscoveredCertificate, DiscoveryFilter, DiscoverySource, DiscoveryStatus, NewDiscovered,
    NewSighting,
};

/// Most certificates one report carries (the agent sends larger finds in batches).
pub const MAX_DISCOVERY_BATCH: usize = 500;
/// Longest path kept.
const MAX_PATH: usize = 4096;
/// Largest PEM of one reported certificate.
const MAX_CERT_PEM: usize = 64 * 1024;

/// What certctl records about a parsed certificate.
pub(crate) fn new_discovered(info: &CertificateInfo) -> NewDiscovered {
    let sans = info
        .names
        .dns
        .iter()
        .cloned()
        .chain(info.names.ips.iter().map(|ip| ip.to_string()))
        .chain(info.names.emails.iter().cloned())
        .collect();
    NewDiscovered {
        fingerprint: info.fingerprint_sha256.clone(),
        common_name: info.subject_cn.clone(),
        subject_dn: info.subject_dn.clone(),
        issuer_dn: info.issuer_dn.clone(),
        sans,
        serial: info.serial_hex.clone(),
        key_type: info
            .key_algorithm
            .map(|k| k.as_str().to_owned())
            .unwrap_or_else(|| "other".into()),
        is_ca: info.is_ca,
        not_before: info.not_before,
        not_after: info.not_after,
        cert_pem: crate::pki::pem_certificate(&info.der),
    }
}

// ---------------------------------------------------------------- agent reports

/// One certificate an agent found.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryReportItem {
    /// The file it was found in (several certificates of a bundle share it).
    pub path: String,
    /// The certificate alone, as one PEM `CERTIFICATE` block.
    pub cert_pem: String,
    /// A private key file next to it, by path only (never its contents).
    #[serde(default)]
    pub key_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportDiscoveriesInput {
    /// The agent id (`ag-...`).
    pub id: String,
    /// What it found, at most 500 per call (none is a valid report).
    #[serde(default)]
    pub certificates: Vec<DiscoveryReportItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveryReport {
    pub received: usize,
    /// Fingerprints seen for the first time anywhere.
    pub new: usize,
    /// Fingerprints already known (from this or another place).
    pub known: usize,
    /// The discovered-certificate ids, in report order.
    pub ids: Vec<String>,
}

/// Parses one reported item: exactly one certificate, no key material.
fn parse_item(i: usize, item: &DiscoveryReportItem) -> Result<CertificateInfo> {
    let at = |msg: String| Error::invalid(format!("certificates[{i}]: {msg}"));
    if item.path.is_empty() || item.path.len() > MAX_PATH {
        return Err(at(format!("path must be 1 to {MAX_PATH} bytes")));
    }
    if item.key_path.as_ref().is_some_and(|k| k.len() > MAX_PATH) {
        return Err(at(format!("key_path must be at most {MAX_PATH} bytes")));
    }
    if item.cert_pem.len() > MAX_CERT_PEM {
        return Err(at("the certificate is larger than 64 KiB".into()));
    }
    if item.cert_pem.contains("PRIVATE KEY") {
        return Err(at(
            "contains private key material; report certificates only (keys are named by path)"
                .into(),
        ));
    }
    let mut infos =
        crate::pki::parse_certificate_bundle(&item.cert_pem).map_err(|e| at(e.to_string()))?;
    if infos.len() != 1 {
        return Err(at(format!(
            "cert_pem must hold exactly one certificate, not {}",
            infos.len()
        )));
    }
    Ok(infos.remove(0))
}

pub struct ReportAgentDiscoveries;

impl Operation for ReportAgentDiscoveries {
    type Input = ReportDiscoveriesInput;
    type Output = DiscoveryReport;
    const META: OpMeta = agent_meta(
        "report_agent_discoveries",
        "Report certificates found on disk",
        "An agent reports the certificates it found in its discovery directories (PEM or DER, with key files named by path only); called by the agent itself.",
        Risk::Write,
        "agent",
    );

    fn prepare(input: &Self::Input, _memo: &mut super::Memo) -> Result<()> {
        if input.certificates.len() > MAX_DISCOVERY_BATCH {
            return Err(Error::invalid(format!(
                "a report carries at most {MAX_DISCOVERY_BATCH} certificates, not {}; send batches",
                input.certificates.len()
            )));
        }
        for (i, item) in input.certificates.iter().enumerate() {
            parse_item(i, item)?;
        }
        Ok(())
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            summary: format!(
                "Agent {} reports {} certificate(s) found on disk",
                input.id,
                input.certificates.len()
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        if ctx.tx.agent(&input.id).await?.is_none() {
            return Err(Error::not_found("agent", input.id));
        }
        let mut report = DiscoveryReport {
            received: input.certificates.len(),
            new: 0,
            known: 0,
            ids: Vec::with_capacity(input.certificates.len()),
        };
        for (i, item) in input.certificates.iter().enumerate() {
            let info = parse_item(i, item)?;
            let new_id = ctx.new_id("dc");
            let (id, new) = ctx
                .tx
                .record_discovery(
                    &new_id,
                    &new_discovered(&info),
                    &NewSighting {
                        source: DiscoverySource::Agent,
                        agent_id: Some(&input.id),
                        location: &item.path,
                        server_name: None,
                        key_path: item.key_path.as_deref(),
                        scan_target_id: None,
                    },
                    ctx.now,
                )
                .await?;
            if new {
                report.new += 1;
            } else {
                report.known += 1;
            }
            report.ids.push(id);
        }
        ctx.note("received", report.received);
        ctx.note("new", report.new);
        Ok(report)
    }
}

// ---------------------------------------------------------------- triage list

list_input! {
    ListDiscoveredInput {
        /// Only certificates this agent found.
        agent_id: Option<String>,
        /// Only certificates in this triage state.
        status: Option<DiscoveryStatus>,
        /// Only certificates seen by this source (`agent` or `network`).
        source: Option<DiscoverySource>,
    }
}

const SORT_DISCOVERED: &[&str] = &[
    "last_seen_at",
    "first_seen_at",
    "not_after",
    "common_name",
    "created_at",
    "id",
];

operation! {
    ListDiscoveredCertificates {
        name: "list_discovered_certificates",
        title: "List discovered certificates",
        description: "List certificates found by agents on disk and by network scans, one entry per fingerprint with every place it was seen.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "discovered_certificate",
        input: ListDiscoveredInput,
        output: List<DiscoveredCertificate>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let filter = DiscoveryFilter {
            status: input.status,
            source: input.source,
            agent_id: input.agent_id.clone(),
        };
        let rows = ctx.tx.discovered_certificates(&filter).await?;
        let mut page = paginate(rows, &input.list_params(), "-last_seen_at", SORT_DISCOVERED)?;
        ctx.tx.attach_sightings(&mut page.data, crate::store::LIST_SIGHTINGS).await?;
        Ok(page)
    }
}

// ---------------------------------------------------------------- claim, dismiss

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDiscoveredInput {
    /// The discovered certificate (`dc-...`).
    pub id: String,
    /// Link to this managed certificate (`mc-...`) instead of creating one.
    #[serde(default)]
    pub certificate_id: Option<String>,
    /// When creating: the issuer that renews it (default: its outside CA,
    /// which cannot issue, so nothing renews until one is chosen).
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// When creating: the profile (default `prof-default`).
    #[serde(default)]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimOutput {
    pub discovered: DiscoveredCertificate,
    /// The managed certificate it is now part of.
    pub certificate_id: String,
    /// Whether a managed certificate was created (false: linked to one).
    pub created: bool,
}

operation! {
    ClaimDiscoveredCertificate {
        name: "claim_discovered_certificate",
        title: "Claim a discovered certificate",
        description: "Bring a discovered certificate under management: link it to an existing managed certificate (certificate_id), or create one from it through the import path (an outside CA becomes an External issuer).",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "discovered_certificate",
        input: ClaimDiscoveredInput,
        output: ClaimOutput,
        subject: |i| (Some(i.id.clone()), match &i.certificate_id {
            Some(c) => format!("Claim discovered certificate {} as part of {c}", i.id),
            None => format!("Claim discovered certificate {} as a new managed certificate", i.id),
        }),
    }
    |ctx, input| {
        let found = ctx
            .tx
            .discovered_certificate(&input.id)
            .await?
            .ok_or_else(|| Error::not_found("discovered_certificate", input.id.clone()))?;
        if found.status == DiscoveryStatus::Claimed {
            return Err(Error::conflict(format!(
                "{} is already claimed as {}",
                found.id,
                found.certificate_id.as_deref().unwrap_or("?")
            )));
        }
        let (certificate_id, created) = match &input.certificate_id {
            Some(cid) => {
                if input.issuer_id.is_some() || input.profile_id.is_some() || input.owner_id.is_some()
                    || input.team_id.is_some() || input.environment.is_some()
                {
                    return Err(Error::invalid(
                        "give certificate_id to link, or the new certificate's settings to create one, not both",
                    ));
                }
                if ctx.tx.certificate(cid, ctx.engine.status_view(ctx.now)).await?.is_none() {
                    return Err(Error::invalid(format!("unknown certificate_id '{cid}'")));
                }
                (cid.clone(), false)
            }
            None => {
                if found.is_ca {
                    return Err(Error::invalid(format!(
                        "{} is a CA certificate; claim the leaf certificates it issued, or link it with certificate_id",
                        found.id
                    )));
                }
                let pem = found.cert_pem.clone().unwrap_or_default();
                let report = ImportCertificates::execute(ctx, ImportCertificatesInput {
                    pem,
                    issuer_id: input.issuer_id.clone(),
                    profile_id: input.profile_id.clone(),
                    owner_id: input.owner_id.clone(),
                    team_id: input.team_id.clone(),
                    environment: input.environment.clone(),
                })
                .await?;
                let item = report
                    .items
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::internal("the import returned no item"))?;
                match (item.outcome, item.certificate_id) {
                    (ImportOutcome::Imported, Some(id)) => (id, true),
                    (ImportOutcome::Exists, Some(id)) => (id, false),
                    _ => {
                        return Err(Error::invalid(format!(
                            "{} cannot be managed: {}",
                            found.id,
                            item.message.unwrap_or_else(|| "the import skipped it".into())
                        )));
                    }
                }
            }
        };
        ctx.tx
            .set_discovery_status(&found.id, DiscoveryStatus::Claimed, Some(&certificate_id), None, ctx.now)
            .await?;
        ctx.note("certificate_id", certificate_id.clone());
        ctx.note("created", created);
        let discovered = ctx
            .tx
            .discovered_certificate(&found.id)
            .await?
            .ok_or_else(|| Error::internal("discovered certificate vanished"))?;
        Ok(ClaimOutput { discovered, certificate_id, created })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DismissDiscoveredInput {
    /// The discovered certificate (`dc-...`).
    pub id: String,
    /// Why it needs no management (kept with it).
    #[serde(default)]
    pub reason: Option<String>,
}

operation! {
    DismissDiscoveredCertificate {
        name: "dismiss_discovered_certificate",
        title: "Dismiss a discovered certificate",
        description: "Set a discovered certificate aside (a test certificate, a vendor's appliance), with the reason; it stays in the list as dismissed and can still be claimed later.",
        risk: Write,
        permission: Write,
        idempotent: true,
        resource: "discovered_certificate",
        input: DismissDiscoveredInput,
        output: DiscoveredCertificate,
        subject: |i| (Some(i.id.clone()), format!("Dismiss discovered certificate {}", i.id)),
    }
    |ctx, input| {
        let found = ctx
            .tx
            .discovered_certificate(&input.id)
            .await?
            .ok_or_else(|| Error::not_found("discovered_certificate", input.id.clone()))?;
        if found.status == DiscoveryStatus::Claimed {
            return Err(Error::conflict(format!(
                "{} is claimed as {}; it cannot be dismissed",
                found.id,
                found.certificate_id.as_deref().unwrap_or("?")
            )));
        }
        let reason = input.reason.map(|r| r.chars().take(1000).collect::<String>());
        ctx.tx
            .set_discovery_status(&found.id, DiscoveryStatus::Dismissed, None, reason.as_deref(), ctx.now)
            .await?;
        ctx.tx
            .discovered_certificate(&found.id)
            .await?
            .ok_or_else(|| Error::internal("discovered certificate vanished"))
    }
}

// ---------------------------------------------------------------- summary

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySummaryInput {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoverySummary {
    /// Distinct certificates (fingerprints) discovered.
    pub total: i64,
    /// Counts by triage state (`unmanaged`, `claimed`, `dismissed`).
    pub by_status: BTreeMap<String, i64>,
    /// Certificates seen by each source (`agent`, `network`); one seen by
    /// both counts in both.
    pub by_source: BTreeMap<String, i64>,
}

operation! {
    GetDiscoverySummary {
        name: "get_discovery_summary",
        title: "Summarize discovered certificates",
        description: "Counts of discovered certificates by triage state (unmanaged, claimed, dismissed) and by source (agent, network).",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "discovered_certificate",
        input: DiscoverySummaryInput,
        output: DiscoverySummary,
        subject: |_i| (None, String::new()),
    }
    |ctx, _input| {
        let (status, source) = ctx.tx.discovery_counts().await?;
        let mut by_status: BTreeMap<String, i64> = [
            DiscoveryStatus::Unmanaged,
            DiscoveryStatus::Claimed,
            DiscoveryStatus::Dismissed,
        ]
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
        by_status.extend(status);
        let mut by_source: BTreeMap<String, i64> = [DiscoverySource::Agent, DiscoverySource::Network]
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        by_source.extend(source);
        Ok(DiscoverySummary {
            total: by_status.values().sum(),
            by_status,
            by_source,
        })
    }
}
