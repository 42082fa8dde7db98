//! Discovered certificates (one row per SHA-256 fingerprint, with every
//! place each was seen) and the network scan targets that find some of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::query::{Arg, Where, bind_args};
use super::{Tx, enum_col, json_col, safe, to_json, with_tx};
use crate::error::Result;

/// Where a discovered certificate stands in triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryStatus {
    /// Found and not yet looked at.
    Unmanaged,
    /// Linked to (or imported as) a managed certificate.
    Claimed,
    /// Looked at and set aside.
    Dismissed,
}

impl DiscoveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unmanaged => "unmanaged",
            Self::Claimed => "claimed",
            Self::Dismissed => "dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unmanaged" => Self::Unmanaged,
            "claimed" => Self::Claimed,
            "dismissed" => Self::Dismissed,
            _ => return None,
        })
    }
}

/// Who saw a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    /// An agent found it in a file.
    Agent,
    /// The network scanner was served it.
    Network,
}

impl DiscoverySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Network => "network",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "agent" => Self::Agent,
            "network" => Self::Network,
            _ => return None,
        })
    }
}

/// One place a certificate was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sighting {
    pub source: DiscoverySource,
    /// The agent that found the file (source `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The file's path on the agent's machine (source `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A private key file next to it, by path only (its contents are never read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    /// `ip:port` that served it (source `network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The SNI name sent in the handshake, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The scan target whose scan saw it (source `network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_target_id: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// A certificate found on disk or on the network, deduplicated by fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveredCertificate {
    /// `dc-...`
    pub id: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    pub common_name: Option<String>,
    pub subject_dn: String,
    pub issuer_dn: String,
    /// DNS names, IP addresses and e-mail addresses of the SAN extension.
    pub sans: Vec<String>,
    pub serial: String,
    /// `ecdsa-p256`, `rsa-2048`, ... or `other` for types certctl does not issue.
    pub key_type: String,
    pub is_ca: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub status: DiscoveryStatus,
    /// The managed certificate it was claimed as.
    pub certificate_id: Option<String>,
    /// Why it was dismissed (or a note from the claim).
    pub note: Option<String>,
    /// Sources it was seen by.
    pub sources: Vec<DiscoverySource>,
    /// Every place it was seen (in lists: up to 20, most recent first).
    pub sightings: Vec<Sighting>,
    /// The certificate (PEM); only in single reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What is recorded about a newly seen certificate.
#[derive(Debug, Clone)]
pub struct NewDiscovered {
    pub fingerprint: String,
    pub common_name: Option<String>,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub sans: Vec<String>,
    pub serial: String,
    pub key_type: String,
    pub is_ca: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub cert_pem: String,
}

/// Filters of the discovered-certificates list.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryFilter {
    pub status: Option<DiscoveryStatus>,
    pub source: Option<DiscoverySource>,
    pub agent_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DiscoveredRow {
    id: String,
    fingerprint: String,
    common_name: Option<String>,
    subject_dn: String,
    issuer_dn: String,
    sans: String,
    serial: String,
    key_type: String,
    is_ca: i64,
    not_before: i64,
    not_after: i64,
    status: String,
    certificate_id: Option<String>,
    note: Option<String>,
    first_seen_at: i64,
    last_seen_at: i64,
    created_at: i64,
    updated_at: i64,
}

const DISCOVERED_COLUMNS: &str = "id, fingerprint, common_name, subject_dn, issuer_dn, sans, \
    serial, key_type, is_ca, not_before, not_after, status, certificate_id, note, first_seen_at, \
    last_seen_at, created_at, updated_at";

