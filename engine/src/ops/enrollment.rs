//! Enrollment from a CSR alone, as EST (RFC 7030) does it: `enroll_certificate`
//! creates the managed certificate from the CSR's names and issues it in one
//! transaction (so a refused CSR leaves nothing behind); `reenroll_certificate`
//! renews the certificate the client proves it holds.
//!
//! A client authenticated by its TLS certificate (a principal from
//! [`crate::Engine::authenticate_client_certificate`]) enrolls only the names
//! that certificate holds, unless the profile sets
//! `allow_client_certificate_new_names`; the check runs before the approval
//! gate, so a refused request stores nothing and is audited as denied.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificates::{
    CreateCertificate, CreateCertificateInput, IssueOutput, issue_version, load,
};
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::bootstrap::{DEFAULT_PROFILE_ID, LOCAL_ISSUER_ID};
use crate::domain::{JobKind, Permission};
use crate::error::{Error, Result};
use crate::pki;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollCertificateInput {
    /// PKCS#10 CSR, PEM or base64 DER. Its CN and DNS/IP SANs name the certificate.
    pub csr_pem: String,
    /// Issuer id; defaults to the local CA.
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// Profile id; defaults to `prof-default`.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// Environment label.
    #[serde(default)]
    pub environment: Option<String>,
    /// Free-form labels (EST adds `{"enrolled_via": "est"}`).
    #[serde(default)]
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Generate the key on the control plane (EST serverkeygen; the CSR only
    /// names the certificate). Needs a profile with `keygen_mode: server`; the
    /// key leaves only in a PKCS#12 export.
    #[serde(default)]
    pub server_keygen: bool,
}

pub struct EnrollCertificate;

/// The common name and SANs a CSR asks for.
fn names_of(csr: &pki::ParsedCsr) -> Result<(String, Vec<String>)> {
    let mut sans: Vec<String> = csr
        .names
        .dns
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    sans.extend(csr.names.ips.iter().map(|ip| ip.to_string()));
    let cn = csr
        .common_name
        .as_ref()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .or_else(|| sans.first().cloned())
        .ok_or_else(|| {
            Error::invalid("the CSR names nothing: give it a common name or DNS/IP subjectAltNames")
        })?;
    Ok((cn, sans))
}

impl Operation for EnrollCertificate {
    type Input = EnrollCertificateInput;
    type Output = IssueOutput;
    const META: OpMeta = OpMeta {
        name: "enroll_certificate",
        title: "Enroll a certificate from a CSR",
        description: "Create and issue a certificate in one step from a CSR's own names (EST simpleenroll), checked against the profile.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn prepare(input: &Self::Input, memo: &mut super::Memo) -> Result<()> {
        memo.csr = Some((input.csr_pem.clone(), pki::parse_csr(&input.csr_pem)?));
        Ok(())
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let (cn, sans) = match ctx.memo.csr.as_ref() {
            Some((_, csr)) => names_of(csr)?,
            None => names_of(&pki::parse_csr(&input.csr_pem)?)?,
        };
        let profile_id = input.profile_id.as_deref().unwrap_or(DEFAULT_PROFILE_ID);
        let profile = ctx
            .tx
            .profile(profile_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("unknown profile_id '{profile_id}'")))?;
        if !profile.allow_client_certificate_new_names {
            client_may_enroll(ctx, &cn, &sans).await?;
        }
        Ok(Subject {
            resource_id: None,
            // Every name the CSR asks for, not only its common name: the
            // approver must see what will be certified.
            summary: format!(
                "Enroll a certificate for {cn} (names: {}) from issuer {} under profile {profile_id}",
                sans.join(", "),
                input.issuer_id.as_deref().unwrap_or(LOCAL_ISSUER_ID)
            ),
            profile_requires_approval: profile.requires_approval,
            four_eyes: None,
            bound: vec![
                format!("names {}", sans.join(",")),
                format!(
                    "profile {profile_id} requires_approval={}",
                    profile.requires_approval
                ),
            ],
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let csr = match ctx.memo.csr.as_ref() {
            Some((text, csr)) if *text == input.csr_pem => csr.clone(),
            _ => pki::parse_csr(&input.csr_pem)?,
        };
        let (common_name, sans) = names_of(&csr)?;
        let create = CreateCertificateInput {
            common_name,
            sans,
            name: None,
            environment: input.environment,
            issuer_id: input.issuer_id,
            profile_id: input.profile_id,
            owner_id: None,
            team_id: None,
            renewal_policy_id: None,
            labels: input.labels,
            target_ids: Vec::new(),
        };
        let cert = CreateCertificate::execute(ctx, create).await?;
        if input.server_keygen {
            // The CSR proved nothing but its names; the key is made here.
            return signed_now(issue_version(ctx, cert, None, None, JobKind::Issuance).await?);
        }
        ctx.memo.csr = Some((input.csr_pem.clone(), csr));
        signed_now(issue_version(ctx, cert, Some(&input.csr_pem), None, JobKind::Issuance).await?)
    }
}

/// Refuses a client-certificate principal a name its certificate does not
/// hold. The certificate is checked again here, inside the call's
/// transaction, so one revoked or superseded since authentication is refused.
async fn client_may_enroll(ctx: &mut Ctx<'_>, cn: &str, sans: &[String]) -> Result<()> {
    let Some(version_id) = ctx.principal.client_certificate_version() else {
        return Ok(());
    };
    let fingerprint = ctx
        .tx
        .version(version_id)
        .await?
        .map(|v| v.fingerprint)
        .ok_or_else(|| Error::forbidden("the client certificate is not in certctl's inventory"))?;
    let view = ctx.engine.status_view(ctx.now);
    let (cert, _) = crate::auth::current_client_certificate(ctx.tx, view, &fingerprint).await?;
    let held = crate::auth::held_names(&cert);
    let foreign: Vec<&str> = std::iter::once(cn)
        .chain(sans.iter().map(String::as_str))
        .filter(|n| !held.iter().any(|h| h == n))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "the client certificate of {} holds only {}; it may not enroll {} (the profile does not allow client certificates new names)",
        cert.id,
        held.join(", "),
        foreign.join(", ")
    )))
}

