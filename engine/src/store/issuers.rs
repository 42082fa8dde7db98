//! Issuers and their CA material.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::{Issuer, IssuerKind};
use crate::error::Result;
use crate::pki::CaMaterial;

#[derive(sqlx::FromRow)]
pub(crate) struct IssuerRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub config: String,
    pub ca_material: Option<String>,
    pub secrets: Option<String>,
    pub account: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, name, kind, config, ca_material, secrets, account, enabled, created_at, updated_at";

/// An issuer with its (sealed) CA material, for the engine's own use.
#[derive(Debug, Clone)]
pub struct IssuerRecord {
    pub issuer: Issuer,
    pub ca: Option<CaMaterial>,
    /// Connector secrets, sealed with the master key (context `ID/secrets`).
    pub secrets: Option<SealedSecrets>,
    /// The connector's account (ACME account credentials), sealed (context `ID/account`).
    pub account: Option<String>,
}

/// Connector secrets as stored: their names in clear, their values sealed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SealedSecrets {
    pub fields: Vec<String>,
    pub sealed: String,
}

impl IssuerRow {
    pub(crate) fn into_record(self) -> Result<IssuerRecord> {
        let ca: Option<CaMaterial> = self
            .ca_material
            .as_deref()
            .map(|s| json_col(s, "CA material"))
            .transpose()?;
        let secrets: Option<SealedSecrets> = self
            .secrets
            .as_deref()
            .map(|s| json_col(s, "issuer secrets"))
            .transpose()?;
        Ok(IssuerRecord {
            issuer: Issuer {
                kind: enum_col(&self.kind, IssuerKind::parse, "issuer kind")?,
                config: json_col(&self.config, "issuer config")?,
                secret_fields: secrets
                    .as_ref()
                    .map(|s| s.fields.clone())
                    .unwrap_or_default(),
                ca_cert_pem: ca.as_ref().map(|c| c.cert_pem.clone()),
                ca_chain_pem: ca.as_ref().map(|c| c.chain_pem.clone()),
                ca_subject: ca.as_ref().map(|c| c.subject.clone()),
                ca_not_after: ca.as_ref().map(|c| c.not_after),
                id: self.id,
                name: self.name,
                enabled: self.enabled,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            ca,
            secrets,
            account: self.account,
        })
    }
}

impl Store {
    pub async fn list_issuers(&self) -> Result<Vec<IssuerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM issuers ORDER BY name, id");
        let rows: Vec<IssuerRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(IssuerRow::into_record).collect()
    }

    pub async fn issuer(&self, id: &str) -> Result<Option<IssuerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM issuers WHERE id = $1");
        let row: Option<IssuerRow> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        row.map(IssuerRow::into_record).transpose()
    }

    /// Stores the connector's sealed account unless another worker stored
    /// one first; returns whether this one was kept.
    pub async fn set_issuer_account(&self, id: &str, sealed: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = with_tx!(tx, |c| {
            sqlx::query(
                "UPDATE issuers SET account = $1, updated_at = $2 WHERE id = $3 AND account IS NULL",
            )
            .bind(sealed)
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n == 1)
    }
}

impl Tx {
    pub async fn issuer(&mut self, id: &str) -> Result<Option<IssuerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM issuers WHERE id = $1");
        let row: Option<IssuerRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(IssuerRow::into_record).transpose()
    }

    /// Inserts an issuer; returns false when the id already exists (so two
    /// processes creating the default CA at once agree on one).
    pub async fn insert_issuer(&mut self, i: &Issuer, ca: Option<&CaMaterial>) -> Result<bool> {
        self.insert_issuer_with_secrets(i, ca, None).await
    }

    /// Inserts an issuer with its sealed connector secrets.
    pub async fn insert_issuer_with_secrets(
        &mut self,
        i: &Issuer,
        ca: Option<&CaMaterial>,
        secrets: Option<&SealedSecrets>,
    ) -> Result<bool> {
        let config = to_json(&i.config)?;
        let ca = ca.map(to_json).transpose()?;
        let secrets = secrets.map(to_json).transpose()?;
        let n = with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO issuers (id, name, kind, config, ca_material, secrets, enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&i.id)
            .bind(&i.name)
            .bind(i.kind.as_str())
            .bind(&config)
            .bind(&ca)
            .bind(&secrets)
            .bind(i.enabled)
            .bind(i.created_at)
            .bind(i.updated_at)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn update_issuer(&mut self, i: &Issuer) -> Result<()> {
        let config = to_json(&i.config)?;
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE issuers SET name = $1, config = $2, enabled = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(&i.name)
            .bind(&config)
            .bind(i.enabled)
            .bind(i.updated_at)
            .bind(&i.id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Replaces an issuer's sealed connector secrets; a changed secret also
    /// forgets the connector account registered with the old ones.
    pub async fn set_issuer_secrets(&mut self, id: &str, secrets: &SealedSecrets) -> Result<()> {
        let secrets = to_json(secrets)?;
        with_tx!(self, |c| {
            sqlx::query("UPDATE issuers SET secrets = $1, account = NULL WHERE id = $2")
                .bind(&secrets)
                .bind(id)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Whether any certificate still refers to the issuer.
    pub async fn issuer_in_use(&mut self, id: &str) -> Result<bool> {
        let n: i64 = with_tx!(self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM certificates WHERE issuer_id = $1 LIMIT 1) t",
            )
            .bind(id)
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }

    pub async fn delete_issuer(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM issuers WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
