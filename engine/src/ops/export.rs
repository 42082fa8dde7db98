//! Export: a certificate and its chain as PEM, DER or PKCS#12.
//!
//! PEM and DER hold only public material and are a plain read. PKCS#12 may
//! carry the private key (server-side key generation only) under a password
//! the caller chooses, and a password must never pass through a catalogue
//! operation's input (inputs are stored in approvals, shown to MCP clients
//! and models). So PKCS#12 goes through a **single-use export link**:
//! `create_export_link` (an audited operation, safe for MCP) returns a
//! short-lived URL; [`Engine::download_export`] redeems it once, with the
//! password typed by the human into the REST face or the CLI.
//!
//! The token is the credential, so nothing certctl writes carries it: only
//! its SHA-256 is stored, audit events name a link by [`export_link_id`] (a
//! prefix of that hash), and the HTTP face logs the link's path with the
//! token replaced by the same id. Opening a PKCS#12 link in a browser
//! ([`Engine::open_export_link`]) uses the token up at once and hands the
//! page a one-time form ticket instead, so a token read anywhere after the
//! page was opened redeems nothing.

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificates::load;
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::Engine;
use crate::domain::{CertificateVersion, Outcome as AuditOutcome, Permission, Principal};
use crate::error::{Error, Result};
use crate::pki;
use crate::store::ExportLink;

/// How long an export link stays valid.
pub const EXPORT_LINK_SECONDS: i64 = 600;

/// How long the password form of an opened PKCS#12 link stays usable (never
/// past the link's own expiry).
pub const EXPORT_FORM_SECONDS: i64 = 300;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The certificate followed by its chain, PEM.
    Pem,
    /// The certificate alone, DER.
    Der,
    /// PKCS#12: certificate, chain and (for server-generated keys) the private key, password-protected.
    Pkcs12,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Der => "der",
            Self::Pkcs12 => "pkcs12",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pem" => Self::Pem,
            "der" => Self::Der,
            "pkcs12" | "p12" | "pfx" => Self::Pkcs12,
            _ => return None,
        })
    }
}

/// An exported file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub content_type: &'static str,
    pub filename: String,
    pub bytes: Vec<u8>,
}

// ---------------------------------------------------------------- export (public material)

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportCertificateInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// PKCS#12 goes through create_export_link.
    #[serde(default = "pem")]
    pub format: ExportFormat,
}

