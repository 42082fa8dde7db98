//! Revocation status for relying parties: the CRL of each local issuer and
//! the OCSP responder, with their caches.
//!
//! These are public reads that relying parties poll at high rates, so they
//! are not catalogue operations: they have no principal, are not audited
//! and never change the inventory. They read the store through the engine
//! (no face touches storage) and sign with the issuer's CA key.
//!
//! - **CRL**: each revocation stores its pre-encoded entry and bumps the
//!   issuer's revision (see `store/revocations.rs`). [`Engine::crl`] serves
//!   the stored CRL while it is current, and rebuilds it (one scan of the
//!   stored entries, a concatenation and one signature) when a revocation
//!   happened since, or when it is half-way to its nextUpdate. The scheduler's
//!   `revocation` loop does the same for every issuer, so a rebuild rarely
//!   happens on a request.
//! - **OCSP**: responses without a nonce are signed once per certificate and
//!   served from memory for [`OCSP_CACHE_SECONDS`]; a revocation through
//!   this process drops the certificate's cached response at once (other
//!   replicas see it when their copy ages out). Requests with a nonce are
//!   signed fresh, since the nonce is inside the signed data. Only serials
//!   the issuer issued are cached (and so re-signed by the refresh loop):
//!   an answer of `unknown` is signed per request and never kept, so
//!   anonymous requests for made-up serials cannot grow the cache or the
//!   loop's work. Their rate is bounded per client by the HTTP face.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::Engine;
use crate::clock::UnixTime;
use crate::error::{Error, Result};
use crate::pki::SigningCa;
use crate::pki::crl::{CaIdentity, CrlRequest, build_crl};
use crate::pki::ocsp::{self, CertQuery, CertStatus, OcspError, ResponseRequest};
use crate::store::{SerialStatus, StoredCrl};

/// A CRL is valid this long (its nextUpdate).
pub const CRL_VALIDITY_SECONDS: i64 = 24 * 3600;
/// A CRL is re-signed once it is this old, even without revocations.
pub const CRL_REFRESH_SECONDS: i64 = CRL_VALIDITY_SECONDS / 2;
/// How long a replica trusts its in-memory CRL before checking the store.
const CRL_CHECK_SECONDS: i64 = 10;
/// An OCSP response is served from the cache this long.
pub const OCSP_CACHE_SECONDS: i64 = 60;
/// An OCSP response's nextUpdate, from its thisUpdate.
pub const OCSP_VALIDITY_SECONDS: i64 = 3600;
/// Bound on cached OCSP responses; the cache is cleared when full.
const OCSP_CACHE_MAX: usize = 200_000;

/// A signed CRL, ready to serve.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: Arc<Vec<u8>>,
    pub number: i64,
    pub this_update: UnixTime,
    pub next_update: UnixTime,
    pub entries: i64,
}

#[derive(Default)]
struct CrlSlot {
    /// Set when this process revoked a certificate of the issuer.
    dirty: AtomicBool,
    /// The current CRL and when the store was last checked; the lock also
    /// makes concurrent requests share one rebuild.
    current: tokio::sync::Mutex<Option<(Crl, UnixTime)>>,
}

/// A local issuer's signer and the identity it answers for.
type Signer = Arc<(Arc<SigningCa>, CaIdentity)>;

#[derive(Clone)]
struct CachedResponse {
    cert_id_der: Vec<u8>,
    der: Arc<Vec<u8>>,
    produced_at: UnixTime,
}

/// Caches behind the CRL and OCSP endpoints; one per engine.
#[derive(Default)]
pub struct RevocationCaches {
    crls: Mutex<HashMap<String, Arc<CrlSlot>>>,
    identities: RwLock<HashMap<String, Signer>>,
    /// (issuer, serial) -> responses by CertID encoding (SHA-1 or SHA-256).
    ocsp: RwLock<HashMap<(String, String), Vec<CachedResponse>>>,
    /// Serials this process revoked, and when: never cached while the
    /// revoking transaction may still be committing.
    recently_revoked: Mutex<HashMap<(String, String), UnixTime>>,
}

impl std::fmt::Debug for RevocationCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCaches").finish_non_exhaustive()
    }
}

/// How long after a local revocation its serial bypasses the OCSP cache.
const RECENT_REVOCATION_SECONDS: i64 = 5;

impl RevocationCaches {
    fn slot(&self, issuer_id: &str) -> Arc<CrlSlot> {
        let mut m = self.crls.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(issuer_id.to_owned()).or_default().clone()
    }

    /// Called by the revoke operations: the issuer's CRL must be rebuilt and
    /// the certificate's OCSP responses dropped.
    pub(crate) fn revoked(&self, issuer_id: &str, serial: &str, now: UnixTime) {
        self.slot(issuer_id).dirty.store(true, Ordering::SeqCst);
        let key = (issuer_id.to_owned(), serial.to_owned());
        self.recently_revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), now);
        self.ocsp
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    fn is_recently_revoked(&self, key: &(String, String), now: UnixTime) -> bool {
        let mut m = self
            .recently_revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match m.get(key) {
            Some(t) if now - *t <= RECENT_REVOCATION_SECONDS => true,
            Some(_) => {
                m.remove(key);
                false
            }
            None => false,
        }
    }
}

