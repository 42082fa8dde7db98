//! One connector per target kind behind one trait. Each turns the target's
//! settings (set by an admin on the control plane) and the certificate into
//! a [`Plan`]: which files, which validation, which reload. Programs and
//! arguments follow from the kind and the settings only, and only as far as
//! the agent's [`ExecPolicy`] allows: the program must be one it allows for
//! the kind and the configuration and pid files must lie below its config
//! roots, checked here, before any file is written or process started.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use certctl_engine::domain::{TargetConfig, TargetKind};
use zeroize::Zeroizing;

use crate::Failure;
use crate::deploy::{Cmd, Plan, PlannedFile, Reload};
use crate::policy::ExecPolicy;

/// What gets deployed: the leaf, its chain and the key (PEM).
pub struct Material {
    pub leaf_pem: String,
    pub chain_pem: String,
    pub key_pem: Zeroizing<String>,
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
}

impl Material {
    fn full_chain(&self) -> Vec<u8> {
        let mut s = self.leaf_pem.trim_end().to_owned();
        s.push('\n');
        if !self.chain_pem.trim().is_empty() {
            s.push_str(self.chain_pem.trim_end());
            s.push('\n');
        }
        s.into_bytes()
    }
}

/// A deployment target type.
pub trait Connector {
    /// The files, validation and reload for this material.
    fn plan(
        &self,
        config: &TargetConfig,
        m: &Material,
        policy: &ExecPolicy,
    ) -> Result<Plan, Failure>;
}

/// The connector for a kind.
pub fn for_kind(kind: TargetKind) -> Box<dyn Connector + Send + Sync> {
    match kind {
        TargetKind::Nginx => Box::new(NGINX),
        TargetKind::Apache => Box::new(APACHE),
        TargetKind::Haproxy => Box::new(Haproxy),
        TargetKind::Traefik => Box::new(Traefik),
        TargetKind::Caddy => Box::new(Caddy),
        TargetKind::F5 | TargetKind::Iis => Box::new(Unsupported(kind)),
    }
}

fn required<'a>(v: &'a Option<PathBuf>, field: &str) -> Result<&'a Path, Failure> {
    v.as_deref()
        .ok_or_else(|| Failure::new(format!("target config lacks {field}")))
}

fn cert_file(path: &Path, bytes: Vec<u8>) -> PlannedFile {
    PlannedFile {
        path: path.to_path_buf(),
        bytes: Zeroizing::new(bytes),
        new_mode: 0o644,
    }
}

fn key_file(path: &Path, m: &Material) -> PlannedFile {
    PlannedFile {
        path: path.to_path_buf(),
        bytes: Zeroizing::new(m.key_pem.as_bytes().to_vec()),
        new_mode: 0o600,
    }
}

/// The target's configuration file, checked against the policy (its real path).
fn config_file(config: &TargetConfig, policy: &ExecPolicy) -> Result<Option<PathBuf>, Failure> {
    config
        .config_file
        .as_deref()
        .map(|c| policy.config_file("config_file", c))
        .transpose()
}

/// Leaf plus chain in `cert_path` (or the chain apart in `chain_path`) and the key.
fn cert_key_files(config: &TargetConfig, m: &Material) -> Result<Vec<PlannedFile>, Failure> {
    let cert = required(&config.cert_path, "cert_path")?;
    let key = required(&config.key_path, "key_path")?;
    let mut files = Vec::new();
    match &config.chain_path {
        Some(chain) => {
            files.push(cert_file(cert, m.leaf_pem.clone().into_bytes()));
            files.push(cert_file(chain, m.chain_pem.clone().into_bytes()));
        }
        None => files.push(cert_file(cert, m.full_chain())),
    }
    files.push(key_file(key, m));
    Ok(files)
}

/// A server whose program names its configuration file after `flag`, and
/// validates (`-t`) and reloads with fixed arguments: NGINX and Apache.
struct ConfigFlagServer {
    kind: TargetKind,
    flag: &'static str,
    reload: &'static [&'static str],
}

const NGINX: ConfigFlagServer = ConfigFlagServer {
    kind: TargetKind::Nginx,
    flag: "-c",
    reload: &["-s", "reload"],
};

/// Without a binary, Apache's program is apache2ctl (Debian) or apachectl,
/// whichever is installed (the policy picks the first one found).
const APACHE: ConfigFlagServer = ConfigFlagServer {
    kind: TargetKind::Apache,
    flag: "-f",
    reload: &["-k", "graceful"],
};

