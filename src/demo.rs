//! `serve --demo`: seeds a realistic inventory once, entirely through the
//! engine's operations (so every seeded fact has its audit event and passed
//! the same checks as a user's call).
//!
//! History is played forward in time: a second engine on the same store runs
//! with a manual clock set 150 days back and advanced step by step, so
//! certificates expire, near expiry and get revoked (with an approval) the
//! way they would have. Keys are made here and only CSRs reach the engine;
//! the keys are then dropped, since nothing will ever serve these
//! certificates. Nothing seeded points at a network address.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use certctl_engine::Engine;
use certctl_engine::clock::ManualClock;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, Principal};
use certctl_engine::ops::{self, ApprovalTicket, Outcome};
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::Store;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// Seeds the demo inventory unless the store already has certificates.
pub async fn seed(
    engine: &Arc<Engine>,
    store: &Store,
    config: EngineConfig,
    master: MasterKey,
) -> anyhow::Result<()> {
    let system = Principal::system("demo");
    let existing = completed(
        engine,
        &system,
        "list_certificates",
        json!({ "per_page": 1 }),
    )
    .await?;
    if existing["total"].as_i64().unwrap_or(0) > 0 || !is_empty(&existing["data"]) {
        tracing::info!("demo: the inventory is not empty; nothing seeded");
        return Ok(());
    }
    let now = engine.now();
    let clock = ManualClock::new(now - 150 * DAY);
    let past = Engine::start(store.clone(), Arc::new(clock.clone()), config, master)
        .await
        .context("demo: cannot start the seeding engine")?;
    let mut demo = Demo {
        system,
        approver: Principal::system("demo-approver"),
        certificates: 0,
    };
    let org = demo.organization(&past).await?;

    // Certificates from the demo CA, issued over the last 150 days.
    let history: [(i64, &str, &str, usize); 10] = [
        (150, "old-portal.example.com", "production", 0),
        (120, "intranet.example.com", "production", 1),
        (60, "staging-db.example.com", "staging", 2),
        (40, "mail.example.com", "production", 3),
        (30, "billing.example.com", "production", 1),
        (25, "legacy-api.example.com", "production", 0),
        (20, "compromised.example.com", "production", 2),
        (20, "decommissioned.example.com", "staging", 3),
        (10, "grafana.example.com", "staging", 0),
        (10, "vpn.example.com", "production", 2),
    ];
    let mut ids = Vec::new();
    for (days_ago, name, env, owner) in history {
        clock.set(now - days_ago * DAY);
        let id = demo
            .certificate(&past, &org, name, env, owner, &org.demo_ca, None)
            .await?;
        demo.issue(&past, &id, name).await?;
        ids.push(id);
    }
    // Two revocations, each requested by one principal and approved by another.
    for (days_ago, idx, reason) in [(5, 6, "keyCompromise"), (3, 7, "cessationOfOperation")] {
        clock.set(now - days_ago * DAY);
        demo.revoke(&past, &ids[idx], reason).await?;
    }

    // Fresh certificates from the local CA, issued now.
    let recent = [
        ("www.example.com", 0),
        ("api.example.com", 1),
        ("shop.example.com", 2),
        ("auth.example.com", 3),
    ];
    for (name, owner) in recent {
        let id = demo
            .certificate(engine, &org, name, "production", owner, "iss-local", None)
            .await?;
        demo.issue(engine, &id, name).await?;
    }
    // A certificate whose profile needs a second person: its issuance waits.
    let id = demo
        .certificate(
            engine,
            &org,
            "payments-gw.example.com",
            "production",
            1,
            "iss-local",
            Some(&org.regulated_profile),
        )
        .await?;
    let ticket = demo
        .request_issue(engine, &id, "payments-gw.example.com")
        .await?;
    println!(
        "demo: seeded {} certificates, {} agents, {} targets, {} policy rules and pending approval {}",
        demo.certificates,
        org.agents,
        org.targets.len(),
        org.policies,
        ticket.approval_id
    );
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    v.as_array().is_none_or(|a| a.is_empty())
}

/// Ids of what the organization step created.
struct Org {
    teams: Vec<String>,
    owners: Vec<String>,
    targets: Vec<String>,
    renewal_policy: String,
    regulated_profile: String,
    demo_ca: String,
    agents: usize,
    policies: usize,
}

