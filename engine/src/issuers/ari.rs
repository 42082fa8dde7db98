//! ACME Renewal Information (RFC 9773): the renewal loop asks each ACME CA
//! that offers ARI when it wants its certificates renewed, and moves their
//! renewal time into the suggested window. A CA shortens the window when it
//! plans to revoke (an incident), so certctl renews before the revocation
//! instead of after it.
//!
//! The time chosen inside a window is uniform over the fleet (derived from
//! the certificate id, as renewal jitter is, so every replica and every
//! re-check of the same window picks the same time). Checks follow the CA's
//! `Retry-After`, clamped to between a minute and a day; a CA without ARI is
//! asked again a day later, and a failed check an hour later. Checks run
//! outside any transaction; their outcomes are written together in one short
//! transaction after them (one commit per run, not one per certificate), each
//! only for the version it was made for.

use std::collections::HashMap;

use crate::Engine;
use crate::domain::{Outcome as AuditOutcome, Principal};
use crate::error::Result;

use super::{Connector, NoCheckpoint, RenewalWindow};

/// Certificates looked at per renewal-loop run.
pub const BATCH: i64 = 500;
const MIN_RECHECK: i64 = 60;
const MAX_RECHECK: i64 = 86_400;
const NO_ARI_RECHECK: i64 = 86_400;
const FAILED_RECHECK: i64 = 3_600;

/// When to renew inside `w`: a point derived from the certificate id,
/// uniform over a fleet; never before `now` (a window that started in the
/// past means renew now).
pub fn renewal_time(certificate_id: &str, w: &RenewalWindow, now: i64) -> i64 {
    let span = (w.end - w.start).max(0) as u64;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest.as_ref()[..8]);
    let at = w.start + (u64::from_be_bytes(b) % (span + 1)) as i64;
    at.max(now)
}

/// Asks the CAs about due ACME certificates; returns how many had their
/// renewal time moved.
pub async fn refresh_due(engine: &Engine, now: i64) -> Result<usize> {
    let due = engine.store().ari_due(now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut connectors: HashMap<String, Option<Box<dyn Connector>>> = HashMap::new();
    let mut moved = 0;
    let mut checked = Vec::with_capacity(due.len());
    for d in due {
        if !connectors.contains_key(&d.issuer_id) {
            let c = match engine.store().issuer(&d.issuer_id).await? {
                Some(r) if r.issuer.enabled => super::connector_for(engine.master_key(), &r, engine.config().outbound)
                    .inspect_err(|e| tracing::warn!(issuer = %d.issuer_id, error = %e, "ACME issuer unusable for renewal information"))
                    .ok(),
                _ => None,
            };
            connectors.insert(d.issuer_id.clone(), c);
        }
        let der = crate::pki::cert::certificate_ders(&d.cert_pem, "certificate")?
            .into_iter()
            .next();
        let answer = match (connectors[&d.issuer_id].as_deref(), der) {
            (Some(c), Some(der)) => c.renewal_window(&der, &NoCheckpoint).await,
            _ => Ok(None),
        };
        let (window, next) = match answer {
            Ok(Some(w)) => {
                let next = now + (w.retry_after as i64).clamp(MIN_RECHECK, MAX_RECHECK);
                (Some(w), next)
            }
            Ok(None) => (None, now + NO_ARI_RECHECK),
            Err(e) => {
                tracing::warn!(certificate = %d.certificate_id, error = %e, "ACME renewal information check failed");
                (None, now + FAILED_RECHECK)
            }
        };
        let renew_at = window
            .as_ref()
            .map(|w| renewal_time(&d.certificate_id, w, now));
        checked.push((d, window, renew_at, next));
    }
    let mut tx = engine.store().begin_write().await?;
    for (d, window, renew_at, next) in checked {
        if !tx
            .record_ari_check(&d.certificate_id, &d.version_id, renew_at, next)
            .await?
        {
            // A new version was recorded meanwhile: this check is stale.
            continue;
        }
        if let (Some(w), Some(at)) = (&window, renew_at)
            && d.renew_after != Some(at)
        {
            moved += 1;
            let mut details = serde_json::Map::from_iter([
                ("window_start".to_owned(), w.start.into()),
                ("window_end".to_owned(), w.end.into()),
                ("renew_after".to_owned(), at.into()),
                ("previous_renew_after".to_owned(), d.renew_after.into()),
            ]);
            if let Some(u) = &w.explanation_url {
                details.insert("explanation_url".to_owned(), u.clone().into());
            }
            engine
                .append(
                    &mut tx,
                    &Principal::system("scheduler"),
                    "certificate.renewal_window",
                    "certificate",
                    Some(d.certificate_id.clone()),
                    AuditOutcome::Success,
                    details,
                    now,
                )
                .await?;
        }
    }
    tx.commit().await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: i64, end: i64) -> RenewalWindow {
        RenewalWindow {
            start,
            end,
            retry_after: 3600,
            explanation_url: None,
        }
    }

    #[test]
    fn renewal_time_is_inside_the_window_and_stable() {
        let w = window(1_000_000, 1_086_400);
        for i in 0..200 {
            let id = format!("mc-{i}");
            let t = renewal_time(&id, &w, 0);
            assert!((w.start..=w.end).contains(&t));
            assert_eq!(t, renewal_time(&id, &w, 0));
        }
    }

    #[test]
    fn a_window_in_the_past_means_now() {
        let w = window(100, 200);
        assert_eq!(renewal_time("mc-a", &w, 500), 500);
        let w = window(100, 100);
        assert_eq!(renewal_time("mc-a", &w, 50), 100);
    }
}
