//! `verify_audit_log`: the hash chain, the signed checkpoints, and the events
//! they name, optionally against an exported copy of the checkpoints.
//!
//! Every check reports what it found, precisely: the first broken link;
//! checkpoints that do not verify or are missing; events a checkpoint names
//! that are gone (truncation, how many) or are not the ones it signed
//! (rewrite); and, as a warning, the events after the last checkpoint that
//! nothing signed vouches for yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::signature_verifies;
use crate::domain::FindingKind as K;
use crate::domain::audit::GENESIS_HASH;
use crate::domain::audit_checkpoint::{CHECKPOINT_ALGORITHM, CHECKPOINT_EXPORT_FORMAT, sha256_hex};
use crate::domain::{AuditCheckpoint, AuditCheckpointExport, AuditFinding, ChainVerification};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// A verified checkpoint's claim: the event at `head_seq` is this one.
#[derive(Debug, Clone)]
struct Anchor {
    number: i64,
    event_id: String,
    head_hash: String,
    /// "the database" or "the exported copy", for messages.
    source: &'static str,
}

/// One finding per kind: the first case, and how many.
#[derive(Default)]
struct Tally {
    first: Option<AuditFinding>,
    n: i64,
}

impl Tally {
    fn note(&mut self, f: impl FnOnce() -> AuditFinding) {
        self.n += 1;
        if self.first.is_none() {
            self.first = Some(f());
        }
    }

    fn finding(self) -> Option<AuditFinding> {
        let n = self.n;
        self.first.map(|f| {
            let message = if n > 1 {
                format!("{} ({n} checkpoints in all)", f.message)
            } else {
                f.message.clone()
            };
            AuditFinding { message, ..f }.count(n)
        })
    }
}

