//! Command-line interface: flags and environment (clap), then dispatch.
//! Every flag has a `CERTCTL_` variable; secrets may also come from a
//! `*_FILE` variable naming a file that holds them.

mod agent;
mod client;
mod control_plane;
mod export;
mod import;
mod mcp;
mod resources;
mod serve;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "certctl",
    version,
    about = "Self-hosted certificate lifecycle platform",
    long_about = "certctl automates the TLS certificate lifecycle. `certctl serve` runs the control \
                  plane; the other commands talk to a running server over its HTTP API."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory: SQLite database, master.key and admin.key.
    #[arg(
        long,
        global = true,
        env = "CERTCTL_DATA_DIR",
        default_value = "./certctl-data"
    )]
    pub data_dir: PathBuf,
    /// Server URL for client commands.
    #[arg(
        long,
        global = true,
        env = "CERTCTL_SERVER_URL",
        default_value = "http://127.0.0.1:8443"
    )]
    pub server: String,
    /// API key for client commands [default: the key in DATA_DIR/admin.key].
    /// CERTCTL_API_KEY_FILE may name a file holding it.
    #[arg(long, global = true, env = "CERTCTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// Output format of client commands.
    #[arg(
        long,
        global = true,
        env = "CERTCTL_FORMAT",
        value_enum,
        default_value_t = Format::Table
    )]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

// Parsed once at start and matched once: the size of the largest variant
// (the server's flags) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: HTTP API, health and readiness.
    Serve(ServeArgs),
    /// Certificates: list, get, create, issue, renew, revoke.
    #[command(subcommand)]
    Certs(resources::CertsCommand),
    /// Agents: list, get, retire.
    #[command(subcommand)]
    Agents(resources::AgentsCommand),
    /// Jobs: list, get, cancel.
    #[command(subcommand)]
    Jobs(resources::JobsCommand),
    /// Issuers (CAs): list, get.
    #[command(subcommand)]
    Issuers(resources::ListGetCommand),
    /// Deployment targets: list, get.
    #[command(subcommand)]
    Targets(resources::ListGetCommand),
    /// Import a PEM bundle of certificates issued elsewhere (idempotent).
    Import(import::ImportArgs),
    /// Audit log: list events, verify the chain, export and write checkpoints.
    #[command(subcommand)]
    Audit(resources::AuditCommand),
    /// Show the server's health and an inventory summary.
    Status,
    /// Serve MCP over stdio with the control plane embedded on the data dir
    /// (for Claude Desktop, Claude Code, Cursor and other MCP clients).
    Mcp(mcp::McpArgs),
    /// Approval requests: list them, approve or reject one.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Run the agent on this machine: local keys, CSRs, deployment to the
    /// targets it serves, verification and discovery.
    Agent(agent::AgentArgs),
    /// Run any operation of the catalogue by name with a JSON input
    /// (policies, violations, agent groups, bulk operations, discovery...).
    Call(resources::CallArgs),
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List pending approvals (all of them with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Approve a request: its operation runs once, as it was asked.
    Approve {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a request: its operation never runs.
    Reject {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Collect, once, the secret result of your own approved request (a new
    /// API key, an export link); the approval shows it as [sealed].
    Result { id: String },
}

/// A secret from a flag or the environment; never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `flag` (a value clap already read from a flag or `NAME`), or else the
/// content of the file `NAME_FILE` names; both at once is an error.
pub fn from_flag_or_file(flag: Option<Secret>, name: &str) -> anyhow::Result<Option<Secret>> {
    let file_var = format!("{name}_FILE");
    let file = std::env::var_os(&file_var).filter(|v| !v.is_empty());
    match (flag, file) {
        (Some(_), Some(_)) => anyhow::bail!("set only one of {name} (or its flag) and {file_var}"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let v = crate::files::read_secret(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {file_var} ({}): {e}", path.display()))?;
            Ok(Some(Secret(v)))
        }
        (None, None) => Ok(None),
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(args) => serve::serve(&cli.global, args).await,
        Command::Audit(resources::AuditCommand::Verify { checkpoints }) => {
            client::audit_verify(&cli.global, checkpoints.as_deref()).await
        }
        Command::Audit(resources::AuditCommand::Checkpoints { after }) => {
            client::audit_checkpoints(&cli.global, *after).await
        }
        Command::Audit(resources::AuditCommand::Checkpoint) => {
            client::audit_checkpoint(&cli.global).await
        }
        Command::Audit(resources::AuditCommand::List {
            actor,
            action,
            resource,
            per_page,
        }) => {
            let c = client::connect(&cli.global)?;
            resources::audit_list(&cli.global, &c, actor, action, resource, *per_page).await
        }
        Command::Certs(cmd) => {
            resources::certs(&cli.global, &client::connect(&cli.global)?, cmd).await
        }
        Command::Agents(cmd) => {
            resources::agents(&cli.global, &client::connect(&cli.global)?, cmd).await
        }
        Command::Jobs(cmd) => {
            resources::jobs(&cli.global, &client::connect(&cli.global)?, cmd).await
        }
        Command::Issuers(cmd) => {
            resources::issuers(&cli.global, &client::connect(&cli.global)?, cmd).await
        }
        Command::Targets(cmd) => {
            resources::targets(&cli.global, &client::connect(&cli.global)?, cmd).await
        }
        Command::Import(args) => {
            import::import(&cli.global, &client::connect(&cli.global)?, args).await
        }
        Command::Status => client::status(&cli.global).await,
        Command::Mcp(args) => mcp::mcp(&cli.global, args).await,
        Command::Approvals(cmd) => client::approvals(&cli.global, cmd).await,
        Command::Agent(args) => agent::agent(&cli.global, args).await,
        Command::Call(args) => {
            let c = client::connect(&cli.global)?;
            resources::call(&c, args).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_do_not_print() {
        assert!(!format!("{:?}", Secret("cck_secret".into())).contains("cck_"));
    }
}
