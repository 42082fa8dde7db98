//! Opening the control plane (store, master key, engine, first admin key),
//! shared by `certctl serve` and `certctl mcp`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use certctl_engine::Engine;
use certctl_engine::clock::SystemClock;
use certctl_engine::config::{ApprovalConfig, EngineConfig};
use certctl_engine::domain::KeygenMode;
use certctl_engine::pki::MasterKey;
use certctl_engine::store::{Store, StoreLocation};
use clap::{Args, ValueEnum};
use zeroize::Zeroizing;

use super::{Secret, from_flag_or_file};
use crate::files::{self, Published};

/// Flags that configure the embedded engine.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Database URL: `postgres://...` for PostgreSQL, or a SQLite file path
    /// (`sqlite://PATH` or a bare path) [default: DATA_DIR/certctl.db].
    /// CERTCTL_DATABASE_URL_FILE may name a file holding it.
    #[arg(long, env = "CERTCTL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
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
    /// On the first start only (the one that sets the database up): also
    /// create an approver principal with this name and write its key to
    /// DATA_DIR/first-approver.key (mode 0600). Under --approval-four-eyes or
    /// --approval-gate-write a principal that may approve needs another
    /// approver's approval, so a fresh install needs this first one; hand
    /// its key to a different person than the admin key's holder.
    #[arg(long, env = "CERTCTL_FIRST_APPROVER")]
    pub first_approver: Option<String>,
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
    #[command(flatten)]
    pub scheduler: super::serve::SchedulerArgs,
    /// Base URL relying parties reach this server at (e.g. https://certctl.example.com:8443);
    /// issued certificates name its CRL and OCSP URLs under it.
    #[arg(long, env = "CERTCTL_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeygenArg {
    Agent,
    Server,
}

/// A started control plane.
pub struct ControlPlane {
    pub engine: Arc<Engine>,
    pub store: Store,
    pub config: EngineConfig,
    /// A second handle on the master key for the demo seeder, when asked for.
    pub demo_master: Option<MasterKey>,
    /// On first start: where the new admin key was written, and the key.
    pub new_admin_key: Option<(PathBuf, Zeroizing<String>)>,
    /// On first start with `--first-approver`: where its key was written, and the key.
    pub new_approver_key: Option<(PathBuf, Zeroizing<String>)>,
}

/// Opens the store (migrating it), starts the engine, and on first start
/// writes the admin key to `DIR/admin.key` (mode 0600).
pub async fn start(dir: &Path, args: &EngineArgs, demo: bool) -> anyhow::Result<ControlPlane> {
    let master = master_key(dir, args.master_key_file.as_deref())?;
    // The demo seeds through a second engine with a past clock, which needs
    // its own handle on the same key.
    let demo_master = if demo {
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
        public_url: args
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty()),
        ..EngineConfig::default()
    };
    let mut config = config;
    args.scheduler.apply(&mut config);
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config.clone(), master)
        .await
        .context("cannot start the engine")?;
    let mut new_admin_key = None;
    if let Some(key) = engine.bootstrap_admin_key().await? {
        let path = dir.join("admin.key");
        let replaced = files::replace(&path, &key.key)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if replaced {
            tracing::warn!(path = %path.display(), "replaced an admin.key left from an older database");
        }
        new_admin_key = Some((path, key.key));
    }
    let mut new_approver_key = None;
    if let Some(name) = &args.first_approver {
        if new_admin_key.is_none() {
            tracing::warn!(
                "--first-approver is ignored: it applies only to the first start, which set this database up"
            );
        } else if let Some(key) = engine.bootstrap_first_approver(name).await? {
            let path = dir.join("first-approver.key");
            files::replace(&path, &key.key)
                .with_context(|| format!("cannot write {}", path.display()))?;
            new_approver_key = Some((path, key.key));
        }
    }
    Ok(ControlPlane {
        engine,
        store,
        config,
        demo_master,
        new_admin_key,
        new_approver_key,
    })
}

/// The approval policy per risk class, from the flags.
fn approval_config(args: &EngineArgs) -> ApprovalConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = master_key(dir.path(), None).unwrap();
        let b = master_key(dir.path(), None).unwrap();
        assert_eq!(a.to_base64(), b.to_base64());
    }
}
