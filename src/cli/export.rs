//! `certctl certs export`: a certificate as PEM, DER or PKCS#12, written to
//! a file (or PEM to stdout). The PKCS#12 password comes from
//! `CERTCTL_EXPORT_PASSWORD` or `CERTCTL_EXPORT_PASSWORD_FILE`, never from a
//! flag (flags end up in shell history and process lists).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{GlobalArgs, Secret, from_flag_or_file};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// pem, der or pkcs12.
    #[arg(long, default_value = "pem")]
    pub format: String,
    /// Where to write the file (PEM goes to stdout without it).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[arg(
        long,
        env = "CERTCTL_EXPORT_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub password: Option<String>,
}

/// `certctl certs export`.
pub async fn export(global: &GlobalArgs, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let password = match args.format.as_str() {
        "pkcs12" | "p12" | "pfx" => Some(
            from_flag_or_file(args.password.clone().map(Secret), "CERTCTL_EXPORT_PASSWORD")?
                .context("PKCS#12 export needs a password: set CERTCTL_EXPORT_PASSWORD or CERTCTL_EXPORT_PASSWORD_FILE")?,
        ),
        "pem" | "der" => None,
        other => bail!("--format must be pem, der or pkcs12, not '{other}'"),
    };
    let client =
        certctl_api::client::Client::new(&global.server, Some(super::client::api_key(global)?))?;
    let bytes = client
        .export_certificate(
            &args.id,
            &args.format,
            password.as_ref().map(Secret::expose),
        )
        .await?;
    match &args.out {
        Some(path) => {
            write_private(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
        None if args.format == "pem" => print!("{}", String::from_utf8_lossy(&bytes)),
        None => bail!("--out FILE is needed for binary formats"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes an export with mode 0600: a PKCS#12 file may hold a private key.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
