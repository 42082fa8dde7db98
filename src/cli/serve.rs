//! `certctl serve`: builds the typed engine config from flags and the
//! environment, opens the store, starts the engine and serves the HTTP API
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use certctl_api::{AppState, AuthMode};
use certctl_engine::Engine;
use certctl_engine::clock::SystemClock;
use certctl_engine::config::{ApprovalConfig, EngineConfig};
use certctl_engine::domain::KeygenMode;
use certctl_engine::pki::MasterKey;
use certctl_engine::store::{Store, StoreLocation};
use clap::{Args, ValueEnum};

use super::{GlobalArgs, Secret, from_flag_or_file};
use crate::files::{self, Published};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Plain HTTP is served only on loopback addresses.
    #[arg(long, env = "CERTCTL_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Database URL: `postgres://...` for PostgreSQL, or a SQLite file path
    /// (`sqlite://PATH` or a bare path) [default: DATA_DIR/certctl.db].
    /// CERTCTL_DATABASE_URL_FILE may name a file holding it.
    #[arg(long, env = "CERTCTL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Seed a demo inventory on first start (15 certificates, agents, targets,
    /// policies, a pending approval).
    #[arg(long, env = "CERTCTL_DEMO")]
    pub demo: bool,
    /// How API callers authenticate. `none` is refused except on a loopback address.
    #[arg(long, env = "CERTCTL_AUTH_TYPE", value_enum, default_value_t = AuthType::ApiKey)]
    pub auth_type: AuthType,
    /// Turn authentication off (same as --auth-type none): every caller is an
    /// admin. Only on a loopback address, for demos.
    #[arg(long, env = "CERTCTL_ALLOW_INSECURE_NO_AUTH")]
    pub allow_insecure_no_auth: bool,
    /// Where private keys are generated: `agent` (on the servers, default) or
    /// `server` (lets profiles with keygen_mode=server generate keys on the control plane).
    #[arg(long, env = "CERTCTL_KEYGEN_MODE", value_enum, default_value_t = KeygenArg::Agent)]
    pub keygen_mode: KeygenArg,
    /// Also stop every `write` operation (create, update, issue, renew) at the
    /// approval gate, not only the destructive ones.
    #[arg(long, env = "CERTCTL_APPROVAL_GATE_WRITE")]
    pub approval_gate_write: bool,
    /// Four eyes: a gated call always needs a second principal with the
    /// approver role; the requester can no longer confirm it in chat.
    #[arg(long, env = "CERTCTL_APPROVAL_FOUR_EYES")]
    pub approval_four_eyes: bool,
    /// Hours a gated request waits for a decision before it expires.
    #[arg(long, env = "CERTCTL_APPROVAL_TTL_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(i64).range(1..=24 * 90))]
    pub approval_ttl_hours: i64,
    /// DANGER: let revocations and deletions run without approval.
    #[arg(long, env = "CERTCTL_DANGER_SKIP_DESTRUCTIVE_APPROVAL")]
    pub danger_skip_destructive_approval: bool,
    /// File holding the base64 master key that encrypts CA keys at rest
    /// [default: CERTCTL_MASTER_KEY, else DATA_DIR/master.key, created on first start].
    #[arg(long, env = "CERTCTL_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthType {
    ApiKey,
    Jwt,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeygenArg {
    Agent,
    Server,
}

/// The approval policy per risk class, from the flags.
fn approval_config(args: &ServeArgs) -> ApprovalConfig {
    if args.danger_skip_destructive_approval {
        tracing::warn!(
            "CERTCTL_DANGER_SKIP_DESTRUCTIVE_APPROVAL is set: revocations and deletions run \
             without anyone approving them"
        );
    }
    ApprovalConfig {
        gate_write: args.approval_gate_write,
        gate_destructive: !args.danger_skip_destructive_approval,
        in_chat_write: !args.approval_four_eyes,
        in_chat_destructive: !args.approval_four_eyes,
        ttl_seconds: args.approval_ttl_hours * 3600,
    }
}