impl Connector for ConfigFlagServer {
    fn plan(
        &self,
        config: &TargetConfig,
        m: &Material,
        policy: &ExecPolicy,
    ) -> Result<Plan, Failure> {
        let bin = policy.program(self.kind, config.binary.as_deref())?;
        let conf = config_file(config, policy)?;
        let mut base: Vec<&OsStr> = Vec::new();
        if let Some(c) = &conf {
            base.extend([OsStr::new(self.flag), c.as_os_str()]);
        }
        let with = |extra: &[&str]| {
            let mut a = base.clone();
            a.extend(extra.iter().map(|s| OsStr::new(*s)));
            Cmd::new(&bin, &a)
        };
        Ok(Plan {
            files: cert_key_files(config, m)?,
            validate: Some(with(&["-t"])),
            reload: Reload::Command(with(self.reload)),
        })
    }
}

struct Haproxy;

impl Connector for Haproxy {
    fn plan(
        &self,
        config: &TargetConfig,
        m: &Material,
        policy: &ExecPolicy,
    ) -> Result<Plan, Failure> {
        let pem = required(&config.pem_path, "pem_path")?;
        let mut combined = m.full_chain();
        combined.extend_from_slice(m.key_pem.trim_end().as_bytes());
        combined.push(b'\n');
        let bin = policy.program(TargetKind::Haproxy, config.binary.as_deref())?;
        // The packaged default is the agent's own choice, not a target's.
        let conf = config_file(config, policy)?
            .unwrap_or_else(|| PathBuf::from("/etc/haproxy/haproxy.cfg"));
        let pid_file = config
            .pid_file
            .as_deref()
            .map(|p| policy.config_file("pid_file", p))
            .transpose()?;
        Ok(Plan {
            files: vec![PlannedFile {
                path: pem.to_path_buf(),
                bytes: Zeroizing::new(combined),
                new_mode: 0o600,
            }],
            validate: Some(Cmd::new(
                &bin,
                &["-c".as_ref(), "-f".as_ref(), conf.as_os_str()],
            )),
            reload: match pid_file {
                Some(p) => Reload::SignalPidFile(p),
                None => Reload::Command(Cmd::new(
                    "systemctl",
                    &["reload".as_ref(), "haproxy".as_ref()],
                )),
            },
        })
    }
}

struct Traefik;

impl Connector for Traefik {
    fn plan(
        &self,
        config: &TargetConfig,
        m: &Material,
        _policy: &ExecPolicy,
    ) -> Result<Plan, Failure> {
        let cert = required(&config.cert_path, "cert_path")?;
        let key = required(&config.key_path, "key_path")?;
        let dynamic = required(&config.dynamic_config_path, "dynamic_config_path")?;
        let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
        // The fingerprint in the file makes every rotation a change Traefik
        // sees, even when the paths stay the same. The dynamic file is
        // written last, after the files it names.
        let yaml = format!(
            "# Written by the certctl agent; certificate {}\ntls:\n  certificates:\n    - certFile: {}\n      keyFile: {}\n  stores:\n    default:\n      defaultCertificate:\n        certFile: {}\n        keyFile: {}\n",
            m.fingerprint,
            quote(cert),
            quote(key),
            quote(cert),
            quote(key)
        );
        Ok(Plan {
            files: vec![
                cert_file(cert, m.full_chain()),
                key_file(key, m),
                cert_file(dynamic, yaml.into_bytes()),
            ],
            validate: None,
            reload: Reload::Watched,
        })
    }
}

struct Caddy;

impl Connector for Caddy {
    fn plan(
        &self,
        config: &TargetConfig,
        m: &Material,
        policy: &ExecPolicy,
    ) -> Result<Plan, Failure> {
        let bin = policy.program(TargetKind::Caddy, config.binary.as_deref())?;
        let conf =
            config_file(config, policy)?.unwrap_or_else(|| PathBuf::from("/etc/caddy/Caddyfile"));
        let mut base: Vec<&OsStr> = vec!["--config".as_ref(), conf.as_os_str()];
        if let Some(a) = &config.adapter {
            base.extend(["--adapter".as_ref(), OsStr::new(a.as_str())]);
        }
        let validate = {
            let mut a: Vec<&OsStr> = vec!["validate".as_ref()];
            a.extend(base.iter().copied());
            Cmd::new(&bin, &a)
        };
        let reload = {
            let mut a: Vec<&OsStr> = vec!["reload".as_ref()];
            a.extend(base.iter().copied());
            if let Some(addr) = &config.admin_address {
                a.extend(["--address".as_ref(), OsStr::new(addr.as_str())]);
            }
            // Same configuration text, new certificate files: force the reload.
            a.push("--force".as_ref());
            Cmd::new(&bin, &a)
        };
        Ok(Plan {
            files: cert_key_files(config, m)?,
            validate: Some(validate),
            reload: Reload::Command(reload),
        })
    }
}

struct Unsupported(TargetKind);

