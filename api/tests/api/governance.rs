//! Governance over REST: an enforce-mode policy refuses with a 422
//! problem+json naming the rule, and the refused attempt is listed.

use serde_json::json;

use crate::support::Rig;

#[tokio::test]
async fn enforce_policy_refuses_with_422_and_the_attempt_is_listed() {
    let rig = Rig::new().await;
    let key = &rig.admin_key;
    let r = rig
        .post(
            "/api/v1/policies",
            Some(key),
            &json!({ "name": "corp", "kind": "allowed_domains", "severity": "critical", "mode": "enforce",
                     "params": { "domains": ["*.example.com"] } })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let rule = r.body["id"].as_str().unwrap().to_owned();

    let r = rig
        .post(
            "/api/v1/certificates",
            Some(key),
            &json!({ "common_name": "www.example.org" }).to_string(),
        )
        .await;
    r.assert_problem(422, "policy-violation");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("'corp'")
            && detail.contains("www.example.org is outside the allowed domains"),
        "{detail}"
    );
    let r = rig
        .post(
            "/api/v1/certificates",
            Some(key),
            &json!({ "common_name": "www.example.com" }).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    let r = rig
        .get(
            &format!("/api/v1/policy-violations?rule_id={rule}&refused=true"),
            Some(key),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["total"], 1, "{r:?}");
    assert_eq!(r.body["data"][0]["operation"], "create_certificate");
    assert_eq!(r.body["data"][0]["common_name"], "www.example.org");
    let r = rig
        .get("/api/v1/policy-violations?refused=false", Some(key))
        .await;
    assert_eq!(r.body["total"], 0, "{r:?}");
    // Bad params are refused with the expected shape.
    let r = rig
        .post(
            "/api/v1/policies",
            Some(key),
            &json!({ "name": "bad", "kind": "max_lifetime", "severity": "low", "mode": "warn", "params": { "days": 1 } })
                .to_string(),
        )
        .await;
    r.assert_problem(422, "invalid-input");
    rig.finish().await;
}
