//! Client commands: they talk to a running server through
//! [`certctl_api::client::Client`], never to the database.

use std::process::ExitCode;

use anyhow::Context;
use certctl_api::client::Client;
use certctl_engine::domain::ChainVerification;
use certctl_engine::ops::StatsSummary;
use serde_json::json;

use super::{Format, GlobalArgs, from_flag_or_file};

/// The client for `--server`, with the key from `--api-key`,
/// `CERTCTL_API_KEY(_FILE)` or `DATA_DIR/admin.key`.
/// The API key: `--api-key`, `CERTCTL_API_KEY(_FILE)`, or `DIR/admin.key`.
pub fn api_key(global: &GlobalArgs) -> anyhow::Result<String> {
    Ok(
        match from_flag_or_file(global.api_key.clone(), "CERTCTL_API_KEY")? {
            Some(k) => k.0,
            None => {
                let path = global.data_dir.join("admin.key");
                crate::files::read_secret(&path).with_context(|| {
                format!(
                    "no API key: pass --api-key or set CERTCTL_API_KEY, or point --data-dir at the \
                     server's data directory (cannot read {})",
                    path.display()
                )
            })?
            }
        },
    )
}

pub fn connect(global: &GlobalArgs) -> anyhow::Result<Client> {
    Ok(Client::new(&global.server, Some(api_key(global)?))?)
}

/// `certctl approvals list|approve|reject`.
pub async fn approvals(
    global: &GlobalArgs,
    cmd: &super::ApprovalsCommand,
) -> anyhow::Result<ExitCode> {
    use super::ApprovalsCommand as A;
    let client = connect(global)?;
    let (op, input) = match cmd {
        A::List { all } => (
            "list_approvals",
            if *all {
                serde_json::json!({})
            } else {
                serde_json::json!({ "status": "pending" })
            },
        ),
        A::Approve { id, note } => (
            "approve_request",
            serde_json::json!({ "approval_id": id, "note": note }),
        ),
        A::Reject { id, note } => (
            "reject_request",
            serde_json::json!({ "approval_id": id, "note": note }),
        ),
        A::Result { id } => (
            "claim_approval_result",
            serde_json::json!({ "approval_id": id }),
        ),
    };
    let result: serde_json::Value = client.call_completed(op, &input).await?;
    if global.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        A::List { .. } => {
            let rows = result["data"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no approvals");
            }
            for a in rows {
                println!(
                    "{}  {:<9}  {:<22}  by {}  {}",
                    a["id"].as_str().unwrap_or_default(),
                    a["status"].as_str().unwrap_or_default(),
                    a["operation"].as_str().unwrap_or_default(),
                    a["requested_by"].as_str().unwrap_or_default(),
                    a["summary"].as_str().unwrap_or_default()
                );
            }
        }
        A::Approve { id, .. } => println!(
            "approved {id}: {} ran ({})",
            result["approval"]["operation"].as_str().unwrap_or_default(),
            result["approval"]["status"].as_str().unwrap_or_default()
        ),
        A::Reject { id, .. } => println!("rejected {id}; it will never run"),
        A::Result { .. } => println!("{}", serde_json::to_string_pretty(&result["result"])?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `certctl audit verify`.
pub async fn audit_verify(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = connect(global)?;
    let v: ChainVerification = client
        .call_completed("verify_audit_log", &json!({}))
        .await
        .context("cannot verify the audit log")?;
    // Name the broken event, not just its position, when the server can say.
    let broken_event = match v.first_broken_seq {
        Some(seq) => client
            .call_completed::<serde_json::Value>(
                "get_audit_log",
                &json!({ "before_seq": seq + 1, "per_page": 1 }),
            )
            .await
            .ok()
            .and_then(|l| l["data"].get(0).cloned()),
        None => None,
    };
    match global.format {
        Format::Json => {
            let mut out = serde_json::to_value(&v)?;
            if let Some(ev) = &broken_event {
                out["first_broken_event"] = ev.clone();
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table if v.valid => {
            println!("audit chain intact: {} events verified", v.checked);
        }
        Format::Table => {
            let what = broken_event
                .map(|ev| {
                    format!(
                        " ({}, {} by {})",
                        ev["id"].as_str().unwrap_or("?"),
                        ev["action"].as_str().unwrap_or("?"),
                        ev["actor"].as_str().unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            println!(
                "audit chain BROKEN at event seq {}{what}: {} ({} events before it verified)",
                v.first_broken_seq.unwrap_or(0),
                v.reason.as_deref().unwrap_or("unknown reason"),
                v.checked
            );
        }
    }
    if v.valid {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "certctl: error: the audit log's hash chain is broken at event seq {}",
            v.first_broken_seq.unwrap_or(0)
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `certctl status`.
pub async fn status(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = connect(global)?;
    let health = client.health().await.context("the server is not healthy")?;
    let summary: StatsSummary = client
        .call_completed("get_stats_summary", &json!({}))
        .await
        .context("cannot read the inventory summary")?;
    match global.format {
        Format::Json => {
            let out = json!({ "server": global.server, "health": health, "summary": summary });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => {
            let by_status = summary
                .by_status
                .iter()
                .filter(|(_, n)| n.as_i64().unwrap_or(0) > 0)
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = [
                (
                    "server",
                    format!(
                        "{} ({})",
                        global.server,
                        health["status"].as_str().unwrap_or("unknown")
                    ),
                ),
                (
                    "certificates",
                    if by_status.is_empty() {
                        summary.total_certificates.to_string()
                    } else {
                        format!("{} ({by_status})", summary.total_certificates)
                    },
                ),
                (
                    "expiring window",
                    format!("{} days", summary.expiring_window_days),
                ),
                ("issuers", summary.issuers.to_string()),
                ("agents", summary.agents.to_string()),
                ("pending approvals", summary.pending_approvals.to_string()),
            ];
            for (k, v) in rows {
                println!("{k:<18} {v}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