/// Checks the chain and its anchors; `export` is a copy of the checkpoints
/// kept outside the database (the output of `get_audit_checkpoints`).
pub(crate) async fn verify(
    engine: &Engine,
    export: Option<AuditCheckpointExport>,
) -> Result<ChainVerification> {
    let exported = export.map(parse_export).transpose()?;
    // A key that is gone or does not open is a finding about the log, not
    // an error of the call: the rest is still checked and reported.
    let (key, key_trouble) = match super::load_key(engine).await {
        Ok(Some(k)) => (Some(k), ""),
        Ok(None) => (None, "is missing from the database"),
        Err(e @ Error::Storage(_)) => return Err(e),
        Err(_) => (
            None,
            "does not open with the master key (replaced or corrupted)",
        ),
    };
    let mut bad_signature = Tally::default();
    let mut missing = Tally::default();
    let mut findings = Vec::new();
    let mut anchors: BTreeMap<i64, Vec<Anchor>> = BTreeMap::new();
    let mut verified: BTreeSet<(i64, String)> = BTreeSet::new();

    // The database's checkpoints: each signed by the key, each linked to the one before.
    let mut db_hashes: HashMap<i64, String> = HashMap::new();
    let mut expected = (1i64, GENESIS_HASH.to_owned());
    let mut after = 0;
    loop {
        let page = engine.store().audit_checkpoints(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.number;
        for cp in page {
            if cp.number != expected.0 || cp.prev_hash != expected.1 {
                let gap = (cp.number - expected.0).max(1);
                let first = expected.0;
                missing.note(|| {
                    AuditFinding::new(
                        K::CheckpointMissing,
                        format!(
                            "checkpoint {} does not follow checkpoint {}: {gap} checkpoint(s) \
                             before it were deleted or replaced",
                            cp.number,
                            first - 1
                        ),
                    )
                    .checkpoint(first)
                });
            }
            let recomputed = sha256_hex(&cp.signed_text());
            expected = (cp.number + 1, recomputed.clone());
            db_hashes.insert(cp.number, recomputed);
            match &key {
                Some(k) if signature_verifies(&cp, k.public_key()) => {
                    verified.insert((cp.number, cp.hash.clone()));
                    add_anchor(&mut anchors, &cp, "the database");
                }
                Some(k) => bad_signature.note(|| {
                    AuditFinding::new(
                        K::CheckpointSignatureInvalid,
                        format!(
                            "checkpoint {} in the database does not verify with the checkpoint \
                             key {}: it was forged or altered",
                            cp.number,
                            short(k.key_id())
                        ),
                    )
                    .checkpoint(cp.number)
                    .seq(cp.head_seq)
                }),
                None => {}
            }
        }
    }
    if key.is_none() {
        findings.push(AuditFinding::new(
            K::CheckpointKeyChanged,
            format!(
                "the audit checkpoint key {key_trouble}, so no checkpoint in the database can be \
                 verified"
            ),
        ));
    }

    // The exported copy: its own key, its own signatures, and every
    // checkpoint in it must still be in the database as it was.
    if let Some((x, public)) = &exported {
        if let Some(k) = &key
            && k.public_key() != public.as_slice()
        {
            findings.push(AuditFinding::new(
                K::CheckpointKeyChanged,
                format!(
                    "the checkpoint key in the database ({}) is not the exported copy's ({}): \
                     the key was replaced",
                    short(k.key_id()),
                    short(&x.key_id)
                ),
            ));
        }
        for cp in &x.checkpoints {
            if !signature_verifies(cp, public) {
                bad_signature.note(|| {
                    AuditFinding::new(
                        K::CheckpointSignatureInvalid,
                        format!(
                            "checkpoint {} in the exported copy does not verify with its key",
                            cp.number
                        ),
                    )
                    .checkpoint(cp.number)
                    .seq(cp.head_seq)
                });
                continue;
            }
            verified.insert((cp.number, cp.hash.clone()));
            add_anchor(&mut anchors, cp, "the exported copy");
            match db_hashes.get(&cp.number) {
                Some(h) if *h == cp.hash => {}
                found => missing.note(|| {
                    let what = if found.is_some() {
                        "is not the one in the database (replaced)"
                    } else {
                        "is gone from the database (deleted)"
                    };
                    AuditFinding::new(
                        K::CheckpointMissing,
                        format!(
                            "checkpoint {} of the exported copy (event seq {}) {what}",
                            cp.number, cp.head_seq
                        ),
                    )
                    .checkpoint(cp.number)
                    .seq(cp.head_seq)
                }),
            }
        }
    }

    // The events: the chain, and what every verified checkpoint says of them.
    let positions: BTreeSet<i64> = anchors.keys().copied().collect();
    let walk = engine.store().walk_audit_chain(&positions).await?;
    let mut head_findings = Vec::new();
    if let Some((seq, why)) = walk.first_broken {
        head_findings
            .push(AuditFinding::new(K::BrokenLink, format!("event seq {seq}: {why}")).seq(seq));
    }
    let end = walk.last_seq;
    if let Some((&furthest, claims)) = anchors.range(end + 1..).next_back() {
        let a = &claims[0];
        let gone = furthest - end;
        head_findings.push(
            AuditFinding::new(
                K::Truncation,
                format!(
                    "the log ends at event seq {end}, but checkpoint {} in {} signed event seq \
                     {furthest}: {gone} event(s) at the end were deleted",
                    a.number, a.source
                ),
            )
            .seq(end + 1)
            .checkpoint(a.number)
            .count(gone),
        );
    }
    let mut rewrite = Tally::default();
    for (seq, claims) in anchors.range(..=end) {
        let Some((id, hash)) = walk.at_positions.get(seq) else {
            continue; // a hole in the middle: the broken link names it
        };
        for a in claims {
            if *hash != a.head_hash || *id != a.event_id {
                rewrite.note(|| {
                    AuditFinding::new(
                        K::Rewrite,
                        format!(
                            "event seq {seq} is {id}, not the event {} that checkpoint {} in {} \
                             signed: the log was rewritten (or cut and appended to) since",
                            a.event_id, a.number, a.source
                        ),
                    )
                    .seq(*seq)
                    .checkpoint(a.number)
                });
            }
        }
    }
    head_findings.extend(rewrite.finding());
    findings.splice(0..0, head_findings);
    findings.extend(bad_signature.finding());
    findings.extend(missing.finding());

    let anchored = anchors.keys().next_back().copied();
    let unanchored = (end - anchored.unwrap_or(0)).max(0);
    if unanchored > 0 {
        let after = match anchored {
            Some(s) => format!("the last checkpoint (event seq {s})"),
            None => "any checkpoint".to_owned(),
        };
        findings.push(
            AuditFinding::new(
                K::UnanchoredTail,
                format!(
                    "{unanchored} event(s) after {after} are not anchored yet; the next \
                     checkpoint covers them"
                ),
            )
            .seq(end - unanchored + 1)
            .count(unanchored),
        );
    }
    let first_failure = findings.iter().find(|f| f.failure);
    Ok(ChainVerification {
        valid: first_failure.is_none(),
        checked: walk.checked,
        first_broken_seq: walk
            .first_broken
            .map(|(s, _)| s)
            .or_else(|| first_failure.and_then(|f| f.seq)),
        reason: first_failure.map(|f| f.message.clone()),
        checkpoints_verified: verified.len() as i64,
        anchored_through_seq: anchored,
        unanchored_events: unanchored,
        findings,
    })
}

fn add_anchor(
    anchors: &mut BTreeMap<i64, Vec<Anchor>>,
    cp: &AuditCheckpoint,
    source: &'static str,
) {
    let claims = anchors.entry(cp.head_seq).or_default();
    if !claims
        .iter()
        .any(|a| a.head_hash == cp.head_hash && a.event_id == cp.head_event_id)
    {
        claims.push(Anchor {
            number: cp.number,
            event_id: cp.head_event_id.clone(),
            head_hash: cp.head_hash.clone(),
            source,
        });
    }
}

/// The export as typed, with its public key decoded; a malformed copy is
/// refused (it is the caller's input, not a finding about the log).
fn parse_export(x: AuditCheckpointExport) -> Result<(AuditCheckpointExport, Vec<u8>)> {
    if x.format != CHECKPOINT_EXPORT_FORMAT || x.algorithm != CHECKPOINT_ALGORITHM {
        return Err(Error::invalid(format!(
            "checkpoints: expected format {CHECKPOINT_EXPORT_FORMAT} with algorithm \
             {CHECKPOINT_ALGORITHM} (the output of get_audit_checkpoints)"
        )));
    }
    let public = B64
        .decode(x.public_key.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| Error::invalid("checkpoints: public_key is not a base64 Ed25519 key"))?;
    if sha256_hex(&public) != x.key_id {
        return Err(Error::invalid(
            "checkpoints: key_id is not the SHA-256 of public_key",
        ));
    }
    Ok((x, public))
}

/// The start of a key id, enough to tell keys apart in a message.
fn short(key_id: &str) -> &str {
    key_id.get(..16).unwrap_or(key_id)
}
