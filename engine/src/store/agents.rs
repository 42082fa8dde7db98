//! Agents and deployment targets.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::{Agent, AgentStatus, Target, TargetKind};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    name: String,
    hostname: String,
    os: String,
    arch: String,
    ip_address: String,
    version: String,
    labels: String,
    reported: String,
    observed_address: Option<String>,
    status: String,
    last_heartbeat_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const AGENT_COLUMNS: &str = "id, name, hostname, os, arch, ip_address, version, labels, reported, \
    observed_address, status, last_heartbeat_at, created_at, updated_at";

impl AgentRow {
    fn into_domain(self) -> Result<Agent> {
        Ok(Agent {
            labels: json_col(&self.labels, "agent labels")?,
            reported: json_col(&self.reported, "agent reported facts")?,
            observed_address: self.observed_address,
            status: enum_col(&self.status, AgentStatus::parse, "agent status")?,
            id: self.id,
            name: self.name,
            hostname: self.hostname,
            os: self.os,
            arch: self.arch,
            ip_address: self.ip_address,
            version: self.version,
            last_heartbeat_at: self.last_heartbeat_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: String,
    name: String,
    kind: String,
    agent_id: Option<String>,
    agent_group_id: Option<String>,
    config: String,
    created_at: i64,
    updated_at: i64,
}

impl TargetRow {
    fn into_domain(self) -> Result<Target> {
        Ok(Target {
            kind: enum_col(&self.kind, TargetKind::parse, "target kind")?,
            config: json_col(&self.config, "target config")?,
            id: self.id,
            name: self.name,
            agent_id: self.agent_id,
            agent_group_id: self.agent_group_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name, id");
        let rows: Vec<AgentRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(AgentRow::into_domain).collect()
    }

    pub async fn list_targets(&self, agent_id: Option<&str>) -> Result<Vec<Target>> {
        let rows: Vec<TargetRow> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, name, kind, agent_id, agent_group_id, config, created_at, updated_at FROM targets \
                 WHERE ($1 IS NULL OR agent_id = $1) ORDER BY name, id",
            )
            .bind(agent_id)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(TargetRow::into_domain).collect()
    }
}

impl Tx {
    pub async fn agent(&mut self, id: &str) -> Result<Option<Agent>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
        let row: Option<AgentRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(AgentRow::into_domain).transpose()
    }

    pub async fn upsert_agent(&mut self, a: &Agent) -> Result<()> {
        let labels = to_json(&a.labels)?;
        let reported = to_json(&a.reported)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO agents (id, name, hostname, os, arch, ip_address, version, labels, status, \
                 last_heartbeat_at, created_at, updated_at, reported, observed_address) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, hostname = excluded.hostname, \
                 os = excluded.os, arch = excluded.arch, ip_address = excluded.ip_address, \
                 version = excluded.version, labels = excluded.labels, status = excluded.status, \
                 last_heartbeat_at = excluded.last_heartbeat_at, updated_at = excluded.updated_at, \
                 reported = excluded.reported, observed_address = excluded.observed_address",
            )
            .bind(&a.id)
            .bind(&a.name)
            .bind(&a.hostname)
            .bind(&a.os)
            .bind(&a.arch)
            .bind(&a.ip_address)
            .bind(&a.version)
            .bind(&labels)
            .bind(a.status.as_str())
            .bind(a.last_heartbeat_at)
            .bind(a.created_at)
            .bind(a.updated_at)
            .bind(&reported)
            .bind(&a.observed_address)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn target(&mut self, id: &str) -> Result<Option<Target>> {
        let row: Option<TargetRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, name, kind, agent_id, agent_group_id, config, created_at, updated_at FROM targets WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        });
        row.map(TargetRow::into_domain).transpose()
    }

    pub async fn upsert_target(&mut self, t: &Target) -> Result<()> {
        let config = to_json(&t.config)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO targets (id, name, kind, agent_id, config, created_at, updated_at, agent_group_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 kind = excluded.kind, agent_id = excluded.agent_id, config = excluded.config, \
                 updated_at = excluded.updated_at, agent_group_id = excluded.agent_group_id",
            )
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.kind.as_str())
            .bind(&t.agent_id)
            .bind(&config)
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(&t.agent_group_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_target(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM certificate_targets WHERE target_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM targets WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn attach_target(&mut self, certificate_id: &str, target_id: &str) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO certificate_targets (certificate_id, target_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(certificate_id)
            .bind(target_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn certificate_targets(&mut self, certificate_id: &str) -> Result<Vec<Target>> {
        let rows: Vec<TargetRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT t.id, t.name, t.kind, t.agent_id, t.agent_group_id, t.config, t.created_at, t.updated_at \
                 FROM targets t JOIN certificate_targets ct ON ct.target_id = t.id \
                 WHERE ct.certificate_id = $1 ORDER BY t.name",
            )
            .bind(certificate_id)
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(TargetRow::into_domain).collect()
    }
}

/// Every agent, ordered by id, read in `tx`.
pub(super) async fn all_agents_tx(tx: &mut Tx) -> Result<Vec<Agent>> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id");
    let rows: Vec<AgentRow> = with_tx!(tx, |c| sqlx::query_as(safe(&sql)).fetch_all(c).await?);
    rows.into_iter().map(AgentRow::into_domain).collect()
}
