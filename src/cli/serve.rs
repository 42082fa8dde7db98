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
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Settings of the HTTP API (authentication details, limits, CORS, audit).
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// JWT: the HS256 shared secret (at least 32 bytes); CERTCTL_AUTH_SECRET_FILE
    /// may name a file holding it.
    #[arg(long, env = "CERTCTL_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<super::Secret>,
    /// JWT: PEM file of the identity provider's RSA public key (RS256 instead of HS256).
    #[arg(long, env = "CERTCTL_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// JWT: the required `iss` claim.
    #[arg(long, env = "CERTCTL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// JWT: the required `aud` claim.
    #[arg(long, env = "CERTCTL_JWT_AUDIENCE", default_value = "certctl")]
    pub jwt_audience: String,
    /// Requests per second each principal may make (0 turns rate limiting off).
    #[arg(long, env = "CERTCTL_RATE_LIMIT_RPS", default_value_t = 200)]
    pub rate_limit_rps: u32,
    /// Requests a principal may burst above the sustained rate.
    #[arg(long, env = "CERTCTL_RATE_LIMIT_BURST", default_value_t = 400)]
    pub rate_limit_burst: u32,
    /// Origins allowed to call the API from a browser (comma-separated); none by default.
    #[arg(long, env = "CERTCTL_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Record every API call in the audit trail (api_request events).
    #[arg(long, env = "CERTCTL_AUDIT_API_REQUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_api_requests: bool,
}

impl ApiArgs {
    fn options(&self) -> certctl_api::ApiOptions {
        certctl_api::ApiOptions {
            rate_limit_rps: self.rate_limit_rps,
            rate_limit_burst: self.rate_limit_burst,
            cors_origins: self
                .cors_origins
                .iter()
                .filter(|o| !o.trim().is_empty())
                .cloned()
                .collect(),
            audit_requests: self.audit_api_requests,
        }
    }

    fn jwt(&self) -> anyhow::Result<AuthMode> {
        use certctl_api::jwt::{JwtKey, JwtVerifier};
        let secret = super::from_flag_or_file(self.auth_secret.clone(), "CERTCTL_AUTH_SECRET")?;
        let key = match (secret, &self.jwt_public_key_file) {
            (Some(_), Some(_)) => bail!(
                "set either CERTCTL_AUTH_SECRET (HS256) or CERTCTL_JWT_PUBLIC_KEY_FILE (RS256), not both"
            ),
            (Some(s), None) => JwtKey::Hs256(s.expose().as_bytes().to_vec()),
            (None, Some(path)) => JwtKey::Rs256Pem(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            (None, None) => bail!(
                "CERTCTL_AUTH_TYPE=jwt needs CERTCTL_AUTH_SECRET (HS256) or CERTCTL_JWT_PUBLIC_KEY_FILE (RS256)"
            ),
        };
        let issuer = self.jwt_issuer.as_deref().unwrap_or_default();
        let verifier = JwtVerifier::new(key, issuer, &self.jwt_audience).map_err(|e| {
            anyhow::anyhow!("JWT settings: {e} (CERTCTL_JWT_ISSUER, CERTCTL_JWT_AUDIENCE)")
        })?;
        Ok(AuthMode::Jwt(std::sync::Arc::new(verifier)))
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
        _ if none && !addr.ip().is_loopback() => {
            bail!("authentication can be turned off only on a loopback address, not on {addr}")
        }
        _ if none => Ok(AuthMode::InsecureNone),
        AuthType::Jwt => args.api.jwt(),
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
    if auth.is_none() {
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
    let state = AppState::with_options(engine, args.api.options())
        .auth(auth)
        .shutdown_token(cancel.clone());
    let router = certctl_api::app(state.clone());
    let shutdown = async move {
        shutdown.await;
        cancel.cancel();
    };
    certctl_api::run(listener, router, shutdown)
        .await
        .context("the HTTP server failed")?;
    state.flush_request_audit().await;
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
        assert!(matches!(
            auth_mode(&args(&[]), lo).unwrap(),
            AuthMode::ApiKey
        ));
        assert!(
            auth_mode(&args(&["--auth-type", "none"]), lo)
                .unwrap()
                .is_none()
        );
        assert!(
            auth_mode(&args(&["--allow-insecure-no-auth"]), lo)
                .unwrap()
                .is_none()
        );
        assert!(auth_mode(&args(&["--auth-type", "none"]), wide).is_err());
        let jwt = auth_mode(&args(&["--auth-type", "jwt"]), lo).unwrap_err();
        assert!(jwt.to_string().contains("CERTCTL_AUTH_SECRET"), "{jwt}");
        let jwt = auth_mode(
            &args(&[
                "--auth-type",
                "jwt",
                "--auth-secret",
                "0123456789abcdef0123456789abcdef",
                "--jwt-issuer",
                "https://idp",
            ]),
            lo,
        )
        .unwrap();
        assert!(matches!(jwt, AuthMode::Jwt(_)));
        let no_issuer = auth_mode(
            &args(&[
                "--auth-type",
                "jwt",
                "--auth-secret",
                "0123456789abcdef0123456789abcdef",
            ]),
            lo,
        )
        .unwrap_err();
        assert!(no_issuer.to_string().contains("issuer"), "{no_issuer}");
    }
}
