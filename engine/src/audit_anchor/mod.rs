//! Anchoring the audit chain: signed checkpoints of its head.
//!
//! The installation has one checkpoint key (Ed25519), made at first start and
//! stored in `meta` sealed with the master key, so every replica can sign and
//! a stolen database alone cannot. Checkpoints are written by the scheduler's
//! `audit-checkpoint` loop (every N events or T seconds) and on demand by
//! `checkpoint_audit_log`; never per event, so appends cost what they did.
//! A checkpoint is only written when the events since the previous one link
//! to it, so the signed heads form one history. [`verify`] checks the chain
//! against them (and against an exported copy kept elsewhere).

mod verify;

pub(crate) use verify::verify;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::clock::UnixTime;
use crate::domain::audit::GENESIS_HASH;
use crate::domain::audit_checkpoint::{
    CHECKPOINT_ALGORITHM, CHECKPOINT_EXPORT_FORMAT, sha256_hex, signed_text,
};
use crate::domain::{AuditCheckpoint, AuditCheckpointExport};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::Tx;

/// The `meta` row holding the sealed checkpoint key (PKCS#8).
const KEY_META: &str = "audit_checkpoint_key";
/// Sealing context: the sealed key opens only as this key.
const KEY_CONTEXT: &str = "meta/audit_checkpoint_key";

/// The installation's checkpoint signing key.
pub(crate) struct CheckpointKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl CheckpointKey {
    fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| Error::internal("the audit checkpoint key is not an Ed25519 key"))?;
        let key_id = sha256_hex(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn sign(&self, text: &[u8]) -> String {
        B64.encode(self.pair.sign(text).as_ref())
    }
}

/// Whether `cp` is intact and signed by `public_key` (raw Ed25519).
pub(crate) fn signature_verifies(cp: &AuditCheckpoint, public_key: &[u8]) -> bool {
    let text = cp.signed_text();
    if sha256_hex(&text) != cp.hash || sha256_hex(public_key) != cp.key_id {
        return false;
    }
    let Ok(sig) = B64.decode(cp.signature.as_bytes()) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&text, &sig)
        .is_ok()
}

/// Makes the checkpoint key on first start and checks this process's master
/// key opens it. Several processes starting at once each make one; the
/// first insert wins and every process uses that one.
pub(crate) async fn ensure_key(engine: &Engine) -> Result<()> {
    if engine.store().meta(KEY_META).await?.is_none() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::internal("could not generate the audit checkpoint key"))?;
        let sealed = engine.master_key().seal(doc.as_ref(), KEY_CONTEXT)?;
        let mut tx = engine.store().begin_write().await?;
        if tx.meta_insert_once(KEY_META, &sealed).await? {
            tracing::info!("created the audit checkpoint key");
        }
        tx.commit().await?;
    }
    load_key(engine)
        .await?
        .map(|_| ())
        .ok_or_else(|| Error::internal("the audit checkpoint key is missing after it was created"))
}

/// The checkpoint key, opened with the master key; `None` when the database
/// has none (deleted behind certctl's back: verification says so).
pub(crate) async fn load_key(engine: &Engine) -> Result<Option<CheckpointKey>> {
    let Some(sealed) = engine.store().meta(KEY_META).await? else {
        return Ok(None);
    };
    let der = engine.master_key().open(&sealed, KEY_CONTEXT).map_err(|_| {
        Error::invalid(
            "the master key cannot open the audit checkpoint key: wrong master key or corrupted data",
        )
    })?;
    CheckpointKey::from_pkcs8(&der).map(Some)
}

/// When the scheduler writes a checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum When {
    /// Whenever there is an event the last checkpoint does not cover.
    Now,
    /// After `events` new events, or `seconds` after the last checkpoint
    /// when there is any new event (`events` 0: by time only).
    Due { events: i64, seconds: i64 },
}

/// A checkpoint ready to be written: the head it covers has been checked to
/// descend from the last checkpoint's head.
pub(crate) struct Prepared {
    last: Option<AuditCheckpoint>,
    head: Option<(i64, String, String)>,
}

/// Reads the last checkpoint and the head, and checks that every event
/// after the checkpoint links back to it (outside any write transaction, so
/// appends do not wait for the walk). `None` when nothing is due.
pub(crate) async fn prepare(
    engine: &Engine,
    now: UnixTime,
    when: When,
) -> Result<Option<Prepared>> {
    let store = engine.store();
    let last = store.last_audit_checkpoint().await?;
    let Some((head_seq, _, head_hash)) = store.audit_head().await? else {
        return Ok(None);
    };
    let (from_seq, from_hash) = match &last {
        Some(c) => (c.head_seq, c.head_hash.clone()),
        None => (0, GENESIS_HASH.to_owned()),
    };
    // A new checkpoint only extends a history the last one vouches for:
    // never one built on a forged checkpoint row or over a cut log.
    if let Some(c) = &last {
        let key = load_key(engine).await?;
        if !key.is_some_and(|k| signature_verifies(c, k.public_key())) {
            return Err(refused(format!(
                "checkpoint {} does not verify with the checkpoint key",
                c.number
            )));
        }
    }
    if head_seq < from_seq || (head_seq == from_seq && head_hash != from_hash) {
        return Err(refused(format!(
            "the log's last event (seq {head_seq}) is not the one checkpoint {} signed (seq {from_seq})",
            last.as_ref().map_or(0, |c| c.number)
        )));
    }
    if head_seq == from_seq {
        return Ok(match when {
            When::Now => Some(Prepared { last, head: None }),
            When::Due { .. } => None,
        });
    }
    if let When::Due { events, seconds } = when {
        let by_count = events > 0 && head_seq - from_seq >= events;
        let by_time = last.as_ref().is_none_or(|c| now - c.at >= seconds);
        if !by_count && !by_time {
            return Ok(None);
        }
    }
    let walk = store
        .walk_audit_range(from_seq, &from_hash, Some(head_seq), &[head_seq].into())
        .await?;
    if let Some((seq, why)) = walk.first_broken {
        return Err(refused(format!(
            "the events after the last checkpoint do not link to it ({why} at event seq {seq})"
        )));
    }
    let Some((id, hash)) = walk.at_positions.get(&head_seq).cloned() else {
        return Err(refused(format!(
            "the log ends before event seq {head_seq}, which it just had"
        )));
    };
    Ok(Some(Prepared {
        last,
        head: Some((head_seq, id, hash)),
    }))
}