/// Decides the authentication mode; refuses what is unsafe or not built yet.
fn auth_mode(args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<AuthMode> {
    let none = args.allow_insecure_no_auth || args.auth_type == AuthType::None;
    match args.auth_type {
        AuthType::Jwt => bail!(
            "CERTCTL_AUTH_TYPE=jwt is not supported yet; use api-key (the default) with the key in DATA_DIR/admin.key"
        ),
        _ if none && !addr.ip().is_loopback() => {
            bail!("authentication can be turned off only on a loopback address, not on {addr}")
        }
        _ if none => Ok(AuthMode::InsecureNone),
        _ => Ok(AuthMode::ApiKey),
    }
}

pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen '{}' is not an IP address and port such as 127.0.0.1:8443",
            args.listen
        )
    })?;
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to serve plain HTTP on {addr}: only loopback addresses are allowed without TLS, \
             and TLS serving (--tls-cert/--tls-key) arrives with the REST API issue; listen on 127.0.0.1"
        );
    }
    let auth = auth_mode(args, addr)?;
    let dir = &global.data_dir;
    files::ensure_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;

    let master = master_key(dir, args.master_key_file.as_deref())?;
    // The demo seeds through a second engine with a past clock, which needs
    // its own handle on the same key.
    let demo_master = if args.demo {
        Some(MasterKey::from_base64(&master.to_base64())?)
    } else {
        None
    };
    let location = match from_flag_or_file(args.database_url.clone(), "CERTCTL_DATABASE_URL")? {
        Some(url) => StoreLocation::parse(url.expose())?,
        None => StoreLocation::SqliteFile(dir.join("certctl.db")),
    };
    let store = Store::open(&location)
        .await
        .context("cannot open the database")?;
    let config = EngineConfig {
        keygen_mode: match args.keygen_mode {
            KeygenArg::Agent => KeygenMode::Agent,
            KeygenArg::Server => {
                tracing::warn!(
                    "CERTCTL_KEYGEN_MODE=server: profiles with keygen_mode=server will have private keys \
                     generated and stored (encrypted) on the control plane; use this for demos and \
                     PKCS#12 export only"
                );
                KeygenMode::Server
            }
        },
        approvals: approval_config(args),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config.clone(), master)
        .await
        .context("cannot start the engine")?;

    if let Some(key) = engine.bootstrap_admin_key().await? {
        let path = dir.join("admin.key");
        let replaced = files::replace(&path, &key.key)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if replaced {
            tracing::warn!(path = %path.display(), "replaced an admin.key left from an older database");
        }
        println!(
            "Created the first admin API key (it is shown only this once and saved to {}, mode 0600):\n  {}",
            path.display(),
            key.key.as_str()
        );
    }
    if let Some(demo_master) = demo_master {
        crate::demo::seed(&engine, &store, config, demo_master).await?;
    }
    if auth == AuthMode::InsecureNone {
        tracing::warn!(
            "AUTHENTICATION IS OFF: every caller of {addr} acts as an admin. Never do this outside a demo."
        );
        eprintln!("WARNING: authentication is off; every caller of {addr} acts as an admin");
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = shutdown_signal()?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, backend = ?store.backend(), "certctl is serving");
    // Tests and scripts read this line to find the port when listening on :0.
    println!("listening on http://{bound}");

    let router = certctl_api::app(AppState { engine, auth });
    certctl_api::run(listener, router, shutdown)
        .await
        .context("the HTTP server failed")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The master key: `CERTCTL_MASTER_KEY`, the file `--master-key-file` names,
/// or `DIR/master.key`, generated on first start. Two processes starting on
/// one empty data dir end with the same key: the first to publish wins.
fn master_key(dir: &Path, file: Option<&Path>) -> anyhow::Result<MasterKey> {
    let from_env = std::env::var("CERTCTL_MASTER_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => {
            bail!("set only one of CERTCTL_MASTER_KEY and CERTCTL_MASTER_KEY_FILE")
        }
        (Some(v), None) => {
            MasterKey::from_base64(&v).context("CERTCTL_MASTER_KEY is not a valid master key")
        }
        (None, Some(path)) => {
            let v = files::read_secret(path)
                .with_context(|| format!("cannot read the master key file {}", path.display()))?;
            MasterKey::from_base64(&v)
                .with_context(|| format!("{} does not hold a valid master key", path.display()))
        }
        (None, None) => {
            let path = dir.join("master.key");
            if path.exists() {
                let v = files::read_secret(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                return MasterKey::from_base64(&v).with_context(|| {
                    format!("{} does not hold a valid master key", path.display())
                });
            }
            let key = MasterKey::generate()?;
            match files::write_once(&path, &key.to_base64())
                .with_context(|| format!("cannot write {}", path.display()))?
            {
                Published::Created => {
                    tracing::info!(path = %path.display(), "created the master key; back it up: without it CA keys cannot be decrypted");
                    Ok(key)
                }
                Published::Existing(v) => MasterKey::from_base64(&v).with_context(|| {
                    format!("{} does not hold a valid master key", path.display())
                }),
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed now, before the
/// server announces itself, so a signal sent right after can't kill the
/// process uncleanly.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["certctl", "serve"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Serve(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn auth_rules() {
        let lo: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let wide: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(auth_mode(&args(&[]), lo).unwrap(), AuthMode::ApiKey);
        assert_eq!(
            auth_mode(&args(&["--auth-type", "none"]), lo).unwrap(),
            AuthMode::InsecureNone
        );
        assert_eq!(
            auth_mode(&args(&["--allow-insecure-no-auth"]), lo).unwrap(),
            AuthMode::InsecureNone
        );
        assert!(auth_mode(&args(&["--auth-type", "none"]), wide).is_err());
        let jwt = auth_mode(&args(&["--auth-type", "jwt"]), lo).unwrap_err();
        assert!(jwt.to_string().contains("not supported yet"), "{jwt}");
    }

    #[test]
    fn master_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = master_key(dir.path(), None).unwrap();
        let b = master_key(dir.path(), None).unwrap();
        assert_eq!(a.to_base64(), b.to_base64());
    }
}
