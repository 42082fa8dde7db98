//! certctl-mcp: the MCP face of the engine.
//!
//! Tools are the engine's catalogue (same names, typed schemas, annotations
//! from the risk class); resources are read-only views of the inventory;
//! prompts come from `prompts/`. When a call stops at the approval gate the
//! human is asked in chat where the client can ask (see [`call`]), otherwise
//! the result names the pending approval. Every call runs through
//! `Engine::call` as the connected principal: this crate holds no rule of
//! its own, so it cannot skip one.
//!
//! Transports: stdio (`certctl mcp`, see [`serve_stdio`]) and streamable
//! HTTP (mounted at `/mcp` by the HTTP face, see [`http_service`]), where the
//! HTTP layer authenticates and puts the [`Principal`] into the request.

mod call;
mod errors;
pub mod prompts;
mod resources;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;

use certctl_engine::Engine;
use certctl_engine::domain::Principal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, RequestStateCodec, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};

/// What the server tells clients about itself and how to use it.
const INSTRUCTIONS: &str = "certctl manages a fleet of TLS certificates: inventory, issuance from CSRs, \
renewal, revocation, approvals and an audit trail. Find certificates with list_certificates (filters such as \
status=expiring) or the certctl://certificates/expiring resource before acting on them. Private keys never pass \
through certctl: issuance and renewal take a CSR made where the key lives. Revocations and deletions need a human \
yes: certctl asks in chat when your client supports it; otherwise the result has status approval_required and an \
approval_id that a person decides with the certctl CLI or REST API; poll it with get_approval. Tool results carry \
structuredContent.status: completed (result holds the output), approval_required (nothing ran yet), declined (the human \
said no; the request was withdrawn) or cancelled (the question was dismissed; the request stays pending). \
Owners, teams, profiles, policies, agent groups, jobs and the other kinds without tools of their own are read, \
listed and deleted with get_object, list_objects and delete_object, naming the kind; dashboard figures come from \
get_stats with a view. List tools page alike: pass a page's next_cursor as cursor for the next one (per_page up to 1000), sort by a \
field (a - prefix descends), created_after/created_before bound the creation time, and times are Unix seconds.";

/// The MCP server for one connection (stdio) or one HTTP session.
#[derive(Clone)]
pub struct CertctlMcp {
    engine: Arc<Engine>,
    /// The principal of a stdio connection; HTTP requests carry theirs.
    principal: Option<Principal>,
    codec: Arc<RequestStateCodec>,
}

impl CertctlMcp {
    /// A server acting as `principal` (stdio), or as whoever each HTTP
    /// request authenticated as (`None`).
    pub fn new(engine: Arc<Engine>, principal: Option<Principal>) -> Result<Self, String> {
        let key = engine.derive_secret("mcp-request-state");
        let codec = RequestStateCodec::try_new(key.to_vec())
            .map_err(|e| format!("request state key: {e}"))?;
        Ok(Self {
            engine,
            principal,
            codec: Arc::new(codec),
        })
    }

    fn principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, McpError> {
        if let Some(p) = &self.principal {
            return Ok(p.clone());
        }
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("authentication required", None))
    }
}

impl ServerHandler for CertctlMcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        );
        info.server_info = Implementation::new("certctl", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(INSTRUCTIONS.into());
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let principal = self.principal(&ctx)?;
        Ok(ListToolsResult::with_all_items(tools::tools_for(
            &principal,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let principal = self.principal(&ctx)?;
        Ok(call::call_tool(&self.engine, &self.codec, &principal, request, &ctx).await)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.principal(&ctx)?;
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.principal(&ctx)?;
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let principal = self.principal(&ctx)?;
        match resources::read(&self.engine, &principal, &request.uri).await {
            Ok(contents) => Ok(ReadResourceResult::new(contents).into()),
            Err(certctl_engine::Error::NotFound { .. }) => Err(McpError::resource_not_found(
                format!(
                    "no resource at {}; call resources/list and resources/templates/list",
                    request.uri
                ),
                None,
            )),
            Err(e) => Err(McpError::invalid_params(
                errors::teach(&e, "resources/read"),
                None,
            )),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.principal(&ctx)?;
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.principal(&ctx)?;
        let args: BTreeMap<String, String> = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect();
        prompts::get(&request.name, &args)
            .map(Into::into)
            .map_err(|m| McpError::invalid_params(m, None))
    }
}

/// Serves MCP on stdin/stdout as `principal` until the client disconnects.
pub async fn serve_stdio(engine: Arc<Engine>, principal: Principal) -> Result<(), String> {
    let server = CertctlMcp::new(engine, Some(principal))?;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP session failed to start: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP session ended with an error: {e}"))?;
    Ok(())
}

/// The streamable HTTP service for `/mcp`. The caller must authenticate each
/// request and insert the [`Principal`] into its extensions first.
pub fn http_service(
    engine: Arc<Engine>,
    cancel: tokio_util::sync::CancellationToken,
) -> rmcp::transport::StreamableHttpService<
    CertctlMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let mut config = rmcp::transport::StreamableHttpServerConfig::default();
    // Sessions let the server ask the human (elicitation) during an open
    // call on protocol 2025-11-25; 2026-07-28 requests are stateless anyway.
    config.legacy_session_mode = true;
    config.cancellation_token = cancel;
    // Browsers send an Origin header; no browser page may drive this
    // endpoint (the dashboard will use the REST API). Other clients send none.
    let config = config.enforce_origin_validation();
    let factory = move || CertctlMcp::new(engine.clone(), None).map_err(std::io::Error::other);
    rmcp::transport::StreamableHttpService::new(factory, Default::default(), config)
}
