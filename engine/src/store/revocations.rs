//! Revocations with their pre-encoded CRL entries, the latest CRL of each
//! issuer, revocation status for OCSP, and single-use export links.

use futures_util::TryStreamExt;

use super::certificates::{CertificateFilter, StatusView};
use super::query::{Where, bind_args};
use super::{Store, Tx, safe, with_db, with_tx};
use crate::clock::UnixTime;
use crate::domain::RevocationReason;
use crate::error::Result;

/// A revocation to record.
#[derive(Debug, Clone)]
pub struct NewRevocation {
    pub issuer_id: String,
    pub serial: String,
    pub certificate_id: String,
    pub version_id: String,
    pub revoked_at: UnixTime,
    pub reason: RevocationReason,
    /// The certificate's expiry: its entry leaves the CRL afterwards.
    pub not_after: UnixTime,
    /// The DER revokedCertificates entry.
    pub crl_entry: Vec<u8>,
}

/// A signed CRL as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredCrl {
    pub crl_number: i64,
    /// The issuer's revocation revision the CRL was built from.
    pub revision: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub entries: i64,
    pub der: Vec<u8>,
}

/// What the OCSP responder knows of one serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialStatus {
    /// Issued by certctl and not revoked.
    Issued { not_after: UnixTime },
    Revoked {
        at: UnixTime,
        reason: RevocationReason,
    },
}

/// A single-use export link as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportLink {
    pub certificate_id: String,
    pub format: String,
    pub principal_id: String,
    pub expires_at: i64,
}

impl Tx {
    pub async fn insert_revocation(&mut self, r: &NewRevocation) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO revocations (issuer_id, serial, certificate_id, version_id, \
                 revoked_at, reason, not_after, crl_entry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&r.issuer_id)
            .bind(&r.serial)
            .bind(&r.certificate_id)
            .bind(&r.version_id)
            .bind(r.revoked_at)
            .bind(r.reason.as_str())
            .bind(r.not_after)
            .bind(&r.crl_entry)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO crl_revisions (issuer_id, revision) VALUES ($1, 1) \
                 ON CONFLICT (issuer_id) DO UPDATE SET revision = crl_revisions.revision + 1",
            )
            .bind(&r.issuer_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Ids of the certificates matching `filter`, at most `limit`, oldest first.
    pub async fn certificate_ids_matching(
        &mut self,
        filter: &CertificateFilter,
        view: StatusView,
        limit: i64,
    ) -> Result<Vec<String>> {
        let mut w = Where::default();
        filter.apply(&mut w, view);
        let sql = format!(
            "SELECT id FROM certificates{} ORDER BY created_at, id LIMIT {}",
            w.sql(),
            limit.max(0)
        );
        let ids: Vec<String> = with_tx!(self, |c| {
            bind_args!(sqlx::query_scalar(safe(&sql)), &w.args)
                .fetch_all(c)
                .await?
        });
        Ok(ids)
    }

    /// The certificate and version ids of the version with this fingerprint.
    pub async fn version_by_fingerprint(
        &mut self,
        fingerprint: &str,
    ) -> Result<Option<(String, String)>> {
        let row: Option<(String, String)> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT certificate_id, id FROM certificate_versions WHERE fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(c)
            .await?
        });
        Ok(row)
    }

    /// The sealed private key of a version (server-side key generation only).
    pub async fn version_private_key(&mut self, version_id: &str) -> Result<Option<String>> {
        let key: Option<Option<String>> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT private_key_sealed FROM certificate_versions WHERE id = $1")
                .bind(version_id)
                .fetch_optional(c)
                .await?
        });
        Ok(key.flatten())
    }

    pub async fn insert_export_link(
        &mut self,
        token_hash: &str,
        link: &ExportLink,
        now: UnixTime,
    ) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO export_links (token_hash, certificate_id, format, principal_id, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(&link.certificate_id)
            .bind(&link.format)
            .bind(&link.principal_id)
            .bind(now)
            .bind(link.expires_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// An unexpired, unused link.
    pub async fn export_link(
        &mut self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<Option<ExportLink>> {
        let row: Option<ExportLink> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT certificate_id, format, principal_id, expires_at FROM export_links \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(c)
            .await?
        });
        Ok(row)
    }

    /// Marks an unexpired, unused link as used and returns it; `None` when it
    /// is unknown, expired or already used (one atomic update, so a link
    /// serves exactly one download even across replicas).
    pub async fn consume_export_link(
        &mut self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<Option<ExportLink>> {
        let row: Option<ExportLink> = with_tx!(self, |c| {
            sqlx::query_as(
                "UPDATE export_links SET used_at = $2 WHERE token_hash = $1 \
                 AND used_at IS NULL AND expires_at > $2 \
                 RETURNING certificate_id, format, principal_id, expires_at",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(c)
            .await?
        });
        Ok(row)
    }

    /// Stores a newly signed CRL (its number is `crl.crl_number`).
    pub async fn save_crl(&mut self, issuer_id: &str, crl: &StoredCrl) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO crls (issuer_id, crl_number, revision, this_update, next_update, \
                 entries, der) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issuer_id) DO UPDATE \
                 SET crl_number = excluded.crl_number, revision = excluded.revision, \
                 this_update = excluded.this_update, next_update = excluded.next_update, \
                 entries = excluded.entries, der = excluded.der",
            )
            .bind(issuer_id)
            .bind(crl.crl_number)
            .bind(crl.revision)
            .bind(crl.this_update)
            .bind(crl.next_update)
            .bind(crl.entries)
            .bind(&crl.der)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The number of the issuer's last CRL (0 before the first).
    pub async fn last_crl_number(&mut self, issuer_id: &str) -> Result<i64> {
        let n: Option<i64> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT crl_number FROM crls WHERE issuer_id = $1")
                .bind(issuer_id)
                .fetch_optional(c)
                .await?
        });
        Ok(n.unwrap_or(0))
    }
}

