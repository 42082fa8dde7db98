//! Renewal policies and policy rules.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::{PolicyKind, PolicyMode, PolicyRule, RenewalPolicy, Severity};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct RenewalRow {
    id: String,
    name: String,
    renew_before_days: Option<i64>,
    renew_at_fraction: Option<f64>,
    jitter_percent: i64,
    max_retries: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<RenewalRow> for RenewalPolicy {
    fn from(r: RenewalRow) -> Self {
        RenewalPolicy {
            id: r.id,
            name: r.name,
            renew_before_days: r.renew_before_days,
            renew_at_fraction: r.renew_at_fraction,
            jitter_percent: r.jitter_percent,
            max_retries: r.max_retries,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: String,
    name: String,
    kind: String,
    params: String,
    severity: String,
    mode: String,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl RuleRow {
    fn into_domain(self) -> Result<PolicyRule> {
        Ok(PolicyRule {
            kind: enum_col(&self.kind, PolicyKind::parse, "policy kind")?,
            params: json_col(&self.params, "policy params")?,
            severity: enum_col(&self.severity, Severity::parse, "severity")?,
            mode: enum_col(&self.mode, PolicyMode::parse, "policy mode")?,
            id: self.id,
            name: self.name,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const RENEWAL_COLUMNS: &str = "id, name, renew_before_days, renew_at_fraction, jitter_percent, \
    max_retries, created_at, updated_at";
const RULE_COLUMNS: &str =
    "id, name, kind, params, severity, mode, enabled, created_at, updated_at";

impl Store {
    pub async fn list_renewal_policies(&self) -> Result<Vec<RenewalPolicy>> {
        let sql = format!("SELECT {RENEWAL_COLUMNS} FROM renewal_policies ORDER BY name, id");
        let rows: Vec<RenewalRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().map(RenewalPolicy::from).collect())
    }

    pub async fn list_policy_rules(&self) -> Result<Vec<PolicyRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM policy_rules ORDER BY name, id");
        let rows: Vec<RuleRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(RuleRow::into_domain).collect()
    }
}

impl Tx {
    pub async fn renewal_policy(&mut self, id: &str) -> Result<Option<RenewalPolicy>> {
        let sql = format!("SELECT {RENEWAL_COLUMNS} FROM renewal_policies WHERE id = $1");
        let row: Option<RenewalRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        Ok(row.map(RenewalPolicy::from))
    }

    pub async fn upsert_renewal_policy(&mut self, r: &RenewalPolicy) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO renewal_policies (id, name, renew_before_days, renew_at_fraction, \
                 jitter_percent, max_retries, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 renew_before_days = excluded.renew_before_days, renew_at_fraction = excluded.renew_at_fraction, \
                 jitter_percent = excluded.jitter_percent, max_retries = excluded.max_retries, \
                 updated_at = excluded.updated_at",
            )
            .bind(&r.id)
            .bind(&r.name)
            .bind(r.renew_before_days)
            .bind(r.renew_at_fraction)
            .bind(r.jitter_percent)
            .bind(r.max_retries)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The enabled policy rules, read in the transaction being checked.
    pub async fn enabled_policy_rules(&mut self) -> Result<Vec<PolicyRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM policy_rules WHERE enabled = TRUE ORDER BY name, id"
        );
        let rows: Vec<RuleRow> =
            with_tx!(self, |c| sqlx::query_as(safe(&sql)).fetch_all(c).await?);
        rows.into_iter().map(RuleRow::into_domain).collect()
    }

    pub async fn policy_rule(&mut self, id: &str) -> Result<Option<PolicyRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM policy_rules WHERE id = $1");
        let row: Option<RuleRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(RuleRow::into_domain).transpose()
    }

    pub async fn upsert_policy_rule(&mut self, r: &PolicyRule) -> Result<()> {
        let params = to_json(&r.params)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO policy_rules (id, name, kind, params, severity, mode, enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
                 name = excluded.name, kind = excluded.kind, params = excluded.params, \
                 severity = excluded.severity, mode = excluded.mode, enabled = excluded.enabled, \
                 updated_at = excluded.updated_at",
            )
            .bind(&r.id)
            .bind(&r.name)
            .bind(r.kind.as_str())
            .bind(&params)
            .bind(r.severity.as_str())
            .bind(r.mode.as_str())
            .bind(r.enabled)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Deletes a row of a table that has no dependants worth protecting.
    pub async fn delete_simple(&mut self, table: SimpleTable, id: &str) -> Result<bool> {
        let sql = match table {
            SimpleTable::PolicyRule => "DELETE FROM policy_rules WHERE id = $1",
            SimpleTable::RenewalPolicy => "DELETE FROM renewal_policies WHERE id = $1",
        };
        if table == SimpleTable::RenewalPolicy {
            with_tx!(self, |c| {
                sqlx::query(
                    "UPDATE certificates SET renewal_policy_id = NULL WHERE renewal_policy_id = $1",
                )
                .bind(id)
                .execute(c)
                .await?;
            });
        }
        let n = with_tx!(self, |c| {
            sqlx::query(sql).bind(id).execute(c).await?.rows_affected()
        });
        Ok(n == 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleTable {
    PolicyRule,
    RenewalPolicy,
}
