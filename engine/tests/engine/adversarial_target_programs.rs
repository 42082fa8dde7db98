//! An operator (Write) tries to make an agent run a program of their
//! choosing through a target's settings: a shell or an interpreter as
//! `binary`, a program of another kind, a relative trick, a value that
//! lands in an option position or is split into several arguments by a
//! wrapper script. `save_target` refuses each with a typed invalid-input
//! error and stores nothing; an existing target keeps its settings.

use certctl_engine::Error;
use certctl_engine::domain::{Role, Target};
use certctl_engine::ops::{self, Outcome};
use serde_json::{Value, json};

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    save_target_refuses_programs_that_are_not_the_kinds,
    save_target_refuses_values_that_reach_an_option_position
);

fn input<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// Saves a target as an operator; returns the engine's answer.
async fn save(h: &Harness, v: Value) -> certctl_engine::Result<Outcome<Target>> {
    let operator = principal("pr-operator", Role::Operator);
    h.call::<ops::SaveTarget>(&operator, input(v)).await
}

/// Every stored target, as JSON.
async fn targets(h: &Harness) -> Value {
    let l = h
        .done::<ops::ListTargets>(&h.admin(), input(json!({"per_page": 100})))
        .await;
    serde_json::to_value(&l.data).expect("json")
}

/// Each config must be refused with `InvalidInput` naming `field`, leave
/// the stored targets as they were, and keep the audit chain valid.
async fn assert_refused(h: &Harness, kind: &str, id: Option<&str>, bad: Value, field: &str) {
    let before = targets(h).await;
    let mut req = json!({"name": "web", "kind": kind, "config": bad});
    if let Some(id) = id {
        req["id"] = id.into();
    }
    match save(h, req).await {
        Err(Error::InvalidInput(m)) => assert!(m.contains(field), "{kind} {bad}: '{m}'"),
        other => panic!("{kind} {bad} must be refused as invalid input, got {other:?}"),
    }
    assert_eq!(before, targets(h).await, "{kind} {bad}: nothing changed");
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "{v:?}");
}

async fn save_target_refuses_programs_that_are_not_the_kinds(h: &Harness) {
    let paths = json!({"cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key"});
    let with = |extra: Value| {
        let mut c = paths.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    // Shells, interpreters and other programs, by name or by path.
    for binary in [
        "/bin/sh",
        "sh",
        "bash",
        "/usr/bin/bash",
        "/usr/bin/python3",
        "python3",
        "/usr/bin/env",
        "perl",
        "busybox",
        "/usr/bin/nginx-debug-shell",
    ] {
        assert_refused(h, "nginx", None, with(json!({"binary": binary})), "binary").await;
    }
    // Relative tricks that would resolve to something else.
    for binary in [
        "./nginx",
        "bin/nginx",
        "nginx/../sh",
        "../../bin/sh",
        "/usr/sbin/../../bin/sh",
        "/usr/sbin/./nginx",
        "",
    ] {
        assert_refused(h, "nginx", None, with(json!({"binary": binary})), "binary").await;
    }
    // Another kind's program.
    assert_refused(
        h,
        "nginx",
        None,
        with(json!({"binary": "apache2ctl"})),
        "binary",
    )
    .await;
    assert_refused(
        h,
        "apache",
        None,
        with(json!({"binary": "/usr/sbin/nginx"})),
        "binary",
    )
    .await;
    assert_refused(
        h,
        "caddy",
        None,
        with(json!({"binary": "haproxy"})),
        "binary",
    )
    .await;
    // A kind that runs no program takes no binary.
    let traefik = json!({"cert_path": "/etc/traefik/a.pem", "key_path": "/etc/traefik/a.key",
                         "dynamic_config_path": "/etc/traefik/d/c.yml", "binary": "/bin/sh"});
    assert_refused(h, "traefik", None, traefik, "binary").await;

    // An existing target is not turned into a shell by an update either.
    let t = match save(h, json!({"name": "web", "kind": "nginx", "config": with(json!({"binary": "/usr/sbin/nginx"}))}))
        .await
    {
        Ok(Outcome::Completed { result }) => result,
        other => panic!("a kind's own program is accepted: {other:?}"),
    };
    assert_refused(
        h,
        "nginx",
        Some(&t.id),
        with(json!({"binary": "/bin/sh"})),
        "binary",
    )
    .await;
    // The kind's programs by name or by absolute path are fine.
    for (i, (kind, binary)) in [
        ("nginx", "nginx"),
        ("apache", "apache2ctl"),
        ("apache", "/usr/sbin/apachectl"),
        ("haproxy", "/usr/sbin/haproxy"),
        ("caddy", "caddy"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = with(json!({"binary": binary}));
        if kind == "haproxy" {
            c = json!({"pem_path": "/etc/haproxy/a.pem", "binary": binary});
        }
        let r = save(
            h,
            json!({"name": format!("ok-{i}"), "kind": kind, "config": c}),
        )
        .await;
        assert!(
            matches!(r, Ok(Outcome::Completed { .. })),
            "{kind} {binary}: {r:?}"
        );
    }
}

async fn save_target_refuses_values_that_reach_an_option_position(h: &Harness) {
    let base = |extra: Value| {
        let mut c = json!({"cert_path": "/etc/caddy/a.pem", "key_path": "/etc/caddy/a.key"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    // A wrapper script such as apache2ctl word-splits its arguments: a
    // space (or a glob) in the configuration path would become options.
    for config_file in [
        "/etc/apache2/x -C LoadModule",
        "/etc/apache2/a\tb",
        "/etc/apache2/a\nb",
        "/etc/apache2/*.conf",
        "/etc/apache2/$(id).conf",
        "/etc/apache2/a;b",
        "-f",
        "--config",
    ] {
        assert_refused(
            h,
            "apache",
            None,
            base(json!({"config_file": config_file})),
            "config_file",
        )
        .await;
    }
    // The Caddy admin address is an option's value: a loopback host and a port, nothing else.
    for address in [
        "127.0.0.1:--force",
        "127.0.0.1",
        "localhost:2019 --watch",
        "127.0.0.1:-1",
        "127.0.0.1:99999",
    ] {
        assert_refused(
            h,
            "caddy",
            None,
            base(json!({"admin_address": address})),
            "admin_address",
        )
        .await;
    }
    for adapter in ["", "-x", "caddyfile --watch"] {
        assert_refused(
            h,
            "caddy",
            None,
            base(json!({"adapter": adapter})),
            "adapter",
        )
        .await;
    }
}
