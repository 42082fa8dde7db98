//! Agent groups: a name and the criteria that pick their members.

use super::{Store, Tx, json_col, safe, to_json, with_db, with_tx};
use crate::domain::AgentGroup;
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    description: String,
    criteria: String,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn into_domain(self) -> Result<AgentGroup> {
        Ok(AgentGroup {
            criteria: json_col(&self.criteria, "agent group criteria")?,
            id: self.id,
            name: self.name,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "id, name, description, criteria, created_at, updated_at";

impl Store {
    pub async fn list_agent_groups(&self) -> Result<Vec<AgentGroup>> {
        let sql = format!("SELECT {COLUMNS} FROM agent_groups ORDER BY name, id");
        let rows: Vec<Row> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Row::into_domain).collect()
    }
}

impl Tx {
    pub async fn agent_group(&mut self, id: &str) -> Result<Option<AgentGroup>> {
        let sql = format!("SELECT {COLUMNS} FROM agent_groups WHERE id = $1");
        let row: Option<Row> = with_tx!(self, |c| sqlx::query_as(safe(&sql))
            .bind(id)
            .fetch_optional(c)
            .await?);
        row.map(Row::into_domain).transpose()
    }

    pub async fn upsert_agent_group(&mut self, g: &AgentGroup) -> Result<()> {
        let criteria = to_json(&g.criteria)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO agent_groups (id, name, description, criteria, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, criteria = excluded.criteria, \
                 updated_at = excluded.updated_at",
            )
            .bind(&g.id)
            .bind(&g.name)
            .bind(&g.description)
            .bind(&criteria)
            .bind(g.created_at)
            .bind(g.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Targets that point at the group (a group in use is not deleted).
    pub async fn agent_group_in_use(&mut self, id: &str) -> Result<bool> {
        let n: i64 = with_tx!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM targets WHERE agent_group_id = $1"
        )
        .bind(id)
        .fetch_one(c)
        .await?);
        Ok(n > 0)
    }

    pub async fn delete_agent_group(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| sqlx::query(
            "DELETE FROM agent_groups WHERE id = $1"
        )
        .bind(id)
        .execute(c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Every agent, read in this transaction (groups are matched in memory).
    pub async fn all_agents(&mut self) -> Result<Vec<crate::domain::Agent>> {
        super::agents::all_agents_tx(self).await
    }
}