impl DiscoveredRow {
    fn into_domain(self) -> Result<DiscoveredCertificate> {
        Ok(DiscoveredCertificate {
            sans: json_col(&self.sans, "discovered certificate names")?,
            status: enum_col(&self.status, DiscoveryStatus::parse, "discovery status")?,
            id: self.id,
            fingerprint: self.fingerprint,
            common_name: self.common_name,
            subject_dn: self.subject_dn,
            issuer_dn: self.issuer_dn,
            serial: self.serial,
            key_type: self.key_type,
            is_ca: self.is_ca != 0,
            not_before: self.not_before,
            not_after: self.not_after,
            certificate_id: self.certificate_id,
            note: self.note,
            sources: Vec::new(),
            sightings: Vec::new(),
            cert_pem: None,
            first_seen_at: self.first_seen_at,
            last_seen_at: self.last_seen_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SightingRow {
    discovered_id: String,
    source: String,
    agent_id: String,
    location: String,
    server_name: String,
    key_path: Option<String>,
    scan_target_id: Option<String>,
    first_seen_at: i64,
    last_seen_at: i64,
}

impl SightingRow {
    fn into_domain(self) -> Result<(String, Sighting)> {
        let source = enum_col(&self.source, DiscoverySource::parse, "discovery source")?;
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let (path, endpoint) = match source {
            DiscoverySource::Agent => (Some(self.location), None),
            DiscoverySource::Network => (None, Some(self.location)),
        };
        Ok((
            self.discovered_id,
            Sighting {
                source,
                agent_id: nonempty(self.agent_id),
                path,
                key_path: self.key_path,
                endpoint,
                server_name: nonempty(self.server_name),
                scan_target_id: self.scan_target_id,
                first_seen_at: self.first_seen_at,
                last_seen_at: self.last_seen_at,
            },
        ))
    }
}

/// Where one report saw a certificate.
#[derive(Debug, Clone)]
pub struct NewSighting<'a> {
    pub source: DiscoverySource,
    pub agent_id: Option<&'a str>,
    /// Path (agent) or `ip:port` (network).
    pub location: &'a str,
    pub server_name: Option<&'a str>,
    pub key_path: Option<&'a str>,
    pub scan_target_id: Option<&'a str>,
}

/// Most sightings attached to each row of a list page.
pub const LIST_SIGHTINGS: usize = 20;

impl Tx {
    /// Records that `cert` was seen at `at`: a new row the first time its
    /// fingerprint appears, else a fresher `last_seen_at`. Returns the id and
    /// whether the certificate was new. A dismissed certificate stays dismissed.
    pub async fn record_discovery(
        &mut self,
        new_id: &str,
        cert: &NewDiscovered,
        at: &NewSighting<'_>,
        now: i64,
    ) -> Result<(String, bool)> {
        let sans = to_json(&cert.sans)?;
        // ON CONFLICT keeps two reporters of one fingerprint from colliding.
        let inserted = with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO discovered_certificates (id, fingerprint, common_name, subject_dn, \
                 issuer_dn, sans, serial, key_type, is_ca, not_before, not_after, cert_pem, status, \
                 first_seen_at, last_seen_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'unmanaged', $13, $13, $13, $13) \
                 ON CONFLICT (fingerprint) DO NOTHING",
            )
            .bind(new_id)
            .bind(&cert.fingerprint)
            .bind(&cert.common_name)
            .bind(&cert.subject_dn)
            .bind(&cert.issuer_dn)
            .bind(&sans)
            .bind(&cert.serial)
            .bind(&cert.key_type)
            .bind(i64::from(cert.is_ca))
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(&cert.cert_pem)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        }) == 1;
        let id: String = if inserted {
            new_id.to_owned()
        } else {
            with_tx!(self, |c| {
                sqlx::query_scalar(
                    "UPDATE discovered_certificates SET last_seen_at = $1 WHERE fingerprint = $2 \
                     RETURNING id",
                )
                .bind(now)
                .bind(&cert.fingerprint)
                .fetch_one(c)
                .await?
            })
        };
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO discovery_sightings (discovered_id, source, agent_id, location, \
                 server_name, key_path, scan_target_id, first_seen_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (discovered_id, source, agent_id, location, server_name) DO UPDATE \
                 SET last_seen_at = excluded.last_seen_at, key_path = excluded.key_path, \
                 scan_target_id = excluded.scan_target_id",
            )
            .bind(&id)
            .bind(at.source.as_str())
            .bind(at.agent_id.unwrap_or_default())
            .bind(at.location)
            .bind(at.server_name.unwrap_or_default())
            .bind(at.key_path)
            .bind(at.scan_target_id)
            .bind(now)
            .execute(c)
            .await?;
        });
        Ok((id, inserted))
    }

    /// One discovered certificate with all its sightings and its PEM.
    pub async fn discovered_certificate(
        &mut self,
        id: &str,
    ) -> Result<Option<DiscoveredCertificate>> {
        let sql = format!(
            "SELECT {DISCOVERED_COLUMNS}, cert_pem FROM discovered_certificates WHERE id = $1"
        );
        #[derive(sqlx::FromRow)]
        struct WithPem {
            #[sqlx(flatten)]
            row: DiscoveredRow,
            cert_pem: String,
        }
        let row: Option<WithPem> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        let Some(r) = row else { return Ok(None) };
        let mut d = r.row.into_domain()?;
        d.cert_pem = Some(r.cert_pem);
        self.attach_sightings(std::slice::from_mut(&mut d), usize::MAX)
            .await?;
        Ok(Some(d))
    }

    /// Every discovered certificate matching `f`, without sightings (the
    /// list pages first, then [`Tx::attach_sightings`] fills one page).
    pub async fn discovered_certificates(
        &mut self,
        f: &DiscoveryFilter,
    ) -> Result<Vec<DiscoveredCertificate>> {
        let mut w = Where::default();
        if let Some(s) = f.status {
            let p = w.arg(Arg::Text(s.as_str().into()));
            w.push(format!("status = {p}"));
        }
        if let Some(s) = f.source {
            let p = w.arg(Arg::Text(s.as_str().into()));
            w.push(format!(
                "EXISTS (SELECT 1 FROM discovery_sightings s WHERE s.discovered_id = \
                 discovered_certificates.id AND s.source = {p})"
            ));
        }
        if let Some(a) = &f.agent_id {
            let p = w.arg(Arg::Text(a.clone()));
            w.push(format!(
                "EXISTS (SELECT 1 FROM discovery_sightings s WHERE s.discovered_id = \
                 discovered_certificates.id AND s.source = 'agent' AND s.agent_id = {p})"
            ));
        }
        let sql = format!(
            "SELECT {DISCOVERED_COLUMNS} FROM discovered_certificates{}",
            w.sql()
        );
        let rows: Vec<DiscoveredRow> = with_tx!(self, |c| {
            bind_args!(sqlx::query_as::<_, DiscoveredRow>(safe(&sql)), &w.args)
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(DiscoveredRow::into_domain).collect()
    }

    /// Fills `sources` and `sightings` (at most `limit` each, most recent
    /// first) of the given rows, in one query.
    pub async fn attach_sightings(
        &mut self,
        rows: &mut [DiscoveredCertificate],
        limit: usize,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = Where::default();
        let ps: Vec<String> = rows
            .iter()
            .map(|r| w.arg(Arg::Text(r.id.clone())))
            .collect();
        let sql = format!(
            "SELECT discovered_id, source, agent_id, location, server_name, key_path, \
             scan_target_id, first_seen_at, last_seen_at FROM discovery_sightings \
             WHERE discovered_id IN ({}) ORDER BY last_seen_at DESC, location",
            ps.join(", ")
        );
        let found: Vec<SightingRow> = with_tx!(self, |c| {
            bind_args!(sqlx::query_as::<_, SightingRow>(safe(&sql)), &w.args)
                .fetch_all(c)
                .await?
        });
        let index: std::collections::HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for s in found {
            let (id, s) = s.into_domain()?;
            if let Some(&i) = index.get(&id) {
                let r = &mut rows[i];
                if !r.sources.contains(&s.source) {
                    r.sources.push(s.source);
                }
                if r.sightings.len() < limit {
                    r.sightings.push(s);
                }
            }
        }
        for r in rows.iter_mut() {
            r.sources.sort_by_key(|s| s.as_str());
        }
        Ok(())
    }

    /// Sets a discovered certificate's triage state. Returns whether it exists.
    pub async fn set_discovery_status(
        &mut self,
        id: &str,
        status: DiscoveryStatus,
        certificate_id: Option<&str>,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE discovered_certificates SET status = $1, certificate_id = $2, note = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(status.as_str())
            .bind(certificate_id)
            .bind(note)
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Counts by status, and of certificates seen by each source.
    pub async fn discovery_counts(&mut self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
        let by_status: Vec<(String, i64)> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM discovered_certificates GROUP BY status ORDER BY status",
            )
            .fetch_all(c)
            .await?
        });
        let by_source: Vec<(String, i64)> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT source, COUNT(DISTINCT discovered_id) FROM discovery_sightings \
                 GROUP BY source ORDER BY source",
            )
            .fetch_all(c)
            .await?
        });
        Ok((by_status, by_source))
    }
}

