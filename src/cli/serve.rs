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
    pub api: ApiArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Scheduler and notification settings (intervals in seconds; defaults are
/// the original certctl's).
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// How often renewal checks (and expiry warnings) run.
    #[arg(long, env = "CERTCTL_RENEWAL_CHECK_INTERVAL_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub renewal_check_interval_seconds: i64,
    /// How often jobs of dead workers are reclaimed.
    #[arg(long, env = "CERTCTL_JOB_LEASE_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub job_lease_interval_seconds: i64,
    /// How often expired approvals are swept.
    #[arg(long, env = "CERTCTL_APPROVAL_EXPIRY_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub approval_expiry_interval_seconds: i64,
    /// How often notifications are routed and delivered.
    #[arg(long, env = "CERTCTL_NOTIFICATION_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub notification_interval_seconds: i64,
    /// How often agent heartbeats are checked.
    #[arg(long, env = "CERTCTL_AGENT_HEALTH_INTERVAL_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub agent_health_interval_seconds: i64,
    /// An online agent silent for longer than this becomes offline.
    #[arg(long, env = "CERTCTL_AGENT_OFFLINE_AFTER_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub agent_offline_after_seconds: i64,
    /// How often short-lived certificates past expiry are marked expired.
    #[arg(long, env = "CERTCTL_SHORT_LIVED_EXPIRY_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub short_lived_expiry_interval_seconds: i64,
    /// How often jobs for external CAs (ACME, step-ca, Vault, scripts) are run.
    #[arg(long, env = "CERTCTL_JOB_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub job_interval_seconds: i64,
    /// How often CRLs and OCSP responses are refreshed.
    #[arg(long, env = "CERTCTL_CRL_OCSP_REFRESH_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub crl_ocsp_refresh_interval_seconds: i64,
    /// Certificates with at most this lifetime count as short-lived (besides
    /// profiles with short_lived set).
    #[arg(long, env = "CERTCTL_SHORT_LIVED_MAX_TTL_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub short_lived_max_ttl_seconds: i64,
    /// Renew this many days before expiry when no renewal policy applies.
    #[arg(long, env = "CERTCTL_RENEW_BEFORE_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(0..=3650))]
    pub renew_before_days: i64,
    /// Spread renewals earlier by up to this percent of the renewal window
    /// when no renewal policy applies.
    #[arg(long, env = "CERTCTL_RENEW_JITTER_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(i64).range(0..=50))]
    pub renew_jitter_percent: i64,
    /// Days before expiry at which `expiring_soon` is sent (comma-separated).
    #[arg(long, env = "CERTCTL_EXPIRY_WARNING_DAYS", value_delimiter = ',',
          default_values_t = [30_i64, 14, 7, 1])]
    pub expiry_warning_days: Vec<i64>,
    /// Delivery attempts before a notification goes to the dead letter.
    #[arg(long, env = "CERTCTL_NOTIFICATION_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(i64).range(1..=100))]
    pub notification_max_attempts: i64,
    /// First retry delay of a failed delivery; doubles per attempt up to an hour.
    #[arg(long, env = "CERTCTL_NOTIFICATION_BACKOFF_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub notification_backoff_seconds: i64,
    /// How long shutdown waits for scheduler runs in flight.
    #[arg(long, env = "CERTCTL_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(0..=3600))]
    pub shutdown_timeout_seconds: i64,
    /// How long a claimed issuer job is held; a crashed process's jobs are
    /// taken up by another after this.
    #[arg(long, env = "CERTCTL_JOB_LEASE_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(i64).range(1..=86400))]
    pub job_lease_seconds: i64,
    /// A singleton loop's lease lasts two intervals plus this margin; a
    /// crashed leader's loops move to another process after it.
    #[arg(long, env = "CERTCTL_LOOP_LEASE_MARGIN_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(0..=86400))]
    pub loop_lease_margin_seconds: i64,
    /// How often enabled network scan targets are scanned.
    #[arg(long, env = "CERTCTL_NETWORK_SCAN_INTERVAL_SECONDS", default_value_t = 6 * 3600,
          value_parser = clap::value_parser!(i64).range(60..))]
    pub network_scan_interval_seconds: i64,
    /// A signed checkpoint of the audit chain's head after this many new
    /// events (0: by time only).
    #[arg(long, env = "CERTCTL_AUDIT_CHECKPOINT_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub audit_checkpoint_events: i64,
    /// ...or this many seconds after the last checkpoint when any event came since.
    #[arg(long, env = "CERTCTL_AUDIT_CHECKPOINT_INTERVAL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(1..=86400))]
    pub audit_checkpoint_interval_seconds: i64,
    /// Most handshakes (addresses x ports x names) one scan target may cover.
    #[arg(long, env = "CERTCTL_NETWORK_SCAN_MAX_ENDPOINTS", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub network_scan_max_endpoints: u64,
    /// TLS handshakes in flight at once during a network scan.
    #[arg(long, env = "CERTCTL_NETWORK_SCAN_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub network_scan_concurrency: u64,
    /// Connect plus handshake time allowed per endpoint, in milliseconds.
    #[arg(long, env = "CERTCTL_NETWORK_SCAN_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub network_scan_timeout_ms: u64,
    /// Which addresses webhooks, chat and incident notifiers and external
    /// CAs may reach: `loopback` (public, private and loopback; the default),
    /// `private` (public and private, no loopback) or `public`. Link-local
    /// and metadata, unspecified, multicast and broadcast addresses are
    /// refused under every policy, in every IPv6 form that carries them.
    #[arg(long, env = "CERTCTL_OUTBOUND_ADDRESSES", default_value = "loopback",
          value_parser = ["public", "private", "loopback"])]
    pub outbound_addresses: String,
}

