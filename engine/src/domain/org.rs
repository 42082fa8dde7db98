//! Ownership: the people and teams certificates belong to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Team {
    /// `team-...`
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Owner {
    /// `own-...`
    pub id: String,
    pub name: String,
    pub email: String,
    pub team_id: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