/// The refusal to sign over a log that does not match its checkpoints.
fn refused(what: String) -> Error {
    Error::conflict(format!(
        "no audit checkpoint is written: {what}; run verify_audit_log"
    ))
}

/// Signs and stores a prepared checkpoint in `tx`. `None` when another
/// process wrote one since it was prepared (that one stands).
pub(crate) async fn write(
    engine: &Engine,
    tx: &mut Tx,
    prepared: Prepared,
    now: UnixTime,
) -> Result<Option<AuditCheckpoint>> {
    let Some((head_seq, head_event_id, head_hash)) = prepared.head else {
        return Ok(prepared.last);
    };
    let (current, _) = tx.audit_checkpoint_tip().await?;
    if current.as_ref().map(|c| &c.hash) != prepared.last.as_ref().map(|c| &c.hash) {
        return Ok(None);
    }
    let key = load_key(engine)
        .await?
        .ok_or_else(|| Error::conflict("the audit checkpoint key is missing from the database"))?;
    let (number, prev_hash) = match &prepared.last {
        Some(c) => (c.number + 1, c.hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let text = signed_text(
        number,
        now,
        head_seq,
        &head_event_id,
        &head_hash,
        &prev_hash,
        key.key_id(),
    );
    let cp = AuditCheckpoint {
        number,
        at: now,
        head_seq,
        head_event_id,
        head_hash,
        prev_hash,
        hash: sha256_hex(&text),
        key_id: key.key_id().to_owned(),
        signature: key.sign(&text),
    };
    tx.insert_audit_checkpoint(&cp).await?;
    Ok(Some(cp))
}

/// The scheduler's turn: a checkpoint when one is due, in its own transaction.
pub(crate) async fn checkpoint_if_due(engine: &Engine, now: UnixTime) -> Result<Option<i64>> {
    let cfg = &engine.config().scheduler;
    let when = When::Due {
        events: cfg.audit_checkpoint_events.max(0),
        seconds: cfg.audit_checkpoint_interval_seconds.max(1),
    };
    let Some(prepared) = prepare(engine, now, when).await? else {
        return Ok(None);
    };
    let mut tx = engine.store().begin_write().await?;
    let cp = write(engine, &mut tx, prepared, now).await?;
    tx.commit().await?;
    Ok(cp.map(|c| c.head_seq))
}

/// Checkpoints numbered above `after`, with the key that verifies them.
pub(crate) async fn export(engine: &Engine, after: i64) -> Result<AuditCheckpointExport> {
    let key = load_key(engine)
        .await?
        .ok_or_else(|| Error::conflict("the audit checkpoint key is missing from the database"))?;
    let mut checkpoints = Vec::new();
    let mut from = after.max(0);
    loop {
        let page = engine.store().audit_checkpoints(from, 10_000).await?;
        let Some(last) = page.last() else { break };
        from = last.number;
        checkpoints.extend(page);
    }
    Ok(AuditCheckpointExport {
        format: CHECKPOINT_EXPORT_FORMAT.into(),
        algorithm: CHECKPOINT_ALGORITHM.into(),
        public_key: B64.encode(key.public_key()),
        key_id: key.key_id().to_owned(),
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CheckpointKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        CheckpointKey::from_pkcs8(doc.as_ref()).expect("open")
    }

    fn signed(k: &CheckpointKey) -> AuditCheckpoint {
        let text = signed_text(1, 100, 7, "ev-7", "ab", GENESIS_HASH, k.key_id());
        AuditCheckpoint {
            number: 1,
            at: 100,
            head_seq: 7,
            head_event_id: "ev-7".into(),
            head_hash: "ab".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: sha256_hex(&text),
            key_id: k.key_id().into(),
            signature: k.sign(&text),
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_only_with_its_key() {
        let k = key();
        let cp = signed(&k);
        assert!(signature_verifies(&cp, k.public_key()));
        assert!(!signature_verifies(&cp, key().public_key()));
        for tampered in [
            AuditCheckpoint {
                head_seq: 8,
                ..cp.clone()
            },
            AuditCheckpoint {
                head_hash: "cd".into(),
                ..cp.clone()
            },
            AuditCheckpoint {
                signature: "!!".into(),
                ..cp.clone()
            },
        ] {
            assert!(!signature_verifies(&tampered, k.public_key()));
        }
    }
}
