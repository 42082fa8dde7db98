//! Policy violations: written by the policy check (warn) or with a refused
//! call's audit event (enforce), listed newest first.

use super::{Store, Tx, enum_col, safe, with_db, with_tx};
use crate::domain::{PolicyKind, PolicyMode, PolicyViolation, Severity};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    rule_id: String,
    rule_name: String,
    kind: String,
    severity: String,
    mode: String,
    refused: bool,
    operation: String,
    certificate_id: Option<String>,
    common_name: String,
    actor: String,
    reason: String,
    created_at: i64,
}

impl Row {
    fn into_domain(self) -> Result<PolicyViolation> {
        Ok(PolicyViolation {
            kind: enum_col(&self.kind, PolicyKind::parse, "policy kind")?,
            severity: enum_col(&self.severity, Severity::parse, "severity")?,
            mode: enum_col(&self.mode, PolicyMode::parse, "policy mode")?,
            id: self.id,
            rule_id: self.rule_id,
            rule_name: self.rule_name,
            refused: self.refused,
            operation: self.operation,
            certificate_id: self.certificate_id,
            common_name: self.common_name,
            actor: self.actor,
            reason: self.reason,
            created_at: self.created_at,
        })
    }
}

const COLUMNS: &str = "id, rule_id, rule_name, kind, severity, mode, refused, operation, \
    certificate_id, common_name, actor, reason, created_at";

/// Which violations to list (all given conditions must hold).
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    pub certificate_id: Option<String>,
    pub rule_id: Option<String>,
    pub kind: Option<PolicyKind>,
    pub severity: Option<Severity>,
    pub refused: Option<bool>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl Store {
    /// Violations matching `f`, newest first, at most `limit`.
    pub async fn list_policy_violations(
        &self,
        f: &ViolationFilter,
        limit: i64,
    ) -> Result<Vec<PolicyViolation>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut text = |col: &str, v: &Option<String>, clauses: &mut Vec<String>| {
            if let Some(v) = v {
                texts.push(v.clone());
                clauses.push(format!("{col} = ${}", texts.len()));
            }
        };
        text("certificate_id", &f.certificate_id, &mut clauses);
        text("rule_id", &f.rule_id, &mut clauses);
        text("kind", &f.kind.map(|k| k.as_str().to_owned()), &mut clauses);
        text(
            "severity",
            &f.severity.map(|s| s.as_str().to_owned()),
            &mut clauses,
        );
        let mut ints: Vec<i64> = Vec::new();
        if let Some(a) = f.created_after {
            ints.push(a);
            clauses.push(format!("created_at > ${}", texts.len() + ints.len()));
        }
        if let Some(b) = f.created_before {
            ints.push(b);
            clauses.push(format!("created_at < ${}", texts.len() + ints.len()));
        }
        match f.refused {
            Some(true) => clauses.push("refused = TRUE".into()),
            Some(false) => clauses.push("refused = FALSE".into()),
            None => {}
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM policy_violations {filter} ORDER BY created_at DESC, id DESC LIMIT {}",
            limit.clamp(1, 100_000)
        );
        let rows: Vec<Row> = with_db!(&self.db, |p| {
            let mut q = sqlx::query_as(safe(&sql));
            for t in &texts {
                q = q.bind(t);
            }
            for i in &ints {
                q = q.bind(i);
            }
            q.fetch_all(p).await?
        });
        rows.into_iter().map(Row::into_domain).collect()
    }
}

impl Tx {
    pub async fn insert_policy_violation(&mut self, v: &PolicyViolation) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO policy_violations (id, rule_id, rule_name, kind, severity, mode, refused, \
                 operation, certificate_id, common_name, actor, reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&v.id)
            .bind(&v.rule_id)
            .bind(&v.rule_name)
            .bind(v.kind.as_str())
            .bind(v.severity.as_str())
            .bind(v.mode.as_str())
            .bind(v.refused)
            .bind(&v.operation)
            .bind(&v.certificate_id)
            .bind(&v.common_name)
            .bind(&v.actor)
            .bind(&v.reason)
            .bind(v.created_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The latest violations of one certificate (for get_certificate).
    pub async fn certificate_violations(
        &mut self,
        certificate_id: &str,
        limit: i64,
    ) -> Result<Vec<PolicyViolation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM policy_violations WHERE certificate_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows: Vec<Row> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(certificate_id)
                .bind(limit)
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(Row::into_domain).collect()
    }
}