/// A certificate enrolled with a server-generated key, and that key.
pub struct ServerKeyEnrollment {
    pub issued: IssueOutput,
    /// The private key, PKCS#8 DER, unencrypted (EST sends it over TLS).
    /// Zeroized on drop; certctl keeps only its sealed copy.
    pub private_key_pkcs8_der: zeroize::Zeroizing<Vec<u8>>,
}

impl crate::Engine {
    /// EST `serverkeygen` (RFC 7030 4.4): `enroll_certificate` with
    /// `server_keygen`, through the same gate, policy and audit, returning
    /// the generated key once. A gated call returns its ticket; when it is
    /// approved later, the key is only ever available as a PKCS#12 export.
    pub async fn enroll_with_server_key(
        &self,
        principal: &crate::domain::Principal,
        mut input: EnrollCertificateInput,
    ) -> Result<super::Outcome<ServerKeyEnrollment>> {
        input.server_keygen = true;
        let (outcome, key) = self
            .call_keeping_key::<EnrollCertificate>(principal, input)
            .await?;
        Ok(match outcome {
            super::Outcome::Completed { result } => {
                let pem = key
                    .ok_or_else(|| Error::internal("server-side key generation returned no key"))?;
                super::Outcome::Completed {
                    result: ServerKeyEnrollment {
                        issued: result,
                        private_key_pkcs8_der: pki::keygen::pkcs8_der(&pem)?,
                    },
                }
            }
            super::Outcome::ApprovalRequired(t) => super::Outcome::ApprovalRequired(t),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReenrollCertificateInput {
    /// The certificate the client holds now (PEM or base64 DER); EST takes it
    /// from the client's TLS certificate.
    pub current_cert_pem: String,
    /// The new CSR; it may name only names of the current certificate.
    pub csr_pem: String,
}

pub struct ReenrollCertificate;

impl ReenrollCertificate {
    async fn current(ctx: &mut Ctx<'_>, input: &ReenrollCertificateInput) -> Result<String> {
        let presented = pki::parse_certificate_pem(&input.current_cert_pem)?;
        let view = ctx.engine.status_view(ctx.now);
        let (cert, version) =
            crate::auth::current_client_certificate(ctx.tx, view, &presented.fingerprint_sha256)
                .await?;
        // A client-certificate principal renews only the certificate it
        // authenticated with.
        if let Some(own) = ctx.principal.client_certificate_version()
            && own != version.id
        {
            return Err(Error::forbidden(
                "the certificate to re-enroll is not the client certificate of this connection",
            ));
        }
        Ok(cert.id)
    }
}

impl Operation for ReenrollCertificate {
    type Input = ReenrollCertificateInput;
    type Output = IssueOutput;
    const META: OpMeta = OpMeta {
        name: "reenroll_certificate",
        title: "Re-enroll a certificate",
        description: "Renew the certificate a client currently holds from a new CSR with the same names (EST simplereenroll).",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: false,
        resource: "certificate",
        gateable: true,
    };

    fn prepare(input: &Self::Input, memo: &mut super::Memo) -> Result<()> {
        memo.csr = Some((input.csr_pem.clone(), pki::parse_csr(&input.csr_pem)?));
        Ok(())
    }

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let id = Self::current(ctx, input).await?;
        let c = load(ctx, &id).await?;
        let profile = ctx.tx.profile(&c.profile_id).await?;
        Ok(Subject {
            resource_id: Some(id.clone()),
            summary: format!("Re-enroll certificate {id} ({})", c.common_name),
            profile_requires_approval: profile.is_some_and(|p| p.requires_approval),
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let id = Self::current(ctx, &input).await?;
        let cert = load(ctx, &id).await?;
        signed_now(issue_version(ctx, cert, Some(&input.csr_pem), None, JobKind::Issuance).await?)
    }
}

/// EST answers with the certificate in the same exchange, so its issuer must
/// sign at once (a local CA kind). An external CA would sign later through a
/// job; refusing here rolls that job back with the rest of the call.
fn signed_now(issuance: super::certificates::Issuance) -> Result<IssueOutput> {
    match issuance {
        super::certificates::Issuance::Now(issued) => Ok(IssueOutput {
            certificate: issued.0,
            version: Some(issued.1),
            job: None,
        }),
        super::certificates::Issuance::Queued(_) => Err(Error::conflict(
            "EST enrollment needs an issuer that signs at once (a local CA); configure --est-issuer accordingly",
        )),
    }
}
