//! `certctl import FILE.pem`: bulk import of a PEM bundle, in batches, with
//! a progress bar. The server makes it idempotent (by fingerprint), so an
//! interrupted import is finished by running it again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use certctl_api::client::Client;
use certctl_engine::pki;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::{Format, GlobalArgs};

/// Flags of `certctl import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// PEM bundle: leaf certificates, each optionally followed by its chain.
    pub file: std::path::PathBuf,
    /// Issuer that renews them (default: none yet, `iss-external`).
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    /// Leaf certificates per request (1 to 500).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub batch: u16,
}

/// Splits a bundle into batches of at most `size` leaves, each leaf kept
/// with the CA certificates that follow it. Parsing here first means a
/// malformed file fails before anything is sent.
fn batches(text: &str, size: usize) -> anyhow::Result<(Vec<String>, usize)> {
    let certs = pki::parse_certificate_bundle(text)?;
    let mut out: Vec<String> = Vec::new();
    let mut leaves_in_batch = 0;
    let mut leaves = 0;
    for c in certs {
        if !c.is_ca {
            if leaves_in_batch == size || out.is_empty() {
                out.push(String::new());
                leaves_in_batch = 0;
            }
            leaves_in_batch += 1;
            leaves += 1;
        }
        if let Some(current) = out.last_mut() {
            current.push_str(&pki::pem_certificate(&c.der));
        }
    }
    anyhow::ensure!(leaves > 0, "the bundle has no leaf certificate");
    Ok((out, leaves))
}

pub async fn import(
    global: &GlobalArgs,
    client: &Client,
    args: &ImportArgs,
) -> anyhow::Result<ExitCode> {
    let text = read(&args.file)?;
    anyhow::ensure!(
        !text.contains("PRIVATE KEY-----"),
        "{} contains a private key; certctl imports certificates only",
        args.file.display()
    );
    let (batches, leaves) = batches(&text, usize::from(args.batch))
        .with_context(|| format!("cannot read certificates from {}", args.file.display()))?;
    let bar = ProgressBar::new(leaves as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let (mut imported, mut existing, mut skipped) = (0, 0, 0);
    let mut items = Vec::new();
    for batch in batches {
        let body = json!({
            "pem": batch, "issuer_id": args.issuer, "profile_id": args.profile,
            "owner_id": args.owner, "team_id": args.team, "environment": args.environment,
        });
        let body = Value::Object(
            body.as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .collect(),
        );
        let report: Value = match client.call_completed("import_certificates", &body).await {
            Ok(r) => r,
            Err(e) => {
                bar.abandon();
                return Err(e).context(format!(
                    "import stopped after {} of {leaves} certificates (run it again to finish; imports are idempotent)",
                    imported + existing + skipped
                ));
            }
        };
        imported += report["imported"].as_u64().unwrap_or(0);
        existing += report["existing"].as_u64().unwrap_or(0);
        skipped += report["skipped"].as_u64().unwrap_or(0);
        let batch_items = report["items"].as_array().cloned().unwrap_or_default();
        bar.inc(batch_items.len() as u64);
        items.extend(batch_items);
    }
    bar.finish_and_clear();
    match global.format {
        Format::Json => println!(
            "{}",
            super::table::pretty(&json!({
                "imported": imported, "existing": existing, "skipped": skipped, "items": items,
            }))
        ),
        Format::Table => {
            println!(
                "imported {imported}, already managed {existing}, skipped {skipped} (of {leaves} in {})",
                args.file.display()
            );
            for i in items.iter().filter(|i| i["outcome"] == "skipped") {
                eprintln!(
                    "skipped {} ({}): {}",
                    i["common_name"].as_str().unwrap_or("?"),
                    i["fingerprint"].as_str().unwrap_or("?"),
                    i["message"].as_str().unwrap_or("no reason given")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
