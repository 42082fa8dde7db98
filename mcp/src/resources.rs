//! Resources: read-only views of the inventory an assistant can attach to a
//! conversation. Each read runs an operation as the caller, so roles and the
//! audit log apply exactly as for tools.

use certctl_engine::domain::{ApprovalStatus, EffectiveStatus, Principal};
use certctl_engine::ops::{self, Operation, Outcome};
use certctl_engine::store::CertificateFilter;
use certctl_engine::{Engine, Error};
use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use serde::Serialize;
use serde_json::json;

const JSON: &str = "application/json";

pub fn list() -> Vec<Resource> {
    [
        ("certctl://inventory/summary", "inventory-summary", "Inventory summary", "Certificates by status (valid, expiring, expired, revoked, ...), issuers, agents and pending approvals."),
        ("certctl://certificates/expiring", "expiring-certificates", "Certificates expiring within 30 days", "Valid certificates whose expiry falls within the next 30 days, soonest first."),
        ("certctl://approvals/pending", "pending-approvals", "Pending approvals", "Requests waiting for a human decision, with what each will do."),
        ("certctl://audit/recent", "recent-audit-events", "Recent audit events", "The 50 newest audit events: who did what, when, with what outcome."),
        ("certctl://issuers", "issuers", "Issuers", "The CAs certctl issues from, with their CA certificates."),
    ]
    .into_iter()
    .map(|(uri, name, title, desc)| {
        Resource::new(uri, name)
            .with_title(title)
            .with_description(desc)
            .with_mime_type(JSON)
    })
    .collect()
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("certctl://certificates/{id}", "certificate")
            .with_title("One certificate")
            .with_description("A certificate's details, versions and targets as JSON, and its current PEM certificate and chain.")
            .with_mime_type(JSON),
        ResourceTemplate::new("certctl://certificates/expiring/{days}", "expiring-within")
            .with_title("Certificates expiring within N days")
            .with_description("Valid certificates whose expiry falls within the next N days (1 to 3650), soonest first.")
            .with_mime_type(JSON),
    ]
}

/// Reads one resource. Unknown URIs and ids are `NotFound`.
pub async fn read(
    engine: &Engine,
    principal: &Principal,
    uri: &str,
) -> Result<Vec<ResourceContents>, Error> {
    let rest = uri
        .strip_prefix("certctl://")
        .ok_or_else(|| Error::not_found("resource", uri))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["inventory", "summary"] => {
            let s = run::<ops::GetStatsSummary>(engine, principal, Default::default()).await?;
            Ok(vec![text(to_json(&s)?, uri)])
        }
        ["issuers"] => {
            let s = run::<ops::ListIssuers>(engine, principal, Default::default()).await?;
            Ok(vec![text(to_json(&s)?, uri)])
        }
        ["approvals", "pending"] => {
            let input = ops::ListApprovalsInput {
                status: Some(ApprovalStatus::Pending),
                per_page: Some(200),
                ..Default::default()
            };
            let s = run::<ops::ListApprovals>(engine, principal, input).await?;
            Ok(vec![text(to_json(&s)?, uri)])
        }
        ["audit", "recent"] => {
            let input = ops::AuditLogInput {
                per_page: Some(50),
                ..Default::default()
            };
            let s = run::<ops::GetAuditLog>(engine, principal, input).await?;
            Ok(vec![text(to_json(&s)?, uri)])
        }
        ["certificates", "expiring"] => expiring(engine, principal, uri, 30).await,
        ["certificates", "expiring", days] => {
            let days: i64 = days
                .parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| Error::invalid("days must be a whole number from 1 to 3650"))?;
            expiring(engine, principal, uri, days).await
        }
        ["certificates", id] => {
            let input = ops::CertificateIdInput {
                id: (*id).to_owned(),
            };
            let d = run::<ops::GetCertificate>(engine, principal, input).await?;
            let mut out = vec![text(to_json(&d)?, uri)];
            if let Some(v) = d.versions.first() {
                out.push(
                    ResourceContents::text(
                        format!("{}{}", v.cert_pem, v.chain_pem),
                        format!("{uri}#pem"),
                    )
                    .with_mime_type("application/pem-certificate-chain"),
                );
            }
            Ok(out)
        }
        _ => Err(Error::not_found("resource", uri)),
    }
}

async fn expiring(
    engine: &Engine,
    principal: &Principal,
    uri: &str,
    days: i64,
) -> Result<Vec<ResourceContents>, Error> {
    let now = engine.now();
    let input = ops::ListCertificatesInput {
        filter: CertificateFilter {
            expires_after: Some(now),
            expires_before: Some(now + days * 86400),
            ..Default::default()
        },
        per_page: Some(1000),
        ..Default::default()
    };
    let page = run::<ops::ListCertificates>(engine, principal, input).await?;
    let data: Vec<_> = page
        .data
        .into_iter()
        .filter(|c| {
            let s =
                c.0.get("status")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
            s == EffectiveStatus::Valid.as_str() || s == EffectiveStatus::Expiring.as_str()
        })
        .collect();
    let body = json!({ "days": days, "count": data.len(), "certificates": data });
    Ok(vec![text(body.to_string(), uri)])
}

async fn run<O: Operation>(
    engine: &Engine,
    principal: &Principal,
    input: O::Input,
) -> Result<O::Output, Error> {
    match engine.call::<O>(principal, input).await? {
        Outcome::Completed { result } => Ok(result),
        // Read operations are never gated.
        Outcome::ApprovalRequired(t) => Err(Error::ApprovalRequired(t.summary)),
    }
}

fn text(body: String, uri: &str) -> ResourceContents {
    ResourceContents::text(body, uri).with_mime_type(JSON)
}

/// Serializes an operation's output as compact JSON.
fn to_json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::internal(e.to_string()))
}
