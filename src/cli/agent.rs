//! `certctl agent`: the agent loop on this machine, configured from flags
//! and `CERTCTL_` variables (the API key also from `CERTCTL_API_KEY_FILE`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use certctl_agent::Agent;
use certctl_agent::{AgentConfig, AllowedProgram, DeployRoots, ExecPolicy};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This agent's id (`ag-...`), from `register_agent`.
    #[arg(long, env = "CERTCTL_AGENT_ID")]
    pub agent_id: String,
    /// Where private keys and per-job state are kept (0700; keys 0600).
    #[arg(long, env = "CERTCTL_KEY_DIR", default_value = "./certctl-agent-keys")]
    pub key_dir: PathBuf,
    /// Directories to scan for certificates on disk (comma-separated).
    #[arg(long, env = "CERTCTL_DISCOVERY_DIRS", value_delimiter = ',')]
    pub discovery_dirs: Vec<PathBuf>,
    /// Seconds between walks of the discovery directories (also one at start).
    #[arg(
        long,
        env = "CERTCTL_DISCOVERY_INTERVAL_SECONDS",
        default_value_t = 3600.0
    )]
    pub discovery_seconds: f64,
    /// Directories deployments may write below (comma-separated)
    /// [default: /etc/ssl, /etc/pki, /etc/nginx, /etc/apache2, /etc/httpd, /etc/haproxy, /etc/traefik, /etc/caddy].
    #[arg(long, env = "CERTCTL_DEPLOY_ROOTS", value_delimiter = ',')]
    pub deploy_roots: Vec<PathBuf>,
    /// A program targets of a kind may run, `KIND=PROGRAM` (a name looked
    /// up on PATH, or an absolute path); repeatable, comma-separated in the
    /// variable. A kind named here runs only the programs given for it;
    /// the others keep their defaults (nginx: nginx; apache: apache2ctl,
    /// apachectl; haproxy: haproxy; caddy: caddy).
    #[arg(
        long = "allow-program",
        env = "CERTCTL_AGENT_PROGRAMS",
        value_name = "KIND=PROGRAM",
        value_delimiter = ',',
        value_parser = AllowedProgram::parse
    )]
    pub allow_programs: Vec<AllowedProgram>,
    /// Directories a target's server configuration and pid files may lie
    /// below (comma-separated) [default: the deploy roots].
    #[arg(long, env = "CERTCTL_AGENT_CONFIG_ROOTS", value_delimiter = ',')]
    pub config_roots: Vec<PathBuf>,
    /// Seconds between polls of the control plane.
    #[arg(long, env = "CERTCTL_AGENT_POLL_SECONDS", default_value_t = 30.0)]
    pub poll_seconds: f64,
    /// Seconds to wait for a target to serve a newly deployed certificate.
    #[arg(long, env = "CERTCTL_AGENT_VERIFY_SECONDS", default_value_t = 30.0)]
    pub verify_seconds: f64,
    /// Labels reported with each heartbeat, `key=value` comma-separated.
    /// They are shown as the agent's reported labels; agent groups select
    /// on the labels an admin accepted (`update_agent`), never on these
    /// alone. Without the flag the reported labels are left as they are.
    #[arg(long, env = "CERTCTL_AGENT_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Option<Vec<(String, String)>>,
    /// Where to answer ACME HTTP-01 challenges for targets without an
    /// `acme_webroot` (`host:port`, usually `0.0.0.0:80`); bound on the first challenge.
    #[arg(long, env = "CERTCTL_AGENT_HTTP01_LISTEN")]
    pub http01_listen: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("'{s}' is not key=value")),
    }
}

pub async fn agent(global: &GlobalArgs, args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let key = super::from_flag_or_file(global.api_key.clone(), "CERTCTL_API_KEY")?.context(
        "the agent needs its API key: --api-key, CERTCTL_API_KEY or CERTCTL_API_KEY_FILE",
    )?;
    let seconds = |v: f64, what: &str| {
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!(
                "{what} must be between 0 and 86400 seconds"
            ))
        }
    };
    let deploy_roots = if args.deploy_roots.is_empty() {
        DeployRoots::defaults()
    } else {
        DeployRoots::new(args.deploy_roots.clone())
    };
    let config_roots = if args.config_roots.is_empty() {
        deploy_roots.clone()
    } else {
        DeployRoots::new(args.config_roots.clone())
    };
    let config = AgentConfig {
        server: global.server.clone(),
        agent_id: args.agent_id.clone(),
        api_key: key.expose().to_owned(),
        key_dir: args.key_dir.clone(),
        discovery_dirs: args.discovery_dirs.clone(),
        deploy_roots,
        exec: ExecPolicy::new(args.allow_programs.clone(), config_roots),
        poll_interval: seconds(args.poll_seconds, "--poll-seconds")?,
        verify_timeout: seconds(args.verify_seconds, "--verify-seconds")?,
        discovery_interval: seconds(args.discovery_seconds, "--discovery-seconds")?,
        labels: args.labels.as_ref().map(|l| l.iter().cloned().collect()),
        http01_listen: args.http01_listen.clone(),
    };
    let agent = Agent::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(agent = %args.agent_id, server = %global.server, "agent started");
    agent.run(shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
