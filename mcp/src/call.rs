//! `tools/call`: run the operation as the caller, and when it stops at the
//! approval gate, ask the human in chat in whatever way the client supports:
//!
//! 1. protocol 2026-07-28 with form elicitation: an input-required result
//!    with a form and a sealed request state; the client retries with the
//!    answer (no server-initiated request is allowed on that version);
//! 2. protocol 2025-11-25 with form elicitation: `elicitation/create` while
//!    the call is open;
//! 3. no elicitation: a normal result with `status: approval_required`, the
//!    approval id, and who may decide and how.
//!
//! Accepting records the requester's in-chat confirmation through the
//! engine (which decides whether the policy allows it); declining withdraws
//! the request; dismissing leaves it pending. Nothing runs without a yes.

use std::time::Duration;

use certctl_engine::Engine;
use certctl_engine::domain::Principal;
use certctl_engine::ops::{self, ApprovalTicket, DecideInput, DecisionOutput, Outcome};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequest,
    ElicitRequestParams, InputRequest, InputRequests, InputRequiredResult, ProtocolVersion,
    RequestStateCodec, SealOptions,
};
use rmcp::service::{ElicitationError, RequestContext, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::errors::teach;
use crate::tools;

/// How long the human has to answer in chat.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The key of the confirmation form in input requests and responses.
const CONFIRM_KEY: &str = "confirm";

/// The form the human fills in.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Confirmation {
    /// true to go ahead, false to withdraw the request.
    pub confirm: bool,
}

rmcp::elicit_safe!(Confirmation);

/// What the sealed request state carries between MRTR rounds.
#[derive(Debug, Serialize, Deserialize)]
struct PendingConfirmation {
    approval_id: String,
}

pub(crate) async fn call_tool(
    engine: &Engine,
    codec: &RequestStateCodec,
    principal: &Principal,
    request: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> CallToolResponse {
    let name = request.name.to_string();
    // Tools the role may not use are not listed, but a call to one still goes
    // to the engine, which refuses it and records the refusal in the audit log.
    let Some(op) = ops::find(&name) else {
        return error(format!(
            "there is no tool named '{name}'; call tools/list to see the tools you can use"
        ));
    };
    if !tools::is_tool(op) {
        return error(format!(
            "'{name}' is part of the agent protocol, which certctl agents call over REST with their \
             own key; it is not an MCP tool. To follow an agent's work use list_jobs, or get_object \
             with kind job or agent"
        ));
    }
    let args = Value::Object(request.arguments.clone().unwrap_or_default());
    let binding = binding(principal, &name, &args);

    // Round two of an input-required exchange: the human's answer.
    if let Some(state) = request.request_state.as_deref() {
        let pending: PendingConfirmation = match codec.open_json_with(state, &binding) {
            Ok(p) => p,
            Err(_) => {
                return error(
                    "the confirmation state is invalid or expired, or was made for other arguments; call the tool again to get a new confirmation request",
                );
            }
        };
        let answer = request
            .input_responses
            .as_ref()
            .and_then(|r| r.get(CONFIRM_KEY))
            .cloned()
            .unwrap_or(Value::Null);
        return decide(engine, principal, &pending.approval_id, answer_of(&answer)).await;
    }

    let outcome = match op.call_json(engine, principal, args).await {
        Ok(o) => o,
        Err(e) => return error(teach(&e, &name)),
    };
    let ticket = match outcome {
        Outcome::Completed { result } => {
            return completed(json!({ "status": "completed", "result": result }));
        }
        Outcome::ApprovalRequired(t) => t,
    };
    if !ticket.in_chat_confirmation_allowed {
        return approval_required(&ticket, None);
    }
    let caps = ctx.client_capabilities().and_then(|c| c.elicitation);
    let form = caps.is_some_and(|c| c.form.is_some() || c.url.is_none());
    if !form {
        return approval_required(&ticket, None);
    }
    let message = confirm_message(&ticket);
    let modern = ctx
        .protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
    if modern {
        let options = SealOptions::new()
            .associated_data(&binding)
            .ttl(CONFIRM_TIMEOUT);
        let state = match codec.seal_json_with(
            &PendingConfirmation {
                approval_id: ticket.approval_id.clone(),
            },
            &options,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot seal the confirmation state");
                return approval_required(&ticket, None);
            }
        };
        let mut requests = InputRequests::new();
        requests.insert(CONFIRM_KEY.to_owned(), confirm_request(&message));
        return InputRequiredResult::new(Some(requests), Some(state)).into();
    }
    let answer = match ctx
        .peer
        .elicit_with_timeout::<Confirmation>(message, Some(CONFIRM_TIMEOUT))
        .await
    {
        Ok(Some(c)) if c.confirm => Answer::Yes,
        Ok(Some(_)) | Err(ElicitationError::UserDeclined) => Answer::No,
        Ok(None) | Err(ElicitationError::UserCancelled) => Answer::Dismissed,
        Err(e) => {
            tracing::warn!(error = %e, approval = %ticket.approval_id, "in-chat confirmation failed");
            return approval_required(
                &ticket,
                Some("The confirmation could not be asked in chat."),
            );
        }
    };
    decide(engine, principal, &ticket.approval_id, answer).await
}

