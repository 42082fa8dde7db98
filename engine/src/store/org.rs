//! Teams and owners.

use super::{Store, Tx, with_db, with_tx};
use crate::domain::{Owner, Team};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: String,
    name: String,
    description: String,
    created_at: i64,
    updated_at: i64,
}

impl From<TeamRow> for Team {
    fn from(r: TeamRow) -> Self {
        Team {
            id: r.id,
            name: r.name,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct OwnerRow {
    id: String,
    name: String,
    email: String,
    team_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<OwnerRow> for Owner {
    fn from(r: OwnerRow) -> Self {
        Owner {
            id: r.id,
            name: r.name,
            email: r.email,
            team_id: r.team_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl Store {
    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        let rows: Vec<TeamRow> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, name, description, created_at, updated_at FROM teams ORDER BY name, id",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(Team::from).collect())
    }

    pub async fn list_owners(&self) -> Result<Vec<Owner>> {
        let rows: Vec<OwnerRow> = with_db!(&self.db, |p| {
            sqlx::query_as("SELECT id, name, email, team_id, created_at, updated_at FROM owners ORDER BY name, id")
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(Owner::from).collect())
    }
}

impl Tx {
    pub async fn team(&mut self, id: &str) -> Result<Option<Team>> {
        let row: Option<TeamRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, name, description, created_at, updated_at FROM teams WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        });
        Ok(row.map(Team::from))
    }

    pub async fn upsert_team(&mut self, t: &Team) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO teams (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 updated_at = excluded.updated_at",
            )
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.description)
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn owner(&mut self, id: &str) -> Result<Option<Owner>> {
        let row: Option<OwnerRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, name, email, team_id, created_at, updated_at FROM owners WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        });
        Ok(row.map(Owner::from))
    }

    pub async fn upsert_owner(&mut self, o: &Owner) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO owners (id, name, email, team_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, \
                 team_id = excluded.team_id, updated_at = excluded.updated_at",
            )
            .bind(&o.id)
            .bind(&o.name)
            .bind(&o.email)
            .bind(&o.team_id)
            .bind(o.created_at)
            .bind(o.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Deletes a team or owner row when nothing refers to it; returns
    /// `Ok(false)` when it did not exist.
    pub async fn delete_org(&mut self, table: OrgTable, id: &str) -> Result<bool> {
        let (refs, del) = match table {
            OrgTable::Team => (
                "SELECT (SELECT COUNT(*) FROM certificates WHERE team_id = $1) + (SELECT COUNT(*) FROM owners WHERE team_id = $1)",
                "DELETE FROM teams WHERE id = $1",
            ),
            OrgTable::Owner => (
                "SELECT COUNT(*) FROM certificates WHERE owner_id = $1",
                "DELETE FROM owners WHERE id = $1",
            ),
        };
        let n: i64 = with_tx!(self, |c| {
            sqlx::query_scalar(refs).bind(id).fetch_one(c).await?
        });
        if n > 0 {
            return Err(crate::Error::conflict(format!(
                "{id} is still referenced by {n} certificate(s) or owner(s); reassign them first"
            )));
        }
        let n = with_tx!(self, |c| {
            sqlx::query(del).bind(id).execute(c).await?.rows_affected()
        });
        Ok(n == 1)
    }
}

/// Which ownership table [`Tx::delete_org`] deletes from.
#[derive(Debug, Clone, Copy)]
pub enum OrgTable {
    Team,
    Owner,
}
