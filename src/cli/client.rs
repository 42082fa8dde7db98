//! Client commands: they talk to a running server through
//! [`certctl_api::client::Client`], never to the database.

use std::process::ExitCode;

use anyhow::Context;
use certctl_api::client::Client;
use certctl_engine::domain::{AuditCheckpoint, ChainVerification, FindingKind};
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

/// `certctl audit verify [--checkpoints FILE]`.
pub async fn audit_verify(
    global: &GlobalArgs,
    checkpoints: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let client = connect(global)?;
    let input = match checkpoints {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the checkpoints file {}", path.display()))?;
            let copy: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the checkpoints file {} is not JSON", path.display()))?;
            json!({ "checkpoints": copy })
        }
        None => json!({}),
    };
    let v: ChainVerification = client
        .call_completed("verify_audit_log", &input)
        .await
        .context("cannot verify the audit log")?;
    // Name the broken event, not just its position, when the server can say.
    let broken_seq = v
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::BrokenLink)
        .and_then(|f| f.seq);
    let broken_event = match broken_seq {
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
        Format::Table => print_verification(&v, broken_seq, broken_event.as_ref()),
    }
    if v.valid {
        return Ok(ExitCode::SUCCESS);
    }
    let failures: Vec<&str> = v
        .findings
        .iter()
        .filter(|f| f.failure)
        .map(|f| f.kind.as_str())
        .collect();
    eprintln!(
        "certctl: error: the audit log failed verification: {}",
        failures.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// The findings, failures first, one line each.
fn print_verification(
    v: &ChainVerification,
    broken_seq: Option<i64>,
    broken_event: Option<&serde_json::Value>,
) {
    if v.valid {
        println!(
            "audit chain intact: {} events verified, {} checkpoints verified",
            v.checked, v.checkpoints_verified
        );
    }
    for f in &v.findings {
        match f.kind {
            FindingKind::BrokenLink => {
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
                    broken_seq.unwrap_or(0),
                    v.reason.as_deref().unwrap_or("unknown reason"),
                    v.checked
                );
            }
            _ if f.failure => println!("FAILED {}: {}", f.kind.as_str(), f.message),
            _ => println!("warning {}: {}", f.kind.as_str(), f.message),
        }
    }
}

/// `certctl audit checkpoints [--after N]`: the export, as JSON always (it
/// is meant to be saved to a file).
pub async fn audit_checkpoints(
    global: &GlobalArgs,
    after: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let client = connect(global)?;
    let input = match after {
        Some(n) => json!({ "after": n }),
        None => json!({}),
    };
    let export: serde_json::Value = client
        .call_completed("get_audit_checkpoints", &input)
        .await
        .context("cannot export the audit checkpoints")?;
    println!("{}", serde_json::to_string_pretty(&export)?);
    Ok(ExitCode::SUCCESS)
}

/// `certctl audit checkpoint`: sign a checkpoint of the head now.
pub async fn audit_checkpoint(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = connect(global)?;
    let cp: AuditCheckpoint = client
        .call_completed("checkpoint_audit_log", &json!({}))
        .await
        .context("cannot write an audit checkpoint")?;
    match global.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&cp)?),
        Format::Table => println!(
            "checkpoint {} covers events 1 to {} (head {}, hash {})",
            cp.number, cp.head_seq, cp.head_event_id, cp.head_hash
        ),
    }
    Ok(ExitCode::SUCCESS)
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