/// Binds a sealed state to the caller, the tool and its exact arguments, so
/// a state replayed with another certificate id (or by someone else) fails.
fn binding(principal: &Principal, tool: &str, args: &Value) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, args.to_string().as_bytes());
    format!("{}\n{}\n{}", principal.id, tool, hex::encode(digest)).into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Yes,
    No,
    Dismissed,
}

/// Reads an elicitation result (`{"action": "accept", "content": {...}}`).
fn answer_of(v: &Value) -> Answer {
    match v.get("action").and_then(Value::as_str) {
        Some("accept") if v["content"][CONFIRM_KEY] == Value::Bool(true) => Answer::Yes,
        Some("accept") | Some("decline") => Answer::No,
        _ => Answer::Dismissed,
    }
}

async fn decide(
    engine: &Engine,
    principal: &Principal,
    approval_id: &str,
    answer: Answer,
) -> CallToolResponse {
    match answer {
        Answer::Yes => match engine.confirm_in_chat(principal, approval_id).await {
            Ok(Outcome::Completed { result }) => confirmed(result),
            Ok(Outcome::ApprovalRequired(t)) => approval_required(&t, None),
            Err(e) => error(teach(&e, "approve_request")),
        },
        Answer::No => {
            let input = DecideInput {
                approval_id: approval_id.to_owned(),
                note: Some("declined in chat".into()),
            };
            match engine.call::<ops::CancelRequest>(principal, input).await {
                Ok(_) => completed(json!({
                    "status": "declined",
                    "approval_id": approval_id,
                    "message": "You declined: the request was withdrawn and nothing was done."
                })),
                Err(e) => error(teach(&e, "cancel_request")),
            }
        }
        Answer::Dismissed => completed(json!({
            "status": "cancelled",
            "approval_id": approval_id,
            "message": format!(
                "The confirmation was dismissed: nothing was done. The request {approval_id} stays pending; \
                 an approver can still decide it (certctl approvals approve {approval_id}), or withdraw it with cancel_request."
            )
        })),
    }
}

fn confirmed(out: DecisionOutput) -> CallToolResponse {
    completed(json!({
        "status": "completed",
        "approval_id": out.approval.id,
        "result": out.approval.result.unwrap_or(Value::Null),
        "message": "Confirmed in chat; the operation ran once.",
    }))
}

fn confirm_message(t: &ApprovalTicket) -> String {
    format!(
        "{}.\n\nThis cannot be undone. Confirm to go ahead, or decline to withdraw the request ({}).",
        t.summary.trim_end_matches('.'),
        t.approval_id
    )
}

fn confirm_request(message: &str) -> InputRequest {
    let requested_schema = rmcp::model::ElicitationSchema::builder()
        .required_bool_with(CONFIRM_KEY, |b| {
            b.title("Go ahead?")
                .description("true runs the operation now; false withdraws the request.")
        })
        .build_unchecked();
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema,
        },
    ))
}

fn approval_required(t: &ApprovalTicket, note: Option<&str>) -> CallToolResponse {
    let mut v = serde_json::to_value(Outcome::<()>::ApprovalRequired(t.clone()))
        .unwrap_or_else(|_| json!({}));
    let message = format!(
        "{}Nothing was done yet: {}. Approval {} must be approved first: {}. Poll it with get_approval.",
        note.map(|n| format!("{n} ")).unwrap_or_default(),
        t.summary,
        t.approval_id,
        t.how_to_decide
    );
    v["message"] = message.into();
    completed(v)
}

fn completed(structured: Value) -> CallToolResponse {
    let text = serde_json::to_string(&structured).unwrap_or_default();
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r.into()
}

fn error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message.into())]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(
            answer_of(&json!({"action": "accept", "content": {"confirm": true}})),
            Answer::Yes
        );
        assert_eq!(
            answer_of(&json!({"action": "accept", "content": {"confirm": "true"}})),
            Answer::No
        );
        assert_eq!(
            answer_of(&json!({"action": "accept", "content": {"confirm": false}})),
            Answer::No
        );
        assert_eq!(answer_of(&json!({"action": "decline"})), Answer::No);
        assert_eq!(answer_of(&json!({"action": "cancel"})), Answer::Dismissed);
        assert_eq!(answer_of(&Value::Null), Answer::Dismissed);
    }
}
