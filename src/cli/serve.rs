//! `certctl serve`: builds the typed engine config from flags and the
//! environment, opens the store, starts the engine and serves the HTTP API
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use certctl_api::{AppState, AuthMode};
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use super::control_plane::{self, ControlPlane, EngineArgs};
use crate::files;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Plain HTTP is served only on loopback addresses.
    #[arg(long, env = "CERTCTL_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: String,
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
    /// PEM certificate chain to serve HTTPS with (needed on non-loopback addresses).
    #[arg(long, env = "CERTCTL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CERTCTL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub est: EstArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// EST (RFC 7030): which issuer and profile enrollments use, and an optional
/// HTTP Basic user (API keys are accepted as Basic passwords as well).
#[derive(Debug, Args)]
pub struct EstArgs {
    /// Issuer EST enrolls from (default: the local CA).
    #[arg(long, env = "CERTCTL_EST_ISSUER_ID")]
    pub est_issuer_id: Option<String>,
    /// Profile EST enrollments are checked against (default: prof-default).
    #[arg(long, env = "CERTCTL_EST_PROFILE_ID")]
    pub est_profile_id: Option<String>,
    /// HTTP Basic user name for EST clients (with CERTCTL_EST_PASSWORD or _FILE).
    #[arg(long, env = "CERTCTL_EST_USERNAME")]
    pub est_username: Option<String>,
}

impl EstArgs {
    fn config(&self) -> anyhow::Result<certctl_api::EstConfig> {
        let mut users = Vec::new();
        if let Some(user) = &self.est_username {
            let password = match (
                std::env::var("CERTCTL_EST_PASSWORD"),
                std::env::var("CERTCTL_EST_PASSWORD_FILE"),
            ) {
                (Ok(p), _) => p,
                (_, Ok(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read CERTCTL_EST_PASSWORD_FILE {file}"))?
                    .trim_end()
                    .to_owned(),
                _ => bail!(
                    "CERTCTL_EST_USERNAME needs CERTCTL_EST_PASSWORD or CERTCTL_EST_PASSWORD_FILE"
                ),
            };
            if password.len() < 12 {
                bail!("the EST password must be at least 12 characters");
            }
            users.push((user.clone(), password));
        }
        Ok(certctl_api::EstConfig {
            issuer_id: self.est_issuer_id.clone(),
            profile_id: self.est_profile_id.clone(),
            users,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthType {
    ApiKey,
    Jwt,
    None,
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
    if !addr.ip().is_loopback() && args.tls_cert.is_none() {
        bail!(
            "refusing to serve plain HTTP on {addr}: only loopback addresses are allowed without TLS; \
             give --tls-cert and --tls-key, or listen on 127.0.0.1"
        );
    }
    let est = args.est.config()?;
    let auth = auth_mode(args, addr)?;
    let dir = &global.data_dir;
    files::ensure_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;

    let ControlPlane {
        engine,
        store,
        config,
        demo_master,
        new_admin_key,
    } = control_plane::start(dir, &args.engine, args.demo).await?;
    if let Some((path, key)) = new_admin_key {
        println!(
            "Created the first admin API key (it is shown only this once and saved to {}, mode 0600):\n  {}",
            path.display(),
            key.as_str()
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
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{bound}");

    let cancel = certctl_api::CancellationToken::new();
    // The scheduler's loops (renewal checks, job leases, approval expiry) run
    // under the same engine; with several replicas each loop runs on one.
    let owner = format!("serve:{}:{}", bound, std::process::id());
    let scheduler = std::sync::Arc::new(certctl_engine::scheduler::Scheduler::new(
        engine.clone(),
        owner,
    ));
    let scheduler = tokio::spawn(scheduler.run(
        cancel.clone().cancelled_owned(),
        std::time::Duration::from_secs(30),
    ));
    // Client certificates (EST re-enrollment) must chain to the EST issuer.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert)
                .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
            let issuer = est.issuer_id.as_deref().unwrap_or("iss-local");
            let roots = engine.issuer_chain_pem(issuer).await.unwrap_or_default();
            Some(certctl_api::tls::server_config(&cert, &key, &roots)?)
        }
        _ => None,
    };
    let router = certctl_api::app(AppState {
        engine,
        auth,
        shutdown: cancel.clone(),
        est: std::sync::Arc::new(est),
    });
    let shutdown = async move {
        shutdown.await;
        cancel.cancel();
    };
    match tls {
        Some(config) => certctl_api::tls::run_tls(listener, router, config, shutdown).await,
        None => certctl_api::run(listener, router, shutdown).await,
    }
    .context("the HTTP server failed")?;
    // In-flight loop runs finish (up to 30 s) before the store closes.
    let _ = scheduler.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
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
}