impl Connector for Unsupported {
    fn plan(
        &self,
        _config: &TargetConfig,
        _m: &Material,
        _policy: &ExecPolicy,
    ) -> Result<Plan, Failure> {
        Err(Failure::new(format!(
            "the {} connector is not supported on this platform yet",
            match self.0 {
                TargetKind::F5 => "F5 BIG-IP",
                TargetKind::Iis => "Microsoft IIS",
                other => other.as_str(),
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::DeployRoots;
    use crate::policy::AllowedProgram;

    fn material() -> Material {
        Material {
            leaf_pem: "LEAF\n".into(),
            chain_pem: "CHAIN\n".into(),
            key_pem: Zeroizing::new("KEY\n".into()),
            fingerprint: "ab".repeat(32),
        }
    }

    fn policy(roots: &[&Path]) -> ExecPolicy {
        ExecPolicy::new(
            Vec::new(),
            DeployRoots::new(roots.iter().map(|r| r.to_path_buf()).collect()),
        )
    }

    fn config(v: serde_json::Value) -> TargetConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn commands_follow_from_kind_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("test.conf");
        std::fs::write(&conf, b"").unwrap();
        let c = config(serde_json::json!({
            "cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key",
            "config_file": conf
        }));
        let p = for_kind(TargetKind::Nginx)
            .plan(&c, &material(), &policy(&[dir.path()]))
            .unwrap();
        let v = p.validate.unwrap();
        assert_eq!(v.program, PathBuf::from("nginx"));
        let real = conf.canonicalize().unwrap();
        assert_eq!(
            v.args,
            [OsStr::new("-c"), real.as_os_str(), OsStr::new("-t")].map(OsStr::to_os_string)
        );
        assert_eq!(&p.files[0].bytes[..], b"LEAF\nCHAIN\n");
        assert_eq!(p.files[1].new_mode, 0o600);
    }

    #[test]
    fn haproxy_gets_one_combined_private_pem() {
        let c = config(serde_json::json!({"pem_path": "/etc/haproxy/site.pem"}));
        let p = for_kind(TargetKind::Haproxy)
            .plan(&c, &material(), &policy(&[]))
            .unwrap();
        assert_eq!(&p.files[0].bytes[..], b"LEAF\nCHAIN\nKEY\n");
        assert_eq!(p.files[0].new_mode, 0o600);
    }

    /// A program or a file the policy does not allow yields no plan at all:
    /// nothing is written and nothing runs.
    #[test]
    fn the_policy_decides_programs_and_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, other) = (dir.path().join("etc"), dir.path().join("other"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        for f in [etc.join("a.conf"), other.join("b.conf"), etc.join("pid")] {
            std::fs::write(f, b"").unwrap();
        }
        let files = serde_json::json!({"cert_path": "/etc/x/a.pem", "key_path": "/etc/x/a.key"});
        let with = |extra: serde_json::Value| {
            let mut c = files.clone();
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            config(c)
        };
        let p = policy(&[&etc]);
        let refused = |kind: TargetKind, c: &TargetConfig, p: &ExecPolicy| {
            for_kind(kind).plan(c, &material(), p).err().unwrap().reason
        };
        for kind in [TargetKind::Nginx, TargetKind::Apache, TargetKind::Caddy] {
            let r = refused(kind, &with(serde_json::json!({"binary": "/bin/sh"})), &p);
            assert!(r.contains("--allow-program"), "{r}");
            let r = refused(
                kind,
                &with(serde_json::json!({"config_file": other.join("b.conf")})),
                &p,
            );
            assert!(r.contains("outside the agent's config roots"), "{r}");
        }
        let haproxy = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"pem_path": "/etc/x/a.pem"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            config(c)
        };
        let r = refused(
            TargetKind::Haproxy,
            &haproxy(serde_json::json!({"pid_file": other.join("b.conf")})),
            &p,
        );
        assert!(r.contains("config.pid_file"), "{r}");
        let ok = for_kind(TargetKind::Haproxy)
            .plan(
                &haproxy(serde_json::json!({"pid_file": etc.join("pid")})),
                &material(),
                &p,
            )
            .unwrap();
        assert!(matches!(ok.reload, Reload::SignalPidFile(_)));
        // The agent host allows another program: the target may name it.
        let opt = ExecPolicy::new(
            vec![AllowedProgram::parse("nginx=/opt/nginx/sbin/nginx").unwrap()],
            DeployRoots::new(vec![etc.clone()]),
        );
        let plan = for_kind(TargetKind::Nginx)
            .plan(
                &with(serde_json::json!({"binary": "/opt/nginx/sbin/nginx"})),
                &material(),
                &opt,
            )
            .unwrap();
        assert_eq!(
            plan.validate.unwrap().program,
            PathBuf::from("/opt/nginx/sbin/nginx")
        );
    }

    #[test]
    fn f5_and_iis_say_they_are_not_supported_here() {
        for k in [TargetKind::F5, TargetKind::Iis] {
            let err = for_kind(k)
                .plan(&TargetConfig::default(), &material(), &policy(&[]))
                .err()
                .unwrap();
            assert!(err.reason.contains("not supported on this platform yet"));
        }
    }
}
