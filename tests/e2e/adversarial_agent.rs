//! An operator tries to run a command on an agent host through a target's
//! settings, with the real `certctl serve`, `certctl agent` and nginx: a
//! copy of `sh` named `nginx` (which the engine cannot tell from nginx), a
//! forged target row naming `/bin/sh` (an old row, or one written behind
//! the engine's back), and a configuration file outside the agent's config
//! roots (nginx would print its first line into the job's error). Each job
//! fails with a clear reason before any process starts: the payload's
//! marker file does not exist and no secret reaches the control plane.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::agent::{Proc, call, require_peer, until};
use super::{BIN, Server, wait_healthy};

#[tokio::test(flavor = "multi_thread")]
async fn a_target_cannot_make_the_agent_run_a_program_it_does_not_allow() {
    if !require_peer("nginx") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("cp"), &[]);
    let key = std::fs::read_to_string(dir.path().join("cp/admin.key")).expect("admin.key");
    let admin = Client::new(&server.base, Some(key.trim().to_owned())).expect("client");
    wait_healthy(&admin).await;
    let reg = call(&admin, "register_agent", json!({"name": "web-1"})).await;
    let agent_id = reg["agent"]["id"].as_str().unwrap().to_owned();

    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(outside.join("bin")).unwrap();
    // The payload proves it ran by leaving a marker and printing a word
    // the job's error would carry back.
    let marker = dir.path().join("marker");
    let payload = root.join("payload.sh");
    std::fs::write(
        &payload,
        format!(
            "#!/bin/sh\ntouch {}\necho PAYLOAD-RAN\nexit 1\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A shell the engine cannot tell from nginx by its name.
    let fake_nginx = outside.join("bin/nginx");
    std::fs::copy("/bin/sh", &fake_nginx).unwrap();
    std::fs::set_permissions(&fake_nginx, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A file nginx would quote in its error: `unknown directive "..."`.
    let secret = outside.join("secret.conf");
    std::fs::write(&secret, "TOPSECRET-LINE;\n").unwrap();

    let files = |i: usize| json!({"cert_path": root.join(format!("{i}.pem")), "key_path": root.join(format!("{i}.key"))});
    let with = |i: usize, extra: Value| {
        let mut c = files(i);
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let cases = [
        (
            with(0, json!({"binary": fake_nginx, "config_file": payload})),
            "is not a program this agent runs for nginx targets",
        ),
        // Saved clean, then forged to a shell below.
        (
            with(1, json!({})),
            "config.binary /bin/sh is not a nginx program",
        ),
        (
            with(2, json!({"config_file": secret})),
            "outside the agent's config roots",
        ),
    ];
    let mut targets = Vec::new();
    for (i, (config, _)) in cases.iter().enumerate() {
        let t = call(
            &admin,
            "save_target",
            json!({"name": format!("t-{i}"), "kind": "nginx", "agent_id": agent_id, "config": config}),
        )
        .await;
        targets.push(t["id"].as_str().unwrap().to_owned());
    }
    let forged = with(1, json!({"binary": "/bin/sh", "config_file": payload}));
    super::sqlite_exec(
        &dir.path().join("cp/certctl.db"),
        &format!(
            "UPDATE targets SET config = '{forged}' WHERE id = '{}'",
            targets[1]
        ),
    )
    .await;
    let c = call(
        &admin,
        "create_certificate",
        json!({"common_name": "app.test", "target_ids": targets}),
    )
    .await;
    let cert = c["id"].as_str().unwrap().to_owned();
    call(&admin, "renew_certificate", json!({"id": cert})).await;

    let _agent = Proc(
        Command::new(BIN)
            .args(["agent", "--server", &server.base, "--agent-id", &agent_id])
            .args(["--poll-seconds", "0.2", "--key-dir"])
            .arg(dir.path().join("agent-keys"))
            .arg("--deploy-roots")
            .arg(&root)
            .env("CERTCTL_API_KEY", reg["api_key"].as_str().unwrap())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn certctl agent"),
    );
    let jobs = until("every deployment job to end", async || {
        let jobs = call(
            &admin,
            "list_jobs",
            json!({"certificate_id": cert, "kind": "deployment"}),
        )
        .await;
        let data = jobs["data"].as_array()?.clone();
        (data.len() == cases.len()
            && data
                .iter()
                .all(|j| matches!(j["status"].as_str(), Some("completed" | "failed"))))
        .then_some(data)
    })
    .await;
    for (i, (t, (_, expected))) in targets.iter().zip(&cases).enumerate() {
        let job = jobs.iter().find(|j| j["target_id"] == t.as_str()).unwrap();
        assert_eq!(job["status"], "failed", "case {i}: {job}");
        let reason = job["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains(expected),
            "case {i}: '{reason}' should say '{expected}'"
        );
        assert!(!reason.contains("PAYLOAD-RAN"), "case {i}: {reason}");
        assert!(!reason.contains("TOPSECRET"), "case {i}: {reason}");
        // Refused before anything happened: no certificate written either.
        assert!(!root.join(format!("{i}.pem")).exists(), "case {i}");
    }
    assert!(!marker.exists(), "the payload ran on the agent host");
}
