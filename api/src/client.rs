//! A typed client for the certctl HTTP API, shared by the CLI and (later)
//! the agent. Errors keep the server's problem details, so a caller can
//! show the server's own sentence.

use std::time::Duration;

use certctl_engine::ops::{CertificatePage, Outcome};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error (problem details when it sent them).
    #[error("{} ({})", .problem.detail, .problem.status)]
    Api { problem: Problem },
    /// The server could not be reached, or the connection failed.
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The client was set up wrongly (bad URL).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { problem } => Some(problem.status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to one certctl server.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8443`), authenticating
    /// with `api_key` when given.
    ///
    /// reqwest is built without a bundled rustls provider; when the process
    /// has not installed one yet (the binary installs aws-lc-rs at start),
    /// this installs aws-lc-rs, the one provider certctl uses.
    pub fn new(base: &str, api_key: Option<String>) -> Result<Self> {
        let mut base = Url::parse(base)
            .map_err(|e| ClientError::Config(format!("server URL '{base}' is not valid: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "server URL '{base}' must start with http:// or https://"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing the race to another thread installing it is fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base,
            api_key: api_key.filter(|k| !k.is_empty()),
            http,
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::Config(format!("bad path {path}: {e}")))
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<(StatusCode, T)> {
        let res = rb.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            reason: without_url(e),
        })?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            reason: without_url(e),
        })?;
        if !status.is_success() {
            let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| {
                Problem::new(
                    status,
                    "http",
                    status.canonical_reason().unwrap_or("error"),
                    format!(
                        "the server answered {status}: {}",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ),
                )
            });
            return Err(ClientError::Api { problem });
        }
        let value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, value))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<serde_json::Value> {
        let url = self.url("health")?;
        Ok(self
            .send(self.request(reqwest::Method::GET, url.clone()), &url)
            .await?
            .1)
    }

    /// `GET /api/v1/certificates` with query parameters (`status`, `per_page`, ...).
    pub async fn list_certificates(&self, query: &[(&str, &str)]) -> Result<CertificatePage> {
        let mut url = self.url("api/v1/certificates")?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(self
            .send(self.request(reqwest::Method::GET, url.clone()), &url)
            .await?
            .1)
    }

    /// `GET /api/v1/certificates/{id}`.
    pub async fn certificate(&self, id: &str) -> Result<serde_json::Value> {
        let mut url = self.url("api/v1/certificates")?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Config("server URL cannot take a path".into()))?
            .push(id);
        Ok(self
            .send(self.request(reqwest::Method::GET, url.clone()), &url)
            .await?
            .1)
    }

    /// `POST /api/v1/certificates/{id}/export`: the file's bytes (`pem`,
    /// `der`, or `pkcs12` with a password).
    pub async fn export_certificate(
        &self,
        id: &str,
        format: &str,
        password: Option<&str>,
    ) -> Result<Vec<u8>> {
        let mut url = self.url("api/v1/certificates")?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Config("server URL cannot take a path".into()))?
            .push(id)
            .push("export");
        let body = serde_json::json!({ "format": format, "password": password });
        let res = self
            .request(reqwest::Method::POST, url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                url: url.to_string(),
                reason: without_url(e),
            })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            reason: without_url(e),
        })?;
        if status != StatusCode::OK {
            let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
                Problem::new(
                    status,
                    "http",
                    status.canonical_reason().unwrap_or("error"),
                    format!("the server answered {status}"),
                )
            });
            return Err(ClientError::Api { problem });
        }
        Ok(bytes.to_vec())
    }

    /// `GET /api/v1/operations`: the catalogue with schemas.
    pub async fn operations(&self) -> Result<serde_json::Value> {
        let url = self.url("api/v1/operations")?;
        Ok(self
            .send(self.request(reqwest::Method::GET, url.clone()), &url)
            .await?
            .1)
    }

    /// Runs one catalogue operation: `POST /api/v1/operations/{name}`.
    pub async fn call(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<Outcome<serde_json::Value>> {
        let mut url = self.url("api/v1/operations")?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Config("server URL cannot take a path".into()))?
            .push(operation);
        let rb = self.request(reqwest::Method::POST, url.clone()).json(input);
        Ok(self.send(rb, &url).await?.1)
    }

    /// Runs an operation that must complete (reads, never gated), decoding its result.
    pub async fn call_completed<T: DeserializeOwned>(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<T> {
        match self.call(operation, input).await? {
            Outcome::Completed { result } => {
                serde_json::from_value(result).map_err(|e| ClientError::Decode(e.to_string()))
            }
            Outcome::ApprovalRequired(t) => Err(ClientError::Decode(format!(
                "{operation} unexpectedly needs approval {}",
                t.approval_id
            ))),
        }
    }
}

/// What a resource route answered: the HTTP status (200, 201, 202) and the
/// body. A call stopped at the approval gate answers 202 with
/// `{"status":"approval_required","approval_id":...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    /// The approval the call waits for, when it was gated.
    pub fn approval_id(&self) -> Option<&str> {
        (self.body.get("status").and_then(|s| s.as_str()) == Some("approval_required"))
            .then(|| self.body.get("approval_id").and_then(|a| a.as_str()))
            .flatten()
    }
}

impl Client {
    /// Any resource route: `segments` are joined under `/api/v1` (each one
    /// percent-encoded, so ids cannot escape their segment), `query` goes on
    /// the URL and `body` (JSON) with the request.
    pub async fn resource(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer> {
        let mut url = self.url("api/v1")?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Config("server URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut rb = self.request(method, url.clone());
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let (status, body) = self.send::<serde_json::Value>(rb, &url).await?;
        Ok(Answer {
            status: status.as_u16(),
            body,
        })
    }

    /// `GET /api/v1/{segments}` with a query, for lists and reads.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value> {
        Ok(self
            .resource(reqwest::Method::GET, segments, query, None)
            .await?
            .body)
    }

    /// `POST /api/v1/{segments}` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &serde_json::Value) -> Result<Answer> {
        self.resource(reqwest::Method::POST, segments, &[], Some(body))
            .await
    }

    /// `POST /api/v1/agents/{id}/heartbeat` with host facts.
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        facts: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        Ok(self
            .post(&["agents", agent_id, "heartbeat"], facts)
            .await?
            .body)
    }

    /// `GET /api/v1/agents/{id}/work`: the agent's open jobs.
    pub async fn agent_work(&self, agent_id: &str) -> Result<certctl_engine::ops::AgentWork> {
        let v = self.get(&["agents", agent_id, "work"], &[]).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /api/v1/agents/{id}/csr`: answers an `awaiting_csr` job.
    pub async fn submit_csr(
        &self,
        agent_id: &str,
        job_id: &str,
        csr_pem: &str,
    ) -> Result<serde_json::Value> {
        let body = serde_json::json!({ "job_id": job_id, "csr_pem": csr_pem });
        Ok(self.post(&["agents", agent_id, "csr"], &body).await?.body)
    }
}

/// reqwest's messages repeat the URL, which the caller already prints.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let c = Client::new("http://127.0.0.1:8443", None).unwrap();
        assert_eq!(
            c.url("api/v1/certificates").unwrap().as_str(),
            "http://127.0.0.1:8443/api/v1/certificates"
        );
        let c = Client::new("http://127.0.0.1:8443/certctl", None).unwrap();
        assert_eq!(
            c.url("/health").unwrap().as_str(),
            "http://127.0.0.1:8443/certctl/health"
        );
        assert!(Client::new("ftp://127.0.0.1", None).is_err());
        assert!(Client::new("not a url", None).is_err());
    }
}
