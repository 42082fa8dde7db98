//! API keys: generation, hashing and lookup. A key is `cck_` followed by 43
//! characters of base64url (256 random bits); only its SHA-256 is stored.
//! TLS client certificates: a certificate is a credential only while the
//! inventory holds it current ([`Engine::authenticate_client_certificate`]).

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::domain::{
    ApiPrincipal, CertificateVersion, EffectiveStatus, ManagedCertificate, Principal, Role,
};
use crate::engine::Engine;
use crate::error::{Error, Result};

const KEY_PREFIX: &str = "cck_";

/// A freshly minted API key; shown once, never stored.
pub struct NewApiKey {
    pub principal: ApiPrincipal,
    pub key: Zeroizing<String>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("principal", &self.principal)
            .field("key", &"<redacted>")
            .finish()
    }
}

pub(crate) fn generate_key() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut())
        .map_err(|_| Error::internal("random number generator failed"))?;
    Ok(Zeroizing::new(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        key.as_bytes(),
    ))
}

/// Creates a principal with a new key inside a transaction.
pub(crate) async fn mint(
    tx: &mut crate::store::Tx,
    engine: &Engine,
    name: &str,
    role: Role,
    agent_id: Option<String>,
    now: i64,
) -> Result<NewApiKey> {
    if role == Role::Agent && agent_id.is_none() {
        return Err(Error::invalid("an agent principal must name its agent_id"));
    }
    if role != Role::Agent && agent_id.is_some() {
        return Err(Error::invalid(
            "only agent principals are bound to an agent_id",
        ));
    }
    let key = generate_key()?;
    let principal = ApiPrincipal {
        id: crate::ids::new_id("pr", engine.clock()),
        name: name.to_owned(),
        role,
        agent_id,
        key_prefix: key.chars().take(12).collect(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    tx.insert_principal(&principal, &hash_key(&key)).await?;
    Ok(NewApiKey { principal, key })
}

impl Engine {
    /// The principal a bearer key belongs to. Recently seen keys are answered
    /// from a cache: a revocation through this engine takes effect at once,
    /// one through another replica within
    /// [`crate::store::PRINCIPAL_CACHE_SECONDS`].
    pub async fn authenticate(&self, key: &str) -> Result<Principal> {
        if !key.starts_with(KEY_PREFIX) || key.len() > 128 {
            return Err(Error::Unauthenticated);
        }
        let p = self
            .store()
            .principal_by_key_hash_cached(&hash_key(key), self.now())
            .await?
            .ok_or(Error::Unauthenticated)?;
        Ok(Principal {
            id: p.id,
            name: p.name,
            role: p.role,
            agent_id: p.agent_id,
            address: None,
        })
    }

    /// The first approver, created once, at the first start (when
    /// [`Engine::bootstrap_admin_key`] made the admin key in this start):
    /// under four eyes or a write gate, a principal able to approve can
    /// otherwise only be created with another approver's approval, and on a
    /// fresh install there is none. Returns `None` when it was done before.
    pub async fn bootstrap_first_approver(&self, name: &str) -> Result<Option<NewApiKey>> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::invalid(
                "the first approver's name must be 1 to 200 characters",
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin_write().await?;
        if !tx
            .meta_insert_once("first_approver_bootstrapped", "1")
            .await?
        {
            return Ok(None);
        }
        let key = mint(&mut tx, self, name, Role::Approver, None, now).await?;
        let system = Principal::system("bootstrap");
        self.append(
            &mut tx,
            &system,
            "create_principal",
            "principal",
            Some(key.principal.id.clone()),
            crate::domain::Outcome::Success,
            serde_json::Map::from_iter([
                ("role".to_owned(), "approver".into()),
                ("first_approver".to_owned(), true.into()),
            ]),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    /// On first start, creates the admin principal and returns its key (to be
    /// written to `admin.key` and printed once). Returns `None` afterwards.
    pub async fn bootstrap_admin_key(&self) -> Result<Option<NewApiKey>> {
        let now = self.now();
        let mut tx = self.store().begin_write().await?;
        if !tx.meta_insert_once("admin_bootstrapped", "1").await? {
            return Ok(None);
        }
        let key = mint(&mut tx, self, "admin", Role::Admin, None, now).await?;
        let system = Principal::system("bootstrap");
        self.append(
            &mut tx,
            &system,
            "create_principal",
            "principal",
            Some(key.principal.id.clone()),
            crate::domain::Outcome::Success,
            serde_json::Map::from_iter([("role".to_owned(), "admin".into())]),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(key))
    }
}

// ---------------------------------------------------------------- TLS client certificates

/// The id prefix of principals authenticated by a TLS client certificate;
/// the rest of the id is the certificate version the client presented.
const CLIENT_CERTIFICATE_PREFIX: &str = "mtls:";

/// Operations a client-certificate principal may run: enrollment only. Its
/// credential is a device's certificate, not a person's key, so it must not
/// reach the rest of the catalogue even if a face passed it on.
const CLIENT_CERTIFICATE_OPERATIONS: [&str; 2] = ["enroll_certificate", "reenroll_certificate"];

impl Principal {
    /// The certificate version behind a principal authenticated by a TLS
    /// client certificate ([`Engine::authenticate_client_certificate`]).
    pub fn client_certificate_version(&self) -> Option<&str> {
        self.id.strip_prefix(CLIENT_CERTIFICATE_PREFIX)
    }
}

/// Refuses an operation outside enrollment to a client-certificate principal.
pub(crate) fn check_client_certificate_scope(principal: &Principal, operation: &str) -> Result<()> {
    if principal.client_certificate_version().is_some()
        && !CLIENT_CERTIFICATE_OPERATIONS.contains(&operation)
    {
        return Err(Error::forbidden(format!(
            "a TLS client certificate may only enroll; '{operation}' needs an API key"
        )));
    }
    Ok(())
}

/// The inventory's record of a client certificate, checked to be current:
/// the version certctl issued with this fingerprint, still the current
/// version of its certificate, within its validity and not revoked. Every
/// refusal is `Forbidden` with the reason, so the client's operator can act.
pub(crate) async fn current_client_certificate(
    tx: &mut crate::store::Tx,
    view: crate::store::StatusView,
    fingerprint: &str,
) -> Result<(ManagedCertificate, CertificateVersion)> {
    let (certificate_id, version_id) = tx
        .version_by_fingerprint(fingerprint)
        .await?
        .ok_or_else(|| Error::forbidden("the client certificate is not in certctl's inventory"))?;
    let cert = tx
        .certificate(&certificate_id, view)
        .await?
        .ok_or_else(|| Error::forbidden("the client certificate is not in certctl's inventory"))?;
    let version = tx
        .version(&version_id)
        .await?
        .ok_or_else(|| Error::forbidden("the client certificate is not in certctl's inventory"))?;
    // Revocation first: a revoked key is the case an operator must see named.
    if version.revoked_at.is_some() || cert.status == EffectiveStatus::Revoked {
        return Err(Error::forbidden("the client certificate is revoked"));
    }
    if cert.current_version_id.as_deref() != Some(version.id.as_str()) {
        return Err(Error::forbidden(
            "the client certificate has been superseded by a newer version; use the current one",
        ));
    }
    if version.not_after <= view.now || cert.status == EffectiveStatus::Expired {
        return Err(Error::forbidden("the client certificate has expired"));
    }
    if version.not_before > view.now {
        return Err(Error::forbidden("the client certificate is not valid yet"));
    }
    match cert.status {
        EffectiveStatus::Valid | EffectiveStatus::Expiring => Ok((cert, version)),
        other => Err(Error::forbidden(format!(
            "the client certificate's managed certificate is {}",
            other.as_str()
        ))),
    }
}

/// The names a certificate holds (common name and SANs, lower-case).
pub(crate) fn held_names(cert: &ManagedCertificate) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(&cert.common_name)
        .chain(&cert.sans)
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Engine {
    /// The principal of a TLS client certificate (DER, as the TLS layer
    /// verified it against the client roots). The chain alone proves only
    /// that certctl's CA once signed it; the certificate is a credential
    /// only while it is in the inventory, current, valid and not revoked.
    /// The principal has the operator role, may only enroll, and may enroll
    /// only the names of its certificate unless the profile allows more
    /// (`allow_client_certificate_new_names`). A refusal is audited, with the
    /// fingerprint's prefix as the actor.
    pub async fn authenticate_client_certificate(&self, der: &[u8]) -> Result<Principal> {
        let now = self.now();
        let fingerprint = crate::pki::fingerprint_sha256(der);
        let checked = match crate::pki::cert::parse_certificate_der(der) {
            Err(_) => Err(Error::forbidden("the client certificate cannot be read")),
            Ok(info) if info.not_after <= now => {
                Err(Error::forbidden("the client certificate has expired"))
            }
            Ok(_) => {
                let mut tx = self.store().begin_read().await?;
                let found =
                    current_client_certificate(&mut tx, self.status_view(now), &fingerprint).await;
                tx.commit().await?;
                found
            }
        };
        match checked {
            Ok((cert, version)) => Ok(Principal {
                id: format!("{CLIENT_CERTIFICATE_PREFIX}{}", version.id),
                name: format!("client certificate {} ({})", cert.common_name, cert.id),
                role: Role::Operator,
                agent_id: None,
                address: None,
            }),
            Err(e) => {
                let actor = Principal {
                    id: format!("{CLIENT_CERTIFICATE_PREFIX}sha256:{}", &fingerprint[..16]),
                    name: "refused client certificate".into(),
                    role: Role::Operator,
                    agent_id: None,
                    address: None,
                };
                let mut details = serde_json::Map::new();
                details.insert("error".into(), e.to_string().into());
                details.insert("fingerprint_sha256".into(), fingerprint.clone().into());
                let mut tx = self.store().begin_write().await?;
                self.append(
                    &mut tx,
                    &actor,
                    "authenticate_client_certificate",
                    "certificate",
                    None,
                    crate::domain::Outcome::Denied,
                    details,
                    now,
                )
                .await?;
                tx.commit().await?;
                Err(e)
            }
        }
    }
}
