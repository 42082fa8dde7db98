//! API keys: generation, hashing and lookup. A key is `cck_` followed by 43
//! characters of base64url (256 random bits); only its SHA-256 is stored.

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::domain::{ApiPrincipal, Principal, Role};
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