impl SchedulerArgs {
    /// Fills the scheduler and notification parts of the engine config.
    pub fn apply(&self, config: &mut certctl_engine::config::EngineConfig) {
        let s = &mut config.scheduler;
        s.renewal_interval_seconds = self.renewal_check_interval_seconds;
        s.job_lease_interval_seconds = self.job_lease_interval_seconds;
        s.approval_expiry_interval_seconds = self.approval_expiry_interval_seconds;
        s.notification_interval_seconds = self.notification_interval_seconds;
        s.agent_health_interval_seconds = self.agent_health_interval_seconds;
        s.agent_offline_after_seconds = self.agent_offline_after_seconds;
        s.short_lived_interval_seconds = self.short_lived_expiry_interval_seconds;
        s.jobs_interval_seconds = self.job_interval_seconds;
        s.revocation_interval_seconds = self.crl_ocsp_refresh_interval_seconds;
        s.short_lived_max_ttl_seconds = self.short_lived_max_ttl_seconds;
        s.renew_before_days = self.renew_before_days;
        s.renew_jitter_percent = self.renew_jitter_percent;
        s.shutdown_timeout_seconds = self.shutdown_timeout_seconds;
        s.job_lease_seconds = self.job_lease_seconds;
        s.loop_lease_margin_seconds = self.loop_lease_margin_seconds;
        s.network_scan_interval_seconds = self.network_scan_interval_seconds;
        s.audit_checkpoint_events = self.audit_checkpoint_events;
        s.audit_checkpoint_interval_seconds = self.audit_checkpoint_interval_seconds;
        let scan = &mut config.network_scan;
        scan.max_endpoints = self.network_scan_max_endpoints;
        scan.concurrency = self.network_scan_concurrency as usize;
        scan.timeout_ms = self.network_scan_timeout_ms;
        config.outbound =
            certctl_engine::net_guard::OutboundPolicy::parse(&self.outbound_addresses)
                .unwrap_or_default();
        let n = &mut config.notifications;
        n.expiry_thresholds_days = self.expiry_warning_days.clone();
        n.max_attempts = self.notification_max_attempts;
        n.backoff_base_seconds = self.notification_backoff_seconds;
    }
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
    /// Requests per second each client address may make to the
    /// unauthenticated routes (OCSP, CRL, export links, EST); 0 turns it off.
    #[arg(long, env = "CERTCTL_PUBLIC_RATE_LIMIT_RPS", default_value_t = 100)]
    pub public_rate_limit_rps: u32,
    /// Requests a client address may burst above that rate.
    #[arg(long, env = "CERTCTL_PUBLIC_RATE_LIMIT_BURST", default_value_t = 1000)]
    pub public_rate_limit_burst: u32,
    /// Failed authentications a client address may make per window before it
    /// is answered 429 without its credentials being tried; 0 turns it off.
    #[arg(long, env = "CERTCTL_FAILED_AUTH_LIMIT", default_value_t = 30)]
    pub failed_auth_limit: u32,
    /// The failed-authentication window, also the window of the aggregated
    /// api_throttled audit events.
    #[arg(long, env = "CERTCTL_FAILED_AUTH_WINDOW_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub failed_auth_window_seconds: u64,
    /// Time a client has to send its first byte and each request's headers.
    #[arg(long, env = "CERTCTL_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_seconds: u64,
    /// Time a client has to send a request body once its headers are in.
    #[arg(long, env = "CERTCTL_BODY_READ_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout_seconds: u64,
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
            public_rate_limit_rps: self.public_rate_limit_rps,
            public_rate_limit_burst: self.public_rate_limit_burst,
            failed_auth_limit: self.failed_auth_limit,
            failed_auth_window: std::time::Duration::from_secs(self.failed_auth_window_seconds),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_seconds),
        }
    }

    fn timeouts(&self) -> certctl_api::ServerTimeouts {
        certctl_api::ServerTimeouts {
            header_read: std::time::Duration::from_secs(self.header_read_timeout_seconds),
            ..Default::default()
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
        new_approver_key,
    } = control_plane::start(dir, &args.engine, args.demo).await?;
    if let Some((path, key)) = new_admin_key {
        println!(
            "Created the first admin API key (it is shown only this once and saved to {}, mode 0600):\n  {}",
            path.display(),
            key.as_str()
        );
    }
    if let Some((path, key)) = new_approver_key {
        println!(
            "Created the first approver's API key (shown only this once and saved to {}, mode 0600; give it to someone other than the admin):\n  {}",
            path.display(),
            key.as_str()
        );
    }
    let shutdown_timeout = config.scheduler.shutdown_timeout_seconds;
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
    let grace = std::time::Duration::from_secs(u64::try_from(shutdown_timeout).unwrap_or(30));
    let scheduler = tokio::spawn(scheduler.run(cancel.clone().cancelled_owned(), grace));
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
    let mut state = AppState::with_options(engine, args.api.options())
        .auth(auth)
        .shutdown_token(cancel.clone());
    state.est = std::sync::Arc::new(est);
    let router = certctl_api::app(state.clone());
    let shutdown = async move {
        shutdown.await;
        cancel.cancel();
    };
    let timeouts = args.api.timeouts();
    match tls {
        Some(config) => {
            certctl_api::tls::run_tls_with(listener, router, config, timeouts, shutdown).await
        }
        None => certctl_api::run_with(listener, router, timeouts, shutdown).await,
    }
    .context("the HTTP server failed")?;
    // The request audit writer retries a batch it cannot write; if the
    // database stays unreachable, shutdown still ends (after the same
    // timeout as the scheduler's), and says what it could not keep.
    if tokio::time::timeout(grace, state.flush_request_audit())
        .await
        .is_err()
    {
        tracing::error!(
            "api_request audit events could not be written before the shutdown timeout; those still queued are lost"
        );
        eprintln!(
            "certctl: api_request audit events still queued at shutdown could not be written"
        );
    }
    // In-flight loop runs finish (up to the shutdown timeout) before the
    // store closes; past it, leases hand their work to another process.
    if let Ok(Err(timeout)) = scheduler.await {
        tracing::warn!(error = %timeout, "shutdown timed out");
        eprintln!("certctl: {timeout}");
    }
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
