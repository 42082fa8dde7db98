//! Tool failures that teach: what went wrong and what to do next. They are
//! `isError` results (clients show those to the model), never protocol
//! errors, and never carry internal error text.

use certctl_engine::Error;

/// The list call that shows ids of a resource kind.
fn lister(kind: &str) -> Option<String> {
    Some(match kind {
        "certificate" => "list_certificates".to_owned(),
        "issuer" => "list_issuers".to_owned(),
        "target" => "list_targets".to_owned(),
        "agent" => "list_agents".to_owned(),
        "job" => "list_jobs".to_owned(),
        "approval" => "list_approvals".to_owned(),
        "notification" => "list_notifications".to_owned(),
        "discovered_certificate" => "list_discovered_certificates".to_owned(),
        "owner"
        | "team"
        | "profile"
        | "renewal_policy"
        | "policy"
        | "principal"
        | "agent_group"
        | "bulk_operation"
        | "notification_channel"
        | "notification_rule"
        | "network_scan_target" => format!("list_objects with kind '{kind}'"),
        _ => return None,
    })
}

/// The message a model sees when `tool` failed with `e`.
pub fn teach(e: &Error, tool: &str) -> String {
    match e {
        Error::NotFound { kind, id } => match lister(kind) {
            Some(l) => format!(
                "{kind} '{id}' does not exist. Call {l} to find valid ids, then retry {tool}."
            ),
            None => format!("{kind} '{id}' does not exist."),
        },
        Error::InvalidInput(m) => format!(
            "{tool} refused its input: {m}. Check the field against the tool's input schema and retry."
        ),
        Error::PolicyViolation(m) => format!(
            "{tool} was refused by policy: {m}. Change the request to fit the rule, or ask an administrator to change the profile or policy."
        ),
        Error::Conflict(m) => format!("{tool} cannot run in the current state: {m}."),
        Error::Forbidden(m) => format!(
            "{tool} is not allowed for you: {m}. Ask a person with the right role to do it."
        ),
        Error::Unauthenticated => {
            "authentication required: configure an API key for this MCP server.".into()
        }
        Error::IssuerRejected(m) => format!("the certificate authority refused: {m}."),
        Error::ApprovalRequired(m) => format!("{m}. Check it with get_approval."),
        Error::StaleApproval(m) => format!(
            "{m}. Nothing was done; if it is still wanted, call the tool again so a new approval shows the current state."
        ),
        Error::Storage(_) | Error::Internal(_) => format!(
            "{tool} failed because of an internal problem on the certctl server (logged there); try again later."
        ),
        _ => format!("{tool} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_list_tool() {
        let m = teach(
            &Error::not_found("certificate", "mc-x"),
            "revoke_certificate",
        );
        assert!(m.contains("list_certificates") && m.contains("mc-x"), "{m}");
    }

    #[test]
    fn internal_text_is_not_shown() {
        let m = teach(
            &Error::internal("connection refused to 10.0.0.1"),
            "list_jobs",
        );
        assert!(!m.contains("10.0.0.1"), "{m}");
    }
}
