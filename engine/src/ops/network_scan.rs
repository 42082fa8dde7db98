//! Network scan targets (CIDR ranges times ports) and scanning them: every
//! TLS endpoint's leaf goes into the discovered-certificates list with its
//! endpoint and SNI. The guard rails (range size, restricted addresses) are
//! checked when a target is saved and again before each scan; only an admin
//! may allow link-local and metadata addresses on a target.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Ctx, IdInput, OpMeta, Operation, Risk, Subject};
use crate::domain::{Permission, Role};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::netscan::{self, ScanPlan};
use crate::store::{DiscoverySource, NetworkScanTarget, NewSighting};

fn check_plan(ctx: &Ctx<'_>, t: &NetworkScanTarget) -> Result<ScanPlan> {
    if t.allow_restricted && ctx.principal.role != Role::Admin {
        return Err(Error::forbidden(
            "only an admin may allow link-local and metadata addresses (allow_restricted)",
        ));
    }
    ScanPlan::new(
        &t.cidrs,
        &t.ports,
        &t.server_names,
        t.allow_restricted,
        &ctx.engine.config().network_scan,
    )
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(Error::invalid("name must be 1 to 200 characters"));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScanTargetInput {
    pub name: String,
    /// Networks in CIDR notation (`10.0.0.0/24`) or single addresses.
    pub cidrs: Vec<String>,
    /// TCP ports to try on every address (443, 8443, ...).
    pub ports: Vec<u16>,
    /// Names to send as SNI, one handshake each; empty sends none.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Scanned by the scheduled loop (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allow link-local and cloud metadata addresses; admins only.
    #[serde(default)]
    pub allow_restricted: bool,
}

fn yes() -> bool {
    true
}

operation! {
    CreateNetworkScanTarget {
        name: "create_network_scan_target",
        title: "Create a network scan target",
        description: "Add CIDR ranges and ports for the network scanner; refused with the reason when the range is over the size limit or covers link-local or metadata addresses (an admin may allow those).",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "network_scan_target",
        input: CreateScanTargetInput,
        output: NetworkScanTarget,
        subject: |i| (None, format!("Create network scan target '{}' ({} on ports {:?})", i.name, i.cidrs.join(", "), i.ports)),
    }
    |ctx, input| {
        check_name(&input.name)?;
        if ctx.tx.scan_target_named(&input.name).await?.is_some() {
            return Err(Error::conflict(format!("a scan target named '{}' exists", input.name)));
        }
        let t = NetworkScanTarget {
            id: ctx.new_id("nst"),
            name: input.name,
            cidrs: input.cidrs.iter().map(|c| c.trim().to_owned()).collect(),
            ports: input.ports,
            server_names: input.server_names,
            enabled: input.enabled,
            allow_restricted: input.allow_restricted,
            last_scan_at: None,
            last_scan: None,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        let plan = check_plan(ctx, &t)?;
        ctx.tx.save_scan_target(&t).await?;
        ctx.audit_resource_id = Some(t.id.clone());
        ctx.note("endpoints", plan.endpoints);
        Ok(t)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateScanTargetInput {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Option<Vec<u16>>,
    #[serde(default)]
    pub server_names: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Admins only.
    #[serde(default)]
    pub allow_restricted: Option<bool>,
}

operation! {
    UpdateNetworkScanTarget {
        name: "update_network_scan_target",
        title: "Update a network scan target",
        description: "Change a network scan target's networks, ports, SNI names or whether it is scanned; the guard rails are checked again.",
        risk: Write,
        permission: Write,
        idempotent: true,
        resource: "network_scan_target",
        input: UpdateScanTargetInput,
        output: NetworkScanTarget,
        subject: |i| (Some(i.id.clone()), format!("Update network scan target {}", i.id)),
    }
    |ctx, input| {
        let mut t = ctx
            .tx
            .scan_target(&input.id)
            .await?
            .ok_or_else(|| Error::not_found("network_scan_target", input.id.clone()))?;
        if let Some(n) = input.name {
            check_name(&n)?;
            if n != t.name && ctx.tx.scan_target_named(&n).await?.is_some() {
                return Err(Error::conflict(format!("a scan target named '{n}' exists")));
            }
            t.name = n;
        }
        if let Some(c) = input.cidrs {
            t.cidrs = c.iter().map(|c| c.trim().to_owned()).collect();
        }
        if let Some(p) = input.ports {
            t.ports = p;
        }
        if let Some(s) = input.server_names {
            t.server_names = s;
        }
        if let Some(e) = input.enabled {
            t.enabled = e;
        }
        if let Some(a) = input.allow_restricted {
            if a != t.allow_restricted && ctx.principal.role != Role::Admin {
                return Err(Error::forbidden(
                    "only an admin may change allow_restricted",
                ));
            }
            t.allow_restricted = a;
        }
        // A target an admin allowed stays allowed when an operator edits its ports.
        if t.allow_restricted && ctx.principal.role != Role::Admin {
            ScanPlan::new(&t.cidrs, &t.ports, &t.server_names, true, &ctx.engine.config().network_scan)?;
        } else {
            check_plan(ctx, &t)?;
        }
        t.updated_at = ctx.now;
        ctx.tx.save_scan_target(&t).await?;
        Ok(t)
    }
}

// ---------------------------------------------------------------- scanning

/// One endpoint that served a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScanFinding {
    /// `ip:port`.
    pub endpoint: String,
    /// The SNI name sent, if any.
    pub server_name: Option<String>,
    /// The discovered certificate it is recorded as (`dc-...`).
    pub discovered_id: String,
    pub fingerprint: String,
    pub common_name: Option<String>,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub key_type: String,
    /// First time this fingerprint was seen anywhere.
    pub new: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScanReport {
    pub target_id: String,
    /// Handshakes attempted (addresses x ports x names).
    pub handshakes: u64,
    /// Endpoints that completed a TLS handshake.
    pub tls: u64,
    /// Nothing listening.
    pub closed: u64,
    /// Listening, but no TLS handshake (plain HTTP, SSH, ...).
    pub not_tls: u64,
    /// Served leaves that could not be parsed as X.509.
    pub unreadable: u64,
    pub duration_ms: u64,
    pub findings: Vec<ScanFinding>,
}

pub struct ScanNetworkTarget;

impl Operation for ScanNetworkTarget {
    type Input = IdInput;
    type Output = ScanReport;
    const META: OpMeta = OpMeta {
        name: "scan_network_target",
        title: "Scan a network target now",
        description: "Scan one network scan target now: each TLS leaf served is recorded as a discovered certificate (closed and non-TLS ports are counted, not errors).",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: true,
        open_world: true,
        resource: "network_scan_target",
        // The range was decided (and gated, like every write) when the target
        // was saved; a scan only records what answers there.
        gateable: false,
    };

    async fn outside_tx(
        engine: &Engine,
        input: &Self::Input,
        memo: &mut super::Memo,
    ) -> Result<()> {
        let target = {
            let mut tx = engine.store().begin_read().await?;
            let t = tx.scan_target(&input.id).await?;
            tx.rollback().await?;
            t.ok_or_else(|| Error::not_found("network_scan_target", input.id.clone()))?
        };
        let cfg = &engine.config().network_scan;
        let plan = ScanPlan::new(
            &target.cidrs,
            &target.ports,
            &target.server_names,
            target.allow_restricted,
            cfg,
        )?;
        let outcome = netscan::scan(&plan, cfg).await;
        memo.network_scan = Some((target.id, outcome));
        Ok(())
    }

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            summary: format!("Scan network target {}", input.id),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let (target_id, outcome) = ctx
            .memo
            .network_scan
            .take()
            .filter(|(id, _)| *id == input.id)
            .ok_or_else(|| Error::internal("scan_network_target ran without its scan"))?;
        let mut report = ScanReport {
            target_id: target_id.clone(),
            handshakes: outcome.handshakes,
            tls: outcome.served.len() as u64,
            closed: outcome.closed,
            not_tls: outcome.not_tls,
            unreadable: 0,
            duration_ms: outcome.duration_ms,
            findings: Vec::with_capacity(outcome.served.len()),
        };
        for s in &outcome.served {
            let info = match crate::pki::cert::parse_certificate_der(&s.leaf) {
                Ok(i) => i,
                Err(_) => {
                    report.unreadable += 1;
                    continue;
                }
            };
            let d = super::discovery::new_discovered(&info);
            let endpoint = s.endpoint.to_string();
            let new_id = ctx.new_id("dc");
            let (id, new) = ctx
                .tx
                .record_discovery(
                    &new_id,
                    &d,
                    &NewSighting {
                        source: DiscoverySource::Network,
                        agent_id: None,
                        location: &endpoint,
                        server_name: s.server_name.as_deref(),
                        key_path: None,
                        scan_target_id: Some(&target_id),
                    },
                    ctx.now,
                )
                .await?;
            report.findings.push(ScanFinding {
                endpoint,
                server_name: s.server_name.clone(),
                discovered_id: id,
                fingerprint: d.fingerprint,
                common_name: d.common_name,
                subject_dn: d.subject_dn,
                issuer_dn: d.issuer_dn,
                sans: d.sans,
                not_before: d.not_before,
                not_after: d.not_after,
                key_type: d.key_type,
                new,
            });
        }
        let figures = serde_json::json!({
            "handshakes": report.handshakes, "tls": report.tls, "closed": report.closed,
            "not_tls": report.not_tls, "unreadable": report.unreadable,
            "certificates": report.findings.len(), "duration_ms": report.duration_ms,
        });
        ctx.tx
            .record_scan_run(&target_id, ctx.now, &figures)
            .await?;
        ctx.audit_resource_id = Some(target_id);
        ctx.note("figures", figures);
        Ok(report)
    }
}
