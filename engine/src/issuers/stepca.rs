//! step-ca: placeholder, filled in below.
use serde::{Deserialize, Serialize};

use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError};
use crate::error::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCaConfig {
    pub url: String,
}

impl StepCaConfig {
    pub fn check(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCaSecrets {}

pub struct StepCaConnector;

impl StepCaConnector {
    pub fn new(_c: StepCaConfig, _s: StepCaSecrets) -> Result<Self> {
        Ok(Self)
    }
}

#[async_trait::async_trait]
impl Connector for StepCaConnector {
    async fn issue(
        &self,
        _req: &IssueRequest,
        _resume: Option<serde_json::Value>,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        Err(IssuerError::rejected("step-ca: not yet"))
    }

    async fn test(&self) -> Result<String, IssuerError> {
        Err(IssuerError::rejected("step-ca: not yet"))
    }
}
