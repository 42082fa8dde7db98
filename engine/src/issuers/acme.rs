//! ACME: placeholder.
use serde::{Deserialize, Serialize};

use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError};
use crate::error::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    pub url: String,
}

impl AcmeConfig {
    pub fn check(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSecrets {}

pub struct AcmeConnector;

impl AcmeConnector {
    pub fn new(_c: AcmeConfig, _s: AcmeSecrets, _a: Option<serde_json::Value>) -> Result<Self> {
        Ok(Self)
    }
}

#[async_trait::async_trait]
impl Connector for AcmeConnector {
    async fn issue(
        &self,
        _req: &IssueRequest,
        _resume: Option<serde_json::Value>,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        Err(IssuerError::rejected("acme: not yet"))
    }

    async fn test(&self) -> Result<String, IssuerError> {
        Err(IssuerError::rejected("acme: not yet"))
    }
}
