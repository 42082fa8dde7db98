//! `certctl certs|agents|jobs|issuers|targets|audit ...`: each command is
//! one catalogue operation called over the HTTP API
//! (`POST /api/v1/operations/{name}`), so the server's authorization,
//! approval gate and audit apply exactly as for every other face.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certctl_api::client::Client;
use certctl_engine::ops::Outcome;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::table::{Column, expiry, now, parse_time, print_object, print_rows, text, when};
use super::{Format, GlobalArgs};

/// Exit code of a command that stopped at the approval gate: nothing ran
/// yet, and the approval's id was printed.
pub const EXIT_APPROVAL_REQUIRED: u8 = 3;

/// Paging flags shared by every `list`.
#[derive(Debug, Args)]
pub struct Paging {
    /// Page size (1 to 1000).
    #[arg(long, default_value_t = 50)]
    per_page: i64,
    /// Continue after this `next_cursor`.
    #[arg(long)]
    cursor: Option<String>,
    /// Follow every page to the end.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// List certificates, soonest expiry first.
    List {
        /// valid, expiring, expired, revoked, pending, failed, archived.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        environment: Option<String>,
        /// Expiring before this time (Unix seconds, 2027-01-31, RFC 3339, or 30d from now).
        #[arg(long)]
        expires_before: Option<String>,
        /// Expiring at or after this time.
        #[arg(long)]
        expires_after: Option<String>,
        /// not_after, -not_after, created_at, -created_at, common_name, -common_name.
        #[arg(long)]
        sort: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one certificate with its versions and targets.
    Get { id: String },
    /// Add a certificate to the inventory (issue it next, or let its agent).
    Create {
        /// The primary DNS name.
        #[arg(long = "cn")]
        common_name: String,
        /// More names (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
    /// Issue a certificate from a CSR file.
    Issue {
        id: String,
        /// PKCS#10 CSR (PEM) made where the key lives.
        #[arg(long)]
        csr: Option<PathBuf>,
        #[arg(long)]
        ttl_days: Option<i64>,
    },
    /// Renew now (with a CSR), or queue a renewal for the certificate's agent.
    Renew {
        id: String,
        #[arg(long)]
        csr: Option<PathBuf>,
    },
    /// Export a certificate: pem (with its chain), der, or pkcs12
    /// (password from CERTCTL_EXPORT_PASSWORD or CERTCTL_EXPORT_PASSWORD_FILE).
    Export(super::export::ExportArgs),
    /// Revoke the current version (normally needs an approver).
    Revoke {
        id: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one agent.
    Get { id: String },
    /// Retire an agent: its key stops working and it gets no more work.
    Retire { id: String },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// pending, awaiting_approval, awaiting_csr, running, completed, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// issuance, renewal, deployment, validation.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        certificate: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one job.
    Get { id: String },
    /// Cancel a job that has not finished.
    Cancel { id: String },
}

/// `list` and `get` for issuers and targets.
#[derive(Debug, Subcommand)]
pub enum ListGetCommand {
    /// List them.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one.
    Get { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        /// How many events.
        #[arg(long, default_value_t = 50)]
        per_page: i64,
    },
    /// Verify the audit log's hash chain against its signed checkpoints;
    /// exits non-zero on a broken link, truncation, rewrite or a bad or
    /// missing checkpoint, and prints what it found.
    Verify {
        /// An exported copy of the checkpoints (`certctl audit checkpoints`)
        /// kept outside the database: also catches checkpoints deleted there.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Export the signed checkpoints with their public key (JSON), to keep
    /// outside the database for `verify --checkpoints`.
    Checkpoints {
        /// Only checkpoints numbered above this (an incremental export).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Sign a checkpoint of the chain's head now (admin).
    Checkpoint,
}

/// Drops `null`s so the server applies its defaults.
fn input(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

fn read_file(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Runs an operation that may stop at the approval gate. A gated call
/// prints the approval and how to decide it and returns its exit code.
async fn run(client: &Client, op: &str, input: Value) -> anyhow::Result<Result<Value, ExitCode>> {
    match client.call(op, &input).await? {
        Outcome::Completed { result } => Ok(Ok(result)),
        Outcome::ApprovalRequired(t) => {
            println!("approval required: {} ({})", t.approval_id, t.summary);
            println!("{}", t.how_to_decide);
            eprintln!(
                "certctl: {op} is waiting for approval {}; nothing changed yet",
                t.approval_id
            );
            Ok(Err(ExitCode::from(EXIT_APPROVAL_REQUIRED)))
        }
    }
}

/// Reads a list page by page: one page, or all of them with `--all`.
async fn list_pages(
    client: &Client,
    op: &str,
    mut query: Map<String, Value>,
    paging: &Paging,
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    query.insert("per_page".into(), json!(paging.per_page));
    let mut cursor = paging.cursor.clone();
    let mut rows = Vec::new();
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.insert("cursor".into(), json!(c));
        }
        let page: Value = client.call_completed(op, &input(Value::Object(q))).await?;
        rows.extend(page["data"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if !paging.all || cursor.is_none() {
            return Ok((rows, cursor));
        }
    }
}

fn more(format: Format, next: Option<String>) {
    if let (Format::Table, Some(c)) = (format, next) {
        eprintln!("more: --cursor {c}  (or --all)");
    }
}

fn cert_columns() -> Vec<Column> {
    vec![
        Column::new("ID", |v| text(v, "id")),
        Column::new("COMMON NAME", |v| text(v, "common_name")),
        Column::new("STATUS", |v| text(v, "status")),
        Column::new("EXPIRES", |v| expiry(v, "not_after", now())),
        Column::new("ISSUER", |v| text(v, "issuer_id")),
        Column::new("OWNER", |v| text(v, "owner_id")),
        Column::new("ENV", |v| text(v, "environment")),
    ]
}

fn cert_fields() -> Vec<Column> {
    vec![
        Column::new("id", |v| text(&v["certificate"], "id")),
        Column::new("name", |v| text(&v["certificate"], "name")),
        Column::new("common name", |v| text(&v["certificate"], "common_name")),
        Column::new("names", |v| text(&v["certificate"], "sans")),
        Column::new("status", |v| text(&v["certificate"], "status")),
        Column::new("expires", |v| expiry(&v["certificate"], "not_after", now())),
        Column::new("serial", |v| text(&v["certificate"], "serial")),
        Column::new("fingerprint", |v| text(&v["certificate"], "fingerprint")),
        Column::new("key", |v| text(&v["certificate"], "key_algorithm")),
        Column::new("issuer", |v| text(&v["certificate"], "issuer_id")),
        Column::new("profile", |v| text(&v["certificate"], "profile_id")),
        Column::new("owner", |v| text(&v["certificate"], "owner_id")),
        Column::new("team", |v| text(&v["certificate"], "team_id")),
        Column::new("environment", |v| text(&v["certificate"], "environment")),
        Column::new("versions", |v| {
            v["versions"].as_array().map_or(0, Vec::len).to_string()
        }),
        Column::new("targets", |v| {
            v["targets"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|t| text(t, "name"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into())
        }),
    ]
}

/// `certctl certs ...`.
pub async fn certs(
    global: &GlobalArgs,
    client: &Client,
    cmd: &CertsCommand,
) -> anyhow::Result<ExitCode> {
    use CertsCommand as C;
    let format = global.format;
    match cmd {
        C::List {
            status,
            owner,
            team,
            issuer,
            environment,
            expires_before,
            expires_after,
            sort,
            paging,
        } => {
            let now = now();
            let time = |s: &Option<String>| s.as_deref().map(|s| parse_time(s, now)).transpose();
            let query = json!({
                "status": status, "owner_id": owner, "team_id": team, "issuer_id": issuer,
                "environment": environment, "expires_before": time(expires_before)?,
                "expires_after": time(expires_after)?, "sort": sort,
            });
            let query = query.as_object().cloned().unwrap_or_default();
            let (rows, next) = list_pages(client, "list_certificates", query, paging).await?;
            print_rows(format, &rows, &cert_columns(), "no certificates");
            more(format, next);
        }
        C::Export(args) => return super::export::export(global, args).await,
        C::Get { id } => {
            let v: Value = client
                .call_completed("get_certificate", &json!({ "id": id }))
                .await?;
            print_object(format, &v, &cert_fields());
        }
        C::Create {
            common_name,
            sans,
            name,
            issuer,
            profile,
            owner,
            team,
            environment,
        } => {
            let body = input(json!({
                "common_name": common_name, "sans": sans, "name": name, "issuer_id": issuer,
                "profile_id": profile, "owner_id": owner, "team_id": team,
                "environment": environment,
            }));
            let v = match run(client, "create_certificate", body).await? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            print_rows(format, std::slice::from_ref(&v), &cert_columns(), "");
        }
        C::Issue { id, csr, ttl_days } => {
            let csr = csr.as_ref().map(|p| read_file(p, "CSR")).transpose()?;
            let body = input(json!({
                "id": id, "csr_pem": csr, "ttl_seconds": ttl_days.map(|d| d * 86_400),
            }));
            let v = match run(client, "issue_certificate", body).await? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            issued(format, &v);
        }
        C::Renew { id, csr } => {
            let csr = csr.as_ref().map(|p| read_file(p, "CSR")).transpose()?;
            let v = match run(
                client,
                "renew_certificate",
                input(json!({ "id": id, "csr_pem": csr })),
            )
            .await?
            {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            match format {
                Format::Json => super::table::emit(&super::table::pretty(&v)),
                Format::Table => println!(
                    "renewal {} is {}{}",
                    text(&v["job"], "id"),
                    text(&v["job"], "status"),
                    match v["version"]["serial"].as_str() {
                        Some(s) => format!(
                            ": new version serial {s}, expires {}",
                            expiry(&v["version"], "not_after", now())
                        ),
                        None => " (its agent will send a CSR)".into(),
                    }
                ),
            }
        }
        C::Revoke { id, reason } => {
            let v = match run(
                client,
                "revoke_certificate",
                json!({ "id": id, "reason": reason }),
            )
            .await?
            {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            match format {
                Format::Json => super::table::emit(&super::table::pretty(&v)),
                Format::Table => println!(
                    "revoked {} ({}) at {}",
                    text(&v, "id"),
                    text(&v, "revocation_reason"),
                    when(&v, "revoked_at")
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn issued(format: Format, v: &Value) {
    match format {
        Format::Json => super::table::emit(&super::table::pretty(v)),
        Format::Table => println!(
            "issued {}: serial {}, expires {}",
            text(&v["certificate"], "id"),
            text(&v["version"], "serial"),
            expiry(&v["version"], "not_after", now())
        ),
    }
}

/// `certctl agents ...`.
pub async fn agents(
    global: &GlobalArgs,
    client: &Client,
    cmd: &AgentsCommand,
) -> anyhow::Result<ExitCode> {
    let columns = [
        Column::new("ID", |v| text(v, "id")),
        Column::new("NAME", |v| text(v, "name")),
        Column::new("STATUS", |v| text(v, "status")),
        Column::new("HOST", |v| text(v, "hostname")),
        Column::new("OS/ARCH", |v| {
            format!("{}/{}", text(v, "os"), text(v, "arch"))
        }),
        Column::new("VERSION", |v| text(v, "version")),
        Column::new("LAST SEEN", |v| when(v, "last_heartbeat_at")),
    ];
    match cmd {
        AgentsCommand::List { paging } => {
            let (rows, next) = list_pages(client, "list_agents", Map::new(), paging).await?;
            print_rows(global.format, &rows, &columns, "no agents");
            more(global.format, next);
        }
        AgentsCommand::Get { id } => {
            let v: Value = client
                .call_completed("get_object", &json!({ "kind": "agent", "id": id }))
                .await?;
            print_rows(global.format, std::slice::from_ref(&v), &columns, "");
        }
        AgentsCommand::Retire { id } => {
            let v = match run(client, "disable_agent", json!({ "id": id })).await? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            print_rows(global.format, std::slice::from_ref(&v), &columns, "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `certctl jobs ...`.
pub async fn jobs(
    global: &GlobalArgs,
    client: &Client,
    cmd: &JobsCommand,
) -> anyhow::Result<ExitCode> {
    let columns = [
        Column::new("ID", |v| text(v, "id")),
        Column::new("KIND", |v| text(v, "kind")),
        Column::new("STATUS", |v| text(v, "status")),
        Column::new("CERTIFICATE", |v| text(v, "certificate_id")),
        Column::new("AGENT", |v| text(v, "agent_id")),
        Column::new("ATTEMPTS", |v| {
            format!("{}/{}", text(v, "attempts"), text(v, "max_attempts"))
        }),
        Column::new("UPDATED", |v| when(v, "updated_at")),
        Column::new("LAST ERROR", |v| text(v, "last_error")),
    ];
    let one = match cmd {
        JobsCommand::List {
            status,
            kind,
            certificate,
            agent,
            paging,
        } => {
            let query = json!({
                "status": status, "kind": kind, "certificate_id": certificate, "agent_id": agent,
            });
            let query = query.as_object().cloned().unwrap_or_default();
            let (rows, next) = list_pages(client, "list_jobs", query, paging).await?;
            print_rows(global.format, &rows, &columns, "no jobs");
            more(global.format, next);
            return Ok(ExitCode::SUCCESS);
        }
        JobsCommand::Get { id } => {
            client
                .call_completed("get_object", &json!({ "kind": "job", "id": id }))
                .await?
        }
        JobsCommand::Cancel { id } => match run(client, "cancel_job", json!({ "id": id })).await? {
            Ok(v) => v,
            Err(code) => return Ok(code),
        },
    };
    print_rows(global.format, std::slice::from_ref(&one), &columns, "");
    Ok(ExitCode::SUCCESS)
}

/// `certctl issuers ...`.
pub async fn issuers(
    global: &GlobalArgs,
    client: &Client,
    cmd: &ListGetCommand,
) -> anyhow::Result<ExitCode> {
    let columns = [
        Column::new("ID", |v| text(v, "id")),
        Column::new("NAME", |v| text(v, "name")),
        Column::new("KIND", |v| text(v, "kind")),
        Column::new("ENABLED", |v| text(v, "enabled")),
        Column::new("CA", |v| text(v, "ca_subject")),
        Column::new("CA EXPIRES", |v| expiry(v, "ca_not_after", now())),
    ];
    list_or_get(
        global,
        client,
        cmd,
        ("list_issuers", "issuer"),
        &columns,
        "no issuers",
    )
    .await
}

/// `certctl targets ...`.
pub async fn targets(
    global: &GlobalArgs,
    client: &Client,
    cmd: &ListGetCommand,
) -> anyhow::Result<ExitCode> {
    let columns = [
        Column::new("ID", |v| text(v, "id")),
        Column::new("NAME", |v| text(v, "name")),
        Column::new("KIND", |v| text(v, "kind")),
        Column::new("AGENT", |v| text(v, "agent_id")),
        Column::new("UPDATED", |v| when(v, "updated_at")),
    ];
    list_or_get(
        global,
        client,
        cmd,
        ("list_targets", "target"),
        &columns,
        "no targets",
    )
    .await
}

async fn list_or_get(
    global: &GlobalArgs,
    client: &Client,
    cmd: &ListGetCommand,
    (list_op, kind): (&str, &str),
    columns: &[Column],
    empty: &str,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ListGetCommand::List { paging } => {
            let (rows, next) = list_pages(client, list_op, Map::new(), paging).await?;
            print_rows(global.format, &rows, columns, empty);
            more(global.format, next);
        }
        ListGetCommand::Get { id } => {
            let v: Value = client
                .call_completed("get_object", &json!({ "kind": kind, "id": id }))
                .await?;
            print_rows(global.format, std::slice::from_ref(&v), columns, "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `certctl audit list`.
pub async fn audit_list(
    global: &GlobalArgs,
    client: &Client,
    actor: &Option<String>,
    action: &Option<String>,
    resource: &Option<String>,
    per_page: i64,
) -> anyhow::Result<ExitCode> {
    let query = input(json!({
        "actor": actor, "action": action, "resource_id": resource, "per_page": per_page,
    }));
    let page: Value = client.call_completed("get_audit_log", &query).await?;
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let columns = [
        Column::new("SEQ", |v| text(v, "seq")),
        Column::new("AT", |v| when(v, "at")),
        Column::new("ACTOR", |v| text(v, "actor")),
        Column::new("ACTION", |v| text(v, "action")),
        Column::new("RESOURCE", |v| text(v, "resource_id")),
        Column::new("OUTCOME", |v| text(v, "outcome")),
    ];
    print_rows(global.format, &rows, &columns, "no audit events");
    Ok(ExitCode::SUCCESS)
}

/// `certctl call OPERATION [INPUT]`: any operation of the catalogue by name
/// (the same names as the MCP tools), for the ones without a command of
/// their own (policies and their violations, agent groups, bulk operations,
/// discovery, scan targets...). The result is printed as JSON.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The operation, e.g. `list_policy_violations` (`GET /api/v1/operations` lists them).
    pub operation: String,
    /// Its input as a JSON object (default `{}`); `@FILE` reads it from a file, `-` from stdin.
    pub input: Option<String>,
}

pub async fn call(client: &Client, args: &CallArgs) -> anyhow::Result<ExitCode> {
    let text = match args.input.as_deref() {
        None => "{}".to_owned(),
        Some("-") => std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?,
        Some(s) => match s.strip_prefix('@') {
            Some(path) => read_file(&PathBuf::from(path), "the input file")?,
            None => s.to_owned(),
        },
    };
    let input: Value = serde_json::from_str(&text).context("the input is not valid JSON")?;
    if !input.is_object() {
        anyhow::bail!("the input must be a JSON object, e.g. '{{\"id\": \"mc-...\"}}'");
    }
    match run(client, &args.operation, input).await? {
        Ok(result) => {
            super::table::emit(&super::table::pretty(&result));
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}
