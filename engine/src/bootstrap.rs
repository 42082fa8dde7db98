//! First start: the local CA, the default profile, the audit checkpoint key
//! and the first admin key.
//! Every step is an insert that does nothing when the row exists, so two
//! processes starting on one empty database end with one of each.

use crate::domain::{
    ExtendedKeyUsage, Issuer, IssuerKind, KeyAlgorithm, KeygenMode, Principal, Profile, SanRules,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pki;

/// The id of the local CA created on first start.
pub const LOCAL_ISSUER_ID: &str = "iss-local";
/// The id of the profile created on first start.
pub const DEFAULT_PROFILE_ID: &str = "prof-default";

pub(crate) async fn ensure_defaults(engine: &Engine) -> Result<()> {
    let now = engine.now();
    let store = engine.store();
    if store.issuer(LOCAL_ISSUER_ID).await?.is_none() {
        // Key generation happens outside the transaction; if another process
        // wins the insert, this CA is simply discarded.
        let material = pki::create_local_ca(
            engine.master_key(),
            &engine.config().organization,
            now,
            LOCAL_ISSUER_ID,
        )?;
        let issuer = Issuer {
            id: LOCAL_ISSUER_ID.into(),
            name: "Local CA".into(),
            kind: IssuerKind::Local,
            config: serde_json::json!({}),
            secret_fields: Vec::new(),
            enabled: true,
            ca_cert_pem: None,
            ca_chain_pem: None,
            ca_subject: None,
            ca_not_after: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = store.begin_write().await?;
        if tx.insert_issuer(&issuer, Some(&material)).await? {
            let system = Principal::system("bootstrap");
            let details = serde_json::Map::from_iter([(
                "subject".to_owned(),
                serde_json::Value::from(material.subject.clone()),
            )]);
            engine
                .append(
                    &mut tx,
                    &system,
                    "create_issuer",
                    "issuer",
                    Some(issuer.id.clone()),
                    crate::domain::Outcome::Success,
                    details,
                    now,
                )
                .await?;
            tracing::info!(subject = %material.subject, "created the local CA");
        }
        tx.commit().await?;
    }
    let mut tx = store.begin_write().await?;
    if tx.profile(DEFAULT_PROFILE_ID).await?.is_none() {
        tx.upsert_profile(&default_profile(now)).await?;
    }
    tx.commit().await?;
    check_master_key(engine).await?;
    // Approvals stored before their secrets were sealed (an upgrade).
    crate::ops::approval_secrets::seal_stored(engine).await?;
    // The key that signs audit checkpoints; a master key that cannot open
    // it stops the start here rather than at the first checkpoint.
    crate::audit_anchor::ensure_key(engine).await?;
    Ok(())
}

/// Refuses to start with a master key that cannot open the database's
/// sealed material: such a replica would report ready and then fail every
/// issuance with "sealed key could not be decrypted".
async fn check_master_key(engine: &Engine) -> Result<()> {
    let Some(record) = engine.store().issuer(LOCAL_ISSUER_ID).await? else {
        return Ok(());
    };
    let Some(material) = &record.ca else {
        return Ok(());
    };
    match engine.signing_ca(LOCAL_ISSUER_ID, material) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::invalid(
            "this master key cannot decrypt the database's CA keys: every process on one \
             database must use the same master key (CERTCTL_MASTER_KEY, --master-key-file, \
             or the master.key of the data directory that set the database up)",
        )),
    }
}

/// A profile suitable for TLS servers: any common key type, 47-day default
/// validity (the CA/Browser Forum's 2029 limit), at most 398 days.
pub fn default_profile(now: i64) -> Profile {
    Profile {
        id: DEFAULT_PROFILE_ID.into(),
        name: "default".into(),
        description: "TLS server certificates".into(),
        allowed_key_types: KeyAlgorithm::ALL.to_vec(),
        default_key_type: KeyAlgorithm::EcdsaP256,
        max_ttl_seconds: 398 * 86400,
        default_ttl_seconds: 47 * 86400,
        ekus: vec![ExtendedKeyUsage::ServerAuth],
        san_rules: SanRules::default(),
        requires_approval: false,
        keygen_mode: KeygenMode::Agent,
        short_lived: false,
        allow_client_certificate_new_names: false,
        created_at: now,
        updated_at: now,
    }
}