impl Engine {
    /// The signing CA and its identity for a local issuer.
    async fn ca_identity(&self, issuer_id: &str) -> Result<Signer> {
        let caches = self.revocation_caches();
        if let Some(found) = caches
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(issuer_id)
        {
            return Ok(found.clone());
        }
        let record = self
            .store()
            .issuer(issuer_id)
            .await?
            .ok_or_else(|| Error::not_found("issuer", issuer_id))?;
        let material = record
            .ca
            .as_ref()
            .filter(|_| record.issuer.kind.is_local())
            .ok_or_else(|| Error::not_found("issuer with a local CA", issuer_id))?;
        let ca = self.signing_ca(issuer_id, material)?;
        let identity = CaIdentity::of(&ca)?;
        let pair = Arc::new((ca, identity));
        caches
            .identities
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer_id.to_owned(), pair.clone());
        Ok(pair)
    }

    /// The current CRL of a local issuer, rebuilt first when a revocation
    /// happened since it was signed or it is due for refresh.
    pub async fn crl(&self, issuer_id: &str) -> Result<Crl> {
        let (ca, identity) = &*self.ca_identity(issuer_id).await?;
        let slot = self.revocation_caches().slot(issuer_id);
        let mut current = slot.current.lock().await;
        let now = self.now();
        let dirty = slot.dirty.load(Ordering::SeqCst);
        if let Some((crl, checked)) = current.as_ref()
            && !dirty
            && now - checked < CRL_CHECK_SECONDS
            && now - crl.this_update < CRL_REFRESH_SECONDS
        {
            return Ok(crl.clone());
        }
        let (revision, stored) = self.store().crl_freshness(issuer_id).await?;
        if !dirty
            && let Some((number, built_from, this_update)) = stored
            && built_from >= revision
            && now - this_update < CRL_REFRESH_SECONDS
        {
            if let Some((crl, checked)) = current.as_mut()
                && crl.number == number
            {
                *checked = now;
                return Ok(crl.clone());
            }
            if let Some(s) = self.store().latest_crl(issuer_id).await?
                && s.crl_number == number
            {
                let crl = to_crl(s);
                *current = Some((crl.clone(), now));
                return Ok(crl);
            }
        }
        // Rebuild. Clear the flag first: a revocation racing with this build
        // sets it again and the next request rebuilds.
        slot.dirty.store(false, Ordering::SeqCst);
        let crl = self
            .build_crl(issuer_id, ca, identity, revision, now)
            .await?;
        *current = Some((crl.clone(), now));
        Ok(crl)
    }

    async fn build_crl(
        &self,
        issuer_id: &str,
        ca: &SigningCa,
        identity: &CaIdentity,
        revision: i64,
        now: UnixTime,
    ) -> Result<Crl> {
        let mut entries = Vec::new();
        let count = self
            .store()
            .crl_entries_into(issuer_id, now, &mut entries)
            .await?;
        let next_update = (now + CRL_VALIDITY_SECONDS).min(ca.not_after());
        let mut tx = self.store().begin_write().await?;
        let number = tx.last_crl_number(issuer_id).await? + 1;
        let der = build_crl(
            ca,
            identity,
            &CrlRequest {
                number: number as u64,
                this_update: now,
                next_update,
                entries: &entries,
            },
        )?;
        drop(entries);
        let stored = StoredCrl {
            crl_number: number,
            revision,
            this_update: now,
            next_update,
            entries: count,
            der,
        };
        tx.save_crl(issuer_id, &stored).await?;
        tx.commit().await?;
        tracing::info!(
            issuer = issuer_id,
            number,
            entries = count,
            "signed a new CRL"
        );
        Ok(to_crl(stored))
    }

    /// Answers a DER OCSP request for `issuer_id`. Always returns an OCSP
    /// response: failures become its unsigned error statuses.
    pub async fn ocsp_response(&self, issuer_id: &str, request_der: &[u8]) -> Vec<u8> {
        let parsed = match ocsp::parse_request(request_der) {
            Ok(p) => p,
            Err(e) => return e.response(),
        };
        let pair = match self.ca_identity(issuer_id).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => return OcspError::Unauthorized.response(),
            Err(e) => {
                tracing::warn!(issuer = issuer_id, error = %e, "OCSP: issuer could not be loaded");
                return OcspError::InternalError.response();
            }
        };
        if !parsed.queries.iter().all(|q| q.is_for(&pair.1)) {
            return OcspError::Unauthorized.response();
        }
        match self
            .answer(issuer_id, &pair, &parsed.queries, parsed.nonce.as_deref())
            .await
        {
            Ok(der) => der,
            Err(e) => {
                tracing::warn!(issuer = issuer_id, error = %e, "OCSP: signing a response failed");
                OcspError::InternalError.response()
            }
        }
    }

    /// The OCSP response for one serial (`GET /ocsp/{issuer}/{serial}`).
    pub async fn ocsp_response_for_serial(
        &self,
        issuer_id: &str,
        serial_hex: &str,
    ) -> Result<Vec<u8>> {
        let pair = self.ca_identity(issuer_id).await?;
        let query = CertQuery::for_serial(&pair.1, &serial_hex.to_ascii_lowercase())?;
        self.answer(issuer_id, &pair, std::slice::from_ref(&query), None)
            .await
    }

    async fn answer(
        &self,
        issuer_id: &str,
        pair: &(Arc<SigningCa>, CaIdentity),
        queries: &[CertQuery],
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let caches = self.revocation_caches();
        let now = self.now();
        let single = match queries {
            [q] if nonce.is_none() => Some(q),
            _ => None,
        };
        if let Some(q) = single {
            let key = (issuer_id.to_owned(), q.serial_hex.clone());
            if let Some(hit) = caches
                .ocsp
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .and_then(|v| v.iter().find(|c| c.cert_id_der == q.cert_id_der))
                .filter(|c| now - c.produced_at < OCSP_CACHE_SECONDS)
            {
                return Ok(hit.der.as_ref().clone());
            }
        }
        let mut answers = Vec::with_capacity(queries.len());
        let mut all_known = true;
        for q in queries {
            let status = match self.store().serial_status(issuer_id, &q.serial_hex).await? {
                None => {
                    all_known = false;
                    CertStatus::Unknown
                }
                Some(SerialStatus::Issued { .. }) => CertStatus::Good,
                Some(SerialStatus::Revoked { at, reason }) => CertStatus::Revoked { at, reason },
            };
            answers.push((q.cert_id_der.as_slice(), status));
        }
        let der = ocsp::build_response(
            &pair.0,
            &pair.1,
            &ResponseRequest {
                answers: &answers,
                produced_at: now,
                this_update: now,
                next_update: now + OCSP_VALIDITY_SECONDS,
                nonce,
            },
        )?;
        if let Some(q) = single.filter(|_| all_known) {
            let key = (issuer_id.to_owned(), q.serial_hex.clone());
            if !caches.is_recently_revoked(&key, now) {
                let mut cache = caches.ocsp.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= OCSP_CACHE_MAX {
                    cache.clear();
                }
                let list = cache.entry(key).or_default();
                list.retain(|c| c.cert_id_der != q.cert_id_der);
                list.push(CachedResponse {
                    cert_id_der: q.cert_id_der.clone(),
                    der: Arc::new(der.clone()),
                    produced_at: now,
                });
            }
        }
        Ok(der)
    }

    /// How many OCSP responses this process holds in its cache (for tests
    /// and metrics): it grows with the issued serials relying parties ask
    /// about, never with unknown ones.
    pub fn ocsp_cache_len(&self) -> usize {
        self.revocation_caches()
            .ocsp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    /// One run of the scheduler's revocation loop: brings every local
    /// issuer's CRL up to date and re-signs cached OCSP responses that are
    /// more than half-way through their cache time, so requests keep
    /// hitting fresh responses. Returns the number of CRLs checked.
    pub async fn refresh_revocation_data(&self) -> Result<usize> {
        let issuers = self.store().list_issuers().await?;
        let mut n = 0;
        for record in issuers
            .iter()
            .filter(|r| r.issuer.kind.is_local() && r.ca.is_some() && r.issuer.enabled)
        {
            self.crl(&record.issuer.id).await?;
            n += 1;
        }
        let now = self.now();
        let due: Vec<(String, String, Vec<u8>)> = self
            .revocation_caches()
            .ocsp
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|((issuer, serial), list)| {
                list.iter()
                    .filter(|c| now - c.produced_at >= OCSP_CACHE_SECONDS / 2)
                    .map(|c| (issuer.clone(), serial.clone(), c.cert_id_der.clone()))
            })
            .collect();
        for (issuer, serial, cert_id_der) in due {
            let pair = self.ca_identity(&issuer).await?;
            // Re-signing goes through the normal path with the cached entry
            // dropped first, so it reads the current status.
            if let Some(list) = self
                .revocation_caches()
                .ocsp
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&(issuer.clone(), serial.clone()))
            {
                list.retain(|c| c.cert_id_der != cert_id_der);
            }
            let query = CertQuery::for_cert_id(&cert_id_der, &serial);
            self.answer(&issuer, &pair, std::slice::from_ref(&query), None)
                .await?;
        }
        Ok(n)
    }
}

fn to_crl(s: StoredCrl) -> Crl {
    Crl {
        der: Arc::new(s.der),
        number: s.crl_number,
        this_update: s.this_update,
        next_update: s.next_update,
        entries: s.entries,
    }
}

impl Engine {
    /// The PEM chain of a local issuer (issuing CA first, then its parents),
    /// public material served by EST `/cacerts`.
    pub async fn issuer_chain_pem(&self, issuer_id: &str) -> Result<String> {
        Ok(self.ca_identity(issuer_id).await?.0.chain_pem())
    }
}
