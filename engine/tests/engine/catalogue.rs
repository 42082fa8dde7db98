//! The catalogue itself: names, descriptions and schemas every face relies on.

use std::collections::HashSet;

use certctl_engine::ops::{self, Risk};

#[test]
fn every_operation_is_well_formed() {
    let mut names = HashSet::new();
    for op in ops::catalogue() {
        let m = op.meta();
        assert!(names.insert(m.name), "duplicate operation {}", m.name);
        assert!(
            m.name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && m.name.contains('_'),
            "{} is not snake_case verb_noun",
            m.name
        );
        assert!(
            m.description.len() > 30 && !m.description.contains('\n'),
            "{}",
            m.name
        );
        assert!(!m.title.is_empty());
        let input = op.input_schema();
        assert_eq!(input["type"], "object", "{} input schema: {input}", m.name);
        let output = op.output_schema();
        assert!(output.is_object(), "{}", m.name);
        if m.risk == Risk::Read {
            assert!(!m.gateable, "{} reads but is gateable", m.name);
        }
        assert!(ops::find(m.name).is_some());
    }
    // The names the contract promises.
    for promised in [
        "list_certificates",
        "get_certificate",
        "issue_certificate",
        "renew_certificate",
        "revoke_certificate",
        "list_approvals",
        "approve_request",
        "reject_request",
        "list_jobs",
        "list_agents",
        "list_issuers",
        "get_audit_log",
    ] {
        assert!(names.contains(promised), "missing {promised}");
    }
    // Destructive operations are the ones that revoke or delete.
    for op in ops::catalogue() {
        let m = op.meta();
        if m.name.starts_with("revoke_") || m.name.starts_with("delete_") {
            assert_eq!(m.risk, Risk::Destructive, "{}", m.name);
        }
    }
}
