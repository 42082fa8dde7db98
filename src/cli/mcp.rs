//! `certctl mcp`: MCP over stdio with the control plane embedded on the local
//! data dir. Stdout is the protocol channel, so nothing else may print there.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use super::control_plane::{self, ControlPlane, EngineArgs};

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub async fn mcp(global: &GlobalArgs, args: &McpArgs) -> anyhow::Result<ExitCode> {
    let dir = &global.data_dir;
    crate::files::ensure_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let ControlPlane {
        engine,
        store,
        new_admin_key,
        new_approver_key,
        ..
    } = control_plane::start(dir, &args.engine, false).await?;
    if let Some((path, _)) = new_approver_key {
        eprintln!(
            "certctl: created the first approver's API key in {} (mode 0600)",
            path.display()
        );
    }
    if let Some((path, _)) = new_admin_key {
        eprintln!(
            "certctl: created the first admin API key in {} (mode 0600)",
            path.display()
        );
    }
    // The MCP principal is the API key's: --api-key, CERTCTL_API_KEY(_FILE),
    // or DIR/admin.key.
    let key = super::client::api_key(global)?;
    let principal = engine
        .authenticate(&key)
        .await
        .context("the API key is not valid for this data directory")?;
    let result = certctl_mcp::serve_stdio(engine, principal).await;
    store.close().await;
    result.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