impl Store {
    /// Appends the CRL entries of `issuer_id`'s unexpired revocations to
    /// `out`, streamed (no row objects kept), and returns how many there were.
    pub async fn crl_entries_into(
        &self,
        issuer_id: &str,
        now: UnixTime,
        out: &mut Vec<u8>,
    ) -> Result<i64> {
        let mut n = 0i64;
        with_db!(&self.db, |p| {
            let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT crl_entry FROM revocations WHERE issuer_id = $1 AND not_after > $2",
            )
            .bind(issuer_id)
            .bind(now)
            .fetch(p);
            while let Some(entry) = rows.try_next().await? {
                out.extend_from_slice(&entry);
                n += 1;
            }
        });
        Ok(n)
    }

    /// The issuer's revocation revision, and the number, revision and
    /// thisUpdate of its stored CRL: enough to tell whether the CRL is behind.
    pub async fn crl_freshness(&self, issuer_id: &str) -> Result<(i64, Option<(i64, i64, i64)>)> {
        let row: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT (SELECT revision FROM crl_revisions WHERE issuer_id = $1), \
                 c.crl_number, c.revision, c.this_update \
                 FROM (SELECT 1 AS one) AS x LEFT JOIN crls c ON c.issuer_id = $1",
            )
            .bind(issuer_id)
            .fetch_one(p)
            .await?
        });
        let stored = match (row.1, row.2, row.3) {
            (Some(n), Some(r), Some(t)) => Some((n, r, t)),
            _ => None,
        };
        Ok((row.0.unwrap_or(0), stored))
    }

    /// The issuer's latest stored CRL.
    pub async fn latest_crl(&self, issuer_id: &str) -> Result<Option<StoredCrl>> {
        let row: Option<StoredCrl> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT crl_number, revision, this_update, next_update, entries, der FROM crls \
                 WHERE issuer_id = $1",
            )
            .bind(issuer_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row)
    }

    /// The status of a serial certctl issued under `issuer_id`, if it did.
    pub async fn serial_status(
        &self,
        issuer_id: &str,
        serial: &str,
    ) -> Result<Option<SerialStatus>> {
        let row: Option<(i64, Option<i64>, Option<String>)> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT not_after, revoked_at, revocation_reason FROM certificate_versions \
                 WHERE issuer_id = $1 AND serial = $2",
            )
            .bind(issuer_id)
            .bind(serial)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(not_after, revoked_at, reason)| match revoked_at {
            Some(at) => SerialStatus::Revoked {
                at,
                reason: reason
                    .as_deref()
                    .and_then(RevocationReason::parse)
                    .unwrap_or_default(),
            },
            None => SerialStatus::Issued { not_after },
        }))
    }
}