fn pem() -> ExportFormat {
    ExportFormat::Pem
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportedCertificate {
    pub certificate_id: String,
    pub version_id: String,
    pub format: ExportFormat,
    pub content_type: String,
    pub filename: String,
    /// For `pem`: the certificate followed by its chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// For `der`: the certificate, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub der_base64: Option<String>,
}

pub struct ExportCertificate;

impl Operation for ExportCertificate {
    type Input = ExportCertificateInput;
    type Output = ExportedCertificate;
    const META: OpMeta = OpMeta {
        name: "export_certificate",
        title: "Export a certificate",
        description: "Export a certificate's current version as PEM (with its chain) or DER; for PKCS#12 use create_export_link.",
        risk: Risk::Read,
        permission: Permission::Read,
        idempotent: true,
        open_world: false,
        resource: "certificate",
        gateable: false,
    };

    async fn describe(_ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            summary: format!(
                "Export certificate {} as {}",
                input.id,
                input.format.as_str()
            ),
            ..Subject::default()
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        if input.format == ExportFormat::Pkcs12 {
            return Err(Error::invalid(
                "PKCS#12 needs a password: use create_export_link (or POST /api/v1/certificates/{id}/export, certctl certs export --format pkcs12)",
            ));
        }
        let version = current_version(ctx, &input.id).await?;
        let file = public_file(&version, input.format)?;
        ctx.note("format", input.format.as_str());
        Ok(ExportedCertificate {
            certificate_id: version.certificate_id.clone(),
            version_id: version.id.clone(),
            format: input.format,
            content_type: file.content_type.to_owned(),
            filename: file.filename,
            pem: (input.format == ExportFormat::Pem)
                .then(|| String::from_utf8_lossy(&file.bytes).into_owned()),
            der_base64: (input.format == ExportFormat::Der)
                .then(|| base64::engine::general_purpose::STANDARD.encode(&file.bytes)),
        })
    }
}

async fn current_version(ctx: &mut Ctx<'_>, id: &str) -> Result<CertificateVersion> {
    let c = load(ctx, id).await?;
    let version_id = c.current_version_id.ok_or_else(|| {
        Error::conflict(format!(
            "certificate {id} has never been issued; there is nothing to export"
        ))
    })?;
    ctx.tx
        .version(&version_id)
        .await?
        .ok_or_else(|| Error::internal("current version is missing"))
}

fn file_stem(v: &CertificateVersion) -> String {
    format!(
        "{}-{}",
        v.certificate_id,
        &v.serial[..v.serial.len().min(16)]
    )
}

fn public_file(v: &CertificateVersion, format: ExportFormat) -> Result<ExportFile> {
    Ok(match format {
        ExportFormat::Pem => ExportFile {
            content_type: "application/pem-certificate-chain",
            filename: format!("{}.pem", file_stem(v)),
            bytes: format!("{}{}", v.cert_pem, v.chain_pem).into_bytes(),
        },
        ExportFormat::Der => ExportFile {
            content_type: "application/pkix-cert",
            filename: format!("{}.cer", file_stem(v)),
            bytes: pki::parse_certificate_pem(&v.cert_pem)?.der,
        },
        ExportFormat::Pkcs12 => return Err(Error::internal("PKCS#12 is not public material")),
    })
}

// ---------------------------------------------------------------- export link

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExportLinkInput {
    /// The certificate id (`mc-...`).
    pub id: String,
    /// The human sets a PKCS#12 password when downloading.
    #[serde(default = "pkcs12")]
    pub format: ExportFormat,
}

fn pkcs12() -> ExportFormat {
    ExportFormat::Pkcs12
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportLinkOutput {
    /// Open this URL in a browser (or `certctl certs export --link URL`) to
    /// download the file once; for PKCS#12 it asks for the password there.
    pub url: String,
    pub expires_at: i64,
    pub format: ExportFormat,
    /// Whether the PKCS#12 file will hold the private key (server-side key generation only).
    pub includes_private_key: bool,
}

pub struct CreateExportLink;

impl Operation for CreateExportLink {
    type Input = CreateExportLinkInput;
    type Output = ExportLinkOutput;
    const META: OpMeta = OpMeta {
        name: "create_export_link",
        title: "Create a download link",
        description: "Create a single-use link (valid 10 minutes) to download a certificate as PKCS#12, PEM or DER; the human sets the PKCS#12 password when opening it, never in chat.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let c = load(ctx, &input.id).await?;
        Ok(Subject {
            resource_id: Some(c.id.clone()),
            summary: format!(
                "Create a {} download link for certificate {} ({})",
                input.format.as_str(),
                c.id,
                c.common_name
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound: super::certificates::facts(&c),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let version = current_version(ctx, &input.id).await?;
        let token = new_token()?;
        let link = ExportLink {
            certificate_id: version.certificate_id.clone(),
            format: input.format.as_str().to_owned(),
            principal_id: ctx.principal.id.clone(),
            expires_at: ctx.now + EXPORT_LINK_SECONDS,
        };
        ctx.tx
            .insert_export_link(&token_hash(&token), &link, ctx.now)
            .await?;
        ctx.note("format", input.format.as_str());
        ctx.note("link_id", export_link_id(&token));
        let path = format!("/api/v1/exports/{}", token.as_str());
        let url = match &ctx.engine.config().public_url {
            Some(base) => format!("{base}{path}"),
            None => path,
        };
        Ok(ExportLinkOutput {
            url,
            expires_at: link.expires_at,
            format: input.format,
            includes_private_key: input.format == ExportFormat::Pkcs12 && version.has_private_key,
        })
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// How audit events and logs name an export link: the first 12 hex digits
/// of its token's SHA-256 (what the store keys it by), never the token.
pub fn export_link_id(token: &str) -> String {
    token_hash(token)[..12].to_owned()
}

/// A fresh link token: 256 random bits, base64url.
fn new_token() -> Result<zeroize::Zeroizing<String>> {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(raw.as_mut())
        .map_err(|_| Error::internal("random number generator failed"))?;
    Ok(zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref()),
    ))
}

/// What opening an export link gives.
#[derive(Debug)]
pub enum OpenedExport {
    /// PEM or DER: the file, and the link is used up.
    File(ExportFile),
    /// PKCS#12: the link is used up; the password form posts this one-time
    /// ticket (in its body, never in a path) with the password.
    PasswordForm {
        ticket: zeroize::Zeroizing<String>,
        expires_at: i64,
    },
}

/// The token of an export link URL or path (its last segment).
pub fn export_token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

impl Engine {
    /// Opens an export link in a browser. PEM and DER are downloaded (the
    /// link is used up). PKCS#12 needs a password first: the link is used up
    /// now and exchanged, in one transaction, for a one-time form ticket
    /// valid [`EXPORT_FORM_SECONDS`], which only the page that opened it
    /// holds. `NotFound` when the link is unknown, used or expired.
    pub async fn open_export_link(&self, token: &str) -> Result<OpenedExport> {
        let now = self.now();
        let format = {
            let mut tx = self.store().begin_read().await?;
            let link = tx.export_link(&token_hash(token), now).await?;
            tx.commit().await?;
            link.and_then(|l| ExportFormat::parse(&l.format))
                .ok_or_else(|| Error::not_found("export link", "(token)"))?
        };
        if format != ExportFormat::Pkcs12 {
            return Ok(OpenedExport::File(self.download_export(token, None).await?));
        }
        let mut tx = self.store().begin_write().await?;
        let link = tx
            .consume_export_link(&token_hash(token), now)
            .await?
            .ok_or_else(|| Error::not_found("export link", "(token)"))?;
        let ticket = new_token()?;
        let form = ExportLink {
            expires_at: link.expires_at.min(now + EXPORT_FORM_SECONDS),
            ..link
        };
        tx.insert_export_link(&token_hash(&ticket), &form, now)
            .await?;
        let mut details = serde_json::Map::new();
        details.insert("link_id".into(), export_link_id(token).into());
        details.insert("form_ticket_id".into(), export_link_id(&ticket).into());
        details.insert("link_created_by".into(), form.principal_id.clone().into());
        self.append(
            &mut tx,
            &Principal::system("export-link"),
            "open_export_link",
            "certificate",
            Some(form.certificate_id.clone()),
            AuditOutcome::Success,
            details,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(OpenedExport::PasswordForm {
            ticket,
            expires_at: form.expires_at,
        })
    }

    /// Redeems a single-use export link. `password` is required for PKCS#12
    /// and checked before the link is used up. The download is audited as
    /// `download_export`, naming who created the link.
    pub async fn download_export(&self, token: &str, password: Option<&str>) -> Result<ExportFile> {
        let now = self.now();
        let mut tx = self.store().begin_write().await?;
        let Some(link) = tx.export_link(&token_hash(token), now).await? else {
            return Err(Error::not_found("export link", "(token)"));
        };
        let format = ExportFormat::parse(&link.format)
            .ok_or_else(|| Error::internal("stored export format is not known"))?;
        if format == ExportFormat::Pkcs12 {
            pki::pkcs12::check_password(password.unwrap_or_default())?;
        }
        if tx
            .consume_export_link(&token_hash(token), now)
            .await?
            .is_none()
        {
            return Err(Error::not_found("export link", "(token)"));
        }
        let view = self.status_view(now);
        let cert = tx
            .certificate(&link.certificate_id, view)
            .await?
            .ok_or_else(|| Error::not_found("certificate", &link.certificate_id))?;
        let version_id = cert
            .current_version_id
            .ok_or_else(|| Error::conflict("the certificate has no issued version"))?;
        let version = tx
            .version(&version_id)
            .await?
            .ok_or_else(|| Error::internal("current version is missing"))?;
        let file = match format {
            ExportFormat::Pkcs12 => {
                let key = match tx.version_private_key(&version.id).await? {
                    Some(sealed) => Some(zeroize::Zeroizing::new(
                        String::from_utf8(self.master_key().open(&sealed, &version.id)?.to_vec())
                            .map_err(|_| Error::internal("stored private key is not PEM"))?,
                    )),
                    None => None,
                };
                ExportFile {
                    content_type: "application/x-pkcs12",
                    filename: format!("{}.p12", file_stem(&version)),
                    bytes: pki::pkcs12::build(
                        &version.cert_pem,
                        &version.chain_pem,
                        key.as_deref().map(String::as_str),
                        &cert.common_name,
                        password.unwrap_or_default(),
                    )?,
                }
            }
            other => public_file(&version, other)?,
        };
        let mut details = serde_json::Map::new();
        details.insert("format".into(), format.as_str().into());
        details.insert("link_id".into(), export_link_id(token).into());
        details.insert("link_created_by".into(), link.principal_id.clone().into());
        details.insert("version_id".into(), version.id.clone().into());
        self.append(
            &mut tx,
            &Principal::system("export-link"),
            "download_export",
            "certificate",
            Some(cert.id.clone()),
            AuditOutcome::Success,
            details,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(file)
    }
}
