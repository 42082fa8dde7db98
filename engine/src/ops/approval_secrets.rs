//! Secrets in approval records. An approval keeps the input it will run and,
//! once executed, the result; every viewer can read approvals, so neither
//! may show a secret (an issuer's token, a sub-CA key, a new API key, an
//! export link). What a reader sees has each secret value replaced by
//! `"[sealed]"`; the full input and result are sealed with the master key
//! beside it. The sealed input is what approving runs; the sealed result
//! goes to the requester once ([`super::ClaimApprovalResult`]).

use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// What a secret value reads as in an approval record.
pub const SEALED: &str = "[sealed]";

/// Field names that hold a secret in any input or result.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "api_key",
    "ca_key_pem",
    "private_key_pem",
    "key_pem",
    "token",
];

/// Result fields that are secrets under a generic name: the export link's
/// URL carries its token.
const SECRET_RESULT_FIELDS: &[(&str, &[&str])] = &[("create_export_link", &["url"])];

/// Input fields that are secrets under a generic name: Slack, Teams and
/// webhook URLs carry their token.
const SECRET_INPUT_FIELDS: &[(&str, &[&str])] = &[("save_notification_channel", &["url"])];

/// Whether `key` names a secret value in `operation`'s input (`result:
/// false`) or result.
fn is_secret(operation: &str, key: &str, result: bool) -> bool {
    let table = if result {
        SECRET_RESULT_FIELDS
    } else {
        SECRET_INPUT_FIELDS
    };
    SECRET_KEYS.contains(&key)
        || table
            .iter()
            .any(|(op, fields)| *op == operation && fields.contains(&key))
}

/// A copy of `value` with every secret replaced by [`SEALED`], and whether
/// anything was replaced. Null values stay (nothing to hide).
pub(crate) fn redact(operation: &str, value: &Value, result: bool) -> (Value, bool) {
    fn walk(operation: &str, v: &mut Value, result: bool) -> bool {
        match v {
            Value::Object(map) => {
                let mut hit = false;
                for (k, child) in map.iter_mut() {
                    if is_secret(operation, k, result) && !child.is_null() {
                        *child = Value::String(SEALED.into());
                        hit = true;
                    } else {
                        hit |= walk(operation, child, result);
                    }
                }
                hit
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |hit, i| walk(operation, i, result) | hit),
            _ => false,
        }
    }
    let mut copy = value.clone();
    let hit = walk(operation, &mut copy, result);
    (copy, hit)
}

fn context(kind: &str, approval_id: &str) -> String {
    format!("approval-{kind}:{approval_id}")
}

/// Seals the full JSON of an approval's input or result.
pub(crate) fn seal(engine: &Engine, kind: &str, approval_id: &str, v: &Value) -> Result<String> {
    let text = zeroize::Zeroizing::new(v.to_string());
    engine
        .master_key()
        .seal(text.as_bytes(), &context(kind, approval_id))
}

/// Opens what [`seal`] sealed.
pub(crate) fn open(engine: &Engine, kind: &str, approval_id: &str, sealed: &str) -> Result<Value> {
    let bytes = engine
        .master_key()
        .open(sealed, &context(kind, approval_id))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("sealed approval {kind} is not JSON: {e}")))
}

/// Seals the secrets of approvals stored before they were sealed (an
/// upgraded installation): once per database, at start.
pub(crate) async fn seal_stored(engine: &Engine) -> Result<()> {
    let approvals = engine.store().list_approvals(None, i64::MAX).await?;
    let mut tx = engine.store().begin_write().await?;
    if !tx.meta_insert_once("approval_secrets_sealed", "1").await? {
        return Ok(());
    }
    let mut sealed = 0;
    for a in approvals {
        let (input, input_hit) = redact(&a.operation, &a.input, false);
        let (result, result_hit) = match &a.result {
            Some(r) => {
                let (shown, hit) = redact(&a.operation, r, true);
                (Some(shown), hit)
            }
            None => (None, false),
        };
        if !input_hit && !result_hit {
            continue;
        }
        let input_sealed = if input_hit {
            Some(seal(engine, "input", &a.id, &a.input)?)
        } else {
            None
        };
        let result_sealed = match (&a.result, result_hit) {
            (Some(r), true) => Some(seal(engine, "result", &a.id, r)?),
            _ => None,
        };
        tx.reseal_approval(
            &a.id,
            &input,
            input_sealed.as_deref(),
            result.as_ref(),
            result_sealed.as_deref(),
        )
        .await?;
        sealed += 1;
    }
    tx.commit().await?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed the secrets of approvals stored before they were sealed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_replaced_wherever_they_are() {
        let input = json!({
            "name": "acme", "secrets": {"eab_hmac_key": "abc"}, "ca_key_pem": "-----BEGIN",
            "nested": [{"password": "p"}], "config": {"url": "https://ca"}
        });
        let (shown, hit) = redact("create_issuer", &input, false);
        assert!(hit);
        assert_eq!(shown["secrets"], SEALED);
        assert_eq!(shown["ca_key_pem"], SEALED);
        assert_eq!(shown["nested"][0]["password"], SEALED);
        assert_eq!(shown["config"]["url"], "https://ca");
        assert_eq!(shown["name"], "acme");
    }

    #[test]
    fn an_export_link_url_is_a_secret_result_only_there() {
        let out = json!({"url": "https://x/api/v1/exports/tok", "format": "pem"});
        assert_eq!(redact("create_export_link", &out, true).0["url"], SEALED);
        assert_eq!(redact("create_issuer", &out, true).0["url"], out["url"]);
        assert!(!redact("create_export_link", &out, false).1);
    }

    #[test]
    fn nothing_secret_leaves_the_value_alone() {
        let v = json!({"id": "mc-1", "reason": "key_compromise", "secret": null});
        let (shown, hit) = redact("revoke_certificate", &v, false);
        assert!(!hit);
        assert_eq!(shown, v);
    }
}