// ---------------------------------------------------------------- scan targets

/// A range the network scanner visits: addresses times ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkScanTarget {
    /// `nst-...`
    pub id: String,
    pub name: String,
    /// IPv4/IPv6 networks in CIDR notation (a bare address is a /32 or /128).
    pub cidrs: Vec<String>,
    pub ports: Vec<u16>,
    /// Names sent as SNI, one handshake each; none means no SNI.
    pub server_names: Vec<String>,
    /// Scanned by the scheduled loop.
    pub enabled: bool,
    /// An admin allowed link-local and cloud metadata addresses in this range.
    pub allow_restricted: bool,
    pub last_scan_at: Option<i64>,
    /// The last scan's figures.
    pub last_scan: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct ScanTargetRow {
    id: String,
    name: String,
    cidrs: String,
    ports: String,
    server_names: String,
    enabled: i64,
    allow_restricted: i64,
    last_scan_at: Option<i64>,
    last_scan: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const SCAN_TARGET_COLUMNS: &str = "id, name, cidrs, ports, server_names, enabled, \
    allow_restricted, last_scan_at, last_scan, created_at, updated_at";

impl ScanTargetRow {
    fn into_domain(self) -> Result<NetworkScanTarget> {
        Ok(NetworkScanTarget {
            cidrs: json_col(&self.cidrs, "scan target networks")?,
            ports: json_col(&self.ports, "scan target ports")?,
            server_names: json_col(&self.server_names, "scan target names")?,
            last_scan: match &self.last_scan {
                Some(s) => Some(json_col(s, "last scan")?),
                None => None,
            },
            id: self.id,
            name: self.name,
            enabled: self.enabled != 0,
            allow_restricted: self.allow_restricted != 0,
            last_scan_at: self.last_scan_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Tx {
    pub async fn scan_target(&mut self, id: &str) -> Result<Option<NetworkScanTarget>> {
        let sql = format!("SELECT {SCAN_TARGET_COLUMNS} FROM network_scan_targets WHERE id = $1");
        let row: Option<ScanTargetRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(ScanTargetRow::into_domain).transpose()
    }

    pub async fn scan_targets(&mut self) -> Result<Vec<NetworkScanTarget>> {
        let sql = format!("SELECT {SCAN_TARGET_COLUMNS} FROM network_scan_targets ORDER BY id");
        let rows: Vec<ScanTargetRow> =
            with_tx!(self, |c| sqlx::query_as(safe(&sql)).fetch_all(c).await?);
        rows.into_iter().map(ScanTargetRow::into_domain).collect()
    }

    pub async fn scan_target_named(&mut self, name: &str) -> Result<Option<String>> {
        let id: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT id FROM network_scan_targets WHERE name = $1")
                .bind(name)
                .fetch_optional(c)
                .await?
        });
        Ok(id)
    }

    /// Inserts or replaces a scan target (all fields but the last scan).
    pub async fn save_scan_target(&mut self, t: &NetworkScanTarget) -> Result<()> {
        let (cidrs, ports, names) = (
            to_json(&t.cidrs)?,
            to_json(&t.ports)?,
            to_json(&t.server_names)?,
        );
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO network_scan_targets (id, name, cidrs, ports, server_names, enabled, \
                 allow_restricted, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, cidrs = excluded.cidrs, \
                 ports = excluded.ports, server_names = excluded.server_names, \
                 enabled = excluded.enabled, allow_restricted = excluded.allow_restricted, \
                 updated_at = excluded.updated_at",
            )
            .bind(&t.id)
            .bind(&t.name)
            .bind(&cidrs)
            .bind(&ports)
            .bind(&names)
            .bind(i64::from(t.enabled))
            .bind(i64::from(t.allow_restricted))
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn record_scan_run(
        &mut self,
        id: &str,
        at: i64,
        figures: &serde_json::Value,
    ) -> Result<()> {
        let figures = to_json(figures)?;
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE network_scan_targets SET last_scan_at = $1, last_scan = $2 WHERE id = $3",
            )
            .bind(at)
            .bind(&figures)
            .bind(id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_scan_target(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM network_scan_targets WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