struct Demo {
    system: Principal,
    approver: Principal,
    certificates: usize,
}

impl Demo {
    /// Teams, owners, agents, targets, policies, profiles and a second CA.
    async fn organization(&self, e: &Engine) -> anyhow::Result<Org> {
        let s = &self.system;
        let mut teams = Vec::new();
        for (name, description) in [
            ("Platform", "Edge, load balancers and shared services"),
            ("Payments", "Checkout and billing"),
            ("Identity", "Login, SSO and directory"),
        ] {
            let t = completed(
                e,
                s,
                "save_team",
                json!({ "name": name, "description": description }),
            )
            .await?;
            teams.push(id_of(&t)?);
        }
        let mut owners = Vec::new();
        for (name, email, team) in [
            ("Alice Martin", "alice@example.com", 0),
            ("Bob Chen", "bob@example.com", 1),
            ("Carol Diaz", "carol@example.com", 2),
            ("Dan Okafor", "dan@example.com", 0),
        ] {
            let o = completed(
                e,
                s,
                "save_owner",
                json!({ "name": name, "email": email, "team_id": teams[team] }),
            )
            .await?;
            owners.push(id_of(&o)?);
        }
        let rp = completed(
            e,
            s,
            "save_renewal_policy",
            json!({ "name": "standard (30 days before expiry)", "renew_before_days": 30 }),
        )
        .await?;
        let renewal_policy = id_of(&rp)?;

        let policies = [
            json!({ "name": "Only example.com names", "kind": "allowed_domains",
                    "params": { "domains": ["example.com", "*.example.com"] }, "severity": "high", "mode": "warn" }),
            json!({ "name": "At most 398 days", "kind": "max_lifetime",
                    "params": { "max_days": 398 }, "severity": "medium", "mode": "warn" }),
            json!({ "name": "Owner and environment required", "kind": "required_metadata",
                    "params": { "keys": ["owner_id", "environment"] }, "severity": "low", "mode": "warn" }),
        ];
        let policy_count = policies.len();
        for p in policies {
            completed(e, s, "save_policy", p).await?;
        }

        let mut agents = Vec::new();
        for (name, role) in [
            ("web-01", "web"),
            ("web-02", "web"),
            ("lb-01", "load-balancer"),
            ("api-01", "api"),
            ("mail-01", "mail"),
        ] {
            let a = completed(
                e,
                s,
                "register_agent",
                json!({ "name": name, "hostname": format!("{name}.example.com"),
                        "labels": { "role": role, "demo": true } }),
            )
            .await?;
            agents.push(
                a["agent"]["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("demo: register_agent returned no id"))?
                    .to_owned(),
            );
        }
        let mut targets = Vec::new();
        for (name, kind, agent, dir) in [
            ("web-01 nginx", "nginx", 0, "/etc/nginx/certs"),
            ("web-02 apache", "apache", 1, "/etc/apache2/certs"),
            ("lb-01 haproxy", "haproxy", 2, "/etc/haproxy/certs"),
            ("api-01 caddy", "caddy", 3, "/etc/caddy/certs"),
        ] {
            let t = completed(
                e,
                s,
                "save_target",
                json!({ "name": name, "kind": kind, "agent_id": agents[agent],
                        "config": demo_target_config(kind, dir) }),
            )
            .await?;
            targets.push(id_of(&t)?);
        }
        let profile = completed(
            e,
            s,
            "save_profile",
            json!({ "name": "regulated", "description": "Payment systems: every issuance needs an approver",
                    "allowed_key_types": ["ecdsa-p256", "ecdsa-p384"], "default_ttl_seconds": 30 * DAY,
                    "max_ttl_seconds": 90 * DAY, "requires_approval": true }),
        )
        .await?;
        let ca = completed(
            e,
            s,
            "create_issuer",
            json!({ "name": "Demo Internal CA", "kind": "local" }),
        )
        .await?;
        Ok(Org {
            teams,
            owners,
            targets,
            renewal_policy,
            regulated_profile: id_of(&profile)?,
            demo_ca: id_of(&ca)?,
            agents: agents.len(),
            policies: policy_count,
        })
    }

    /// Adds a certificate to the inventory (not issued yet).
    #[allow(clippy::too_many_arguments)] // the certificate's facts, spelled out
    async fn certificate(
        &mut self,
        e: &Engine,
        org: &Org,
        name: &str,
        environment: &str,
        owner: usize,
        issuer: &str,
        profile: Option<&str>,
    ) -> anyhow::Result<String> {
        let owner_team = [0, 1, 2, 0][owner % 4];
        let n = self.certificates;
        let mut input = json!({
            "common_name": name,
            "environment": environment,
            "issuer_id": issuer,
            "owner_id": org.owners[owner % org.owners.len()],
            "team_id": org.teams[owner_team],
            "renewal_policy_id": org.renewal_policy,
            "labels": { "demo": true },
            "target_ids": [org.targets[n % org.targets.len()]],
        });
        if let Some(p) = profile {
            input["profile_id"] = p.into();
        }
        let c = completed(e, &self.system, "create_certificate", input).await?;
        self.certificates += 1;
        id_of(&c)
    }

    fn csr(&self, name: &str) -> anyhow::Result<String> {
        // A mix of key types, as a real fleet has.
        let alg = match self.certificates % 3 {
            0 => KeyAlgorithm::EcdsaP256,
            1 => KeyAlgorithm::EcdsaP384,
            _ => KeyAlgorithm::Rsa2048,
        };
        let key = pki::generate_key(alg)?;
        let names = SubjectNames {
            dns: vec![name.to_owned()],
            ..SubjectNames::default()
        };
        Ok(pki::csr_for(&key, name, &names)?)
    }

    async fn issue(&self, e: &Engine, id: &str, name: &str) -> anyhow::Result<()> {
        let input = json!({ "id": id, "csr_pem": self.csr(name)? });
        completed(e, &self.system, "issue_certificate", input).await?;
        Ok(())
    }

    async fn request_issue(
        &self,
        e: &Engine,
        id: &str,
        name: &str,
    ) -> anyhow::Result<ApprovalTicket> {
        let input = json!({ "id": id, "csr_pem": self.csr(name)? });
        match call(e, &self.system, "issue_certificate", input).await? {
            Outcome::ApprovalRequired(t) => Ok(t),
            Outcome::Completed { .. } => Err(anyhow!(
                "demo: issuing under the regulated profile did not stop at the approval gate"
            )),
        }
    }

    /// Revokes through the gate: requested by the demo, approved by another principal.
    async fn revoke(&self, e: &Engine, id: &str, reason: &str) -> anyhow::Result<()> {
        let input = json!({ "id": id, "reason": reason });
        match call(e, &self.system, "revoke_certificate", input).await? {
            Outcome::Completed { .. } => Ok(()),
            Outcome::ApprovalRequired(t) => {
                completed(
                    e,
                    &self.approver,
                    "approve_request",
                    json!({ "approval_id": t.approval_id, "note": "demo: confirmed with the owner" }),
                )
                .await?;
                Ok(())
            }
        }
    }
}

async fn call(
    e: &Engine,
    who: &Principal,
    name: &str,
    input: Value,
) -> anyhow::Result<Outcome<Value>> {
    let op = ops::find(name).ok_or_else(|| anyhow!("demo: operation {name} is missing"))?;
    op.call_json(e, who, input)
        .await
        .with_context(|| format!("demo: {name} failed"))
}

async fn completed(e: &Engine, who: &Principal, name: &str, input: Value) -> anyhow::Result<Value> {
    match call(e, who, name, input).await? {
        Outcome::Completed { result } => Ok(result),
        Outcome::ApprovalRequired(t) => Err(anyhow!(
            "demo: {name} unexpectedly waits for approval {}",
            t.approval_id
        )),
    }
}

fn id_of(v: &Value) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("demo: the operation returned no id"))
}

/// Connector settings of a demo target (paths only: reload commands follow
/// from the kind, never from free text).
fn demo_target_config(kind: &str, dir: &str) -> serde_json::Value {
    if kind == "haproxy" {
        json!({ "pem_path": format!("{dir}/site.pem") })
    } else {
        json!({ "cert_path": format!("{dir}/site.crt"), "key_path": format!("{dir}/site.key") })
    }
}
