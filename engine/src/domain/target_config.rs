//! The connector settings of a deployment target, per kind. An admin sets
//! them on the control plane (`save_target`); the agent reads them from its
//! work and derives every file it writes and every command it runs from them
//! and the target's kind, never from free text in a job. The agent checks the
//! paths again against its own deploy roots.

use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TargetKind;
use crate::error::{Error, Result};

/// Settings of one target. Which fields a kind needs is checked by
/// [`TargetConfig::parse`]; unknown fields are refused so typos show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Certificate file (leaf followed by the chain unless `chain_path` is set).
    /// NGINX, Apache, Caddy, Traefik.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// Private key file, written 0600. NGINX, Apache, Caddy, Traefik.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// Separate chain file (Apache `SSLCertificateChainFile`), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<PathBuf>,
    /// HAProxy: the combined PEM (leaf, chain, key), written 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem_path: Option<PathBuf>,
    /// Traefik: the file-provider dynamic configuration the agent writes
    /// (Traefik must watch its directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_config_path: Option<PathBuf>,
    /// The server's main configuration file (`nginx -c`, `apache2ctl -f`,
    /// `haproxy -f`, `caddy --config`); the packaged default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The server's program (`nginx`, `apache2ctl`, `haproxy`, `caddy`);
    /// looked up on PATH when not absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// HAProxy: the master's pid file; reload sends it SIGUSR2 (master-worker
    /// mode). Without it the agent runs `systemctl reload haproxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// Caddy: the admin endpoint for `caddy reload --address` (loopback only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<String>,
    /// Caddy: the config adapter (`caddyfile`) when the config is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// `host:port` the agent connects to after deploying, to check the served certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_endpoint: Option<String>,
    /// SNI name for the check; the certificate's common name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The web root the target serves plain HTTP (port 80) from: the agent
    /// writes ACME HTTP-01 tokens below it, into
    /// `.well-known/acme-challenge/` (ACME issuers with `http01_solver = agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_webroot: Option<PathBuf>,
    /// F5 BIG-IP / IIS: management host (connector not supported on this platform yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// F5 BIG-IP: partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// IIS: site name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
}

impl TargetConfig {
    /// Parses `config` for a target of `kind` and checks what is there:
    /// known fields, absolute normalized paths, loopback admin addresses.
    /// Whether everything a deployment needs is set is
    /// [`TargetConfig::require_complete`]'s job, so a target can be created
    /// first and completed later.
    pub fn parse(kind: TargetKind, config: &serde_json::Value) -> Result<Self> {
        let c: TargetConfig = match config {
            serde_json::Value::Null => TargetConfig::default(),
            v => serde_json::from_value(v.clone()).map_err(|e| {
                Error::invalid(format!("invalid {} target config: {e}", kind.as_str()))
            })?,
        };
        c.check_values(kind)?;
        Ok(c)
    }

    /// Fails naming the first setting a deployment to `kind` still needs.
    pub fn require_complete(&self, kind: TargetKind) -> Result<()> {
        let c = self;
        let need = |field: &str, v: &Option<PathBuf>| -> Result<()> {
            if v.is_none() {
                return Err(Error::invalid(format!(
                    "a {} target needs config.{field}",
                    kind.as_str()
                )));
            }
            Ok(())
        };
        match kind {
            TargetKind::Nginx | TargetKind::Apache | TargetKind::Caddy => {
                need("cert_path", &c.cert_path)?;
                need("key_path", &c.key_path)?;
            }
            TargetKind::Haproxy => need("pem_path", &c.pem_path)?,
            TargetKind::Traefik => {
                need("cert_path", &c.cert_path)?;
                need("key_path", &c.key_path)?;
                need("dynamic_config_path", &c.dynamic_config_path)?;
            }
            TargetKind::F5 | TargetKind::Iis => {}
        }
        Ok(())
    }

    fn check_values(&self, kind: TargetKind) -> Result<()> {
        let c = self;
        for (field, p) in [
            ("cert_path", &c.cert_path),
            ("key_path", &c.key_path),
            ("chain_path", &c.chain_path),
            ("pem_path", &c.pem_path),
            ("dynamic_config_path", &c.dynamic_config_path),
            ("config_file", &c.config_file),
            ("pid_file", &c.pid_file),
            ("acme_webroot", &c.acme_webroot),
        ] {
            if let Some(p) = p {
                check_path(p).map_err(|e| Error::invalid(format!("config.{field}: {e}")))?;
            }
        }
        if let Some(b) = &c.binary {
            check_binary(kind, b)?;
        }
        // The configuration file is an argument of the server's program,
        // and apachectl is a shell script that word-splits its arguments.
        if let Some(f) = &c.config_file {
            check_argument("config.config_file", f)?;
        }
        if let Some(a) = &c.admin_address {
            check_admin_address(a)?;
        }
        if let Some(a) = &c.adapter
            && (a.is_empty() || !a.chars().all(|ch| ch.is_ascii_alphanumeric()))
        {
            return Err(Error::invalid(
                "config.adapter must be a plain adapter name",
            ));
        }
        if let Some(e) = &c.verify_endpoint
            && e.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return Err(Error::invalid("config.verify_endpoint must be host:port"));
        }
        Ok(())
    }
}

/// The programs a kind's connector runs, by file name (the agent's
/// defaults, and the only names `config.binary` may have). Kinds that run
/// no program have none.
pub fn kind_programs(kind: TargetKind) -> &'static [&'static str] {
    match kind {
        TargetKind::Nginx => &["nginx"],
        // Debian names it apache2ctl; other systems apachectl.
        TargetKind::Apache => &["apache2ctl", "apachectl"],
        TargetKind::Haproxy => &["haproxy"],
        TargetKind::Caddy => &["caddy"],
        TargetKind::Traefik | TargetKind::F5 | TargetKind::Iis => &[],
    }
}

/// `binary` is the kind's program, by plain name or by an absolute,
/// normalized path ending in that name. Which exact program runs is still
/// the agent's choice: it runs only what its policy allows.
fn check_binary(kind: TargetKind, b: &Path) -> Result<()> {
    let names = kind_programs(kind);
    if names.is_empty() {
        return Err(Error::invalid(format!(
            "config.binary is not used by {} targets: they run no program",
            kind.as_str()
        )));
    }
    let plain_name =
        b.components().count() == 1 && matches!(b.components().next(), Some(Component::Normal(_)));
    if !plain_name {
        check_path(b).map_err(|_| {
            Error::invalid(format!(
                "config.binary {} must be a program name or an absolute path without '.' or '..'",
                b.display()
            ))
        })?;
    }
    check_argument("config.binary", b)?;
    let name = b.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !names.contains(&name) {
        return Err(Error::invalid(format!(
            "config.binary {} is not a {} program: it must be named {}",
            b.display(),
            kind.as_str(),
            names.join(" or ")
        )));
    }
    Ok(())
}

/// A value the agent passes as a program argument: printable characters
/// that no shell or wrapper script splits or expands, and never an option.
fn check_argument(field: &str, p: &Path) -> Result<()> {
    let text = p.to_str().unwrap_or_default();
    let plain = !text.is_empty()
        && !text.starts_with('-')
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "/._+-@,:=%".contains(ch));
    if !plain {
        return Err(Error::invalid(format!(
            "{field} {text:?} may hold only letters, digits and / . _ + - @ , : = %, and must not start with '-'"
        )));
    }
    Ok(())
}

/// A loopback `host:port`: it becomes the value of `caddy reload --address`.
fn check_admin_address(a: &str) -> Result<()> {
    let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
            && !port.is_empty()
            && port.chars().all(|ch| ch.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    });
    if !ok {
        return Err(Error::invalid(
            "config.admin_address must be a loopback host:port",
        ));
    }
    Ok(())
}

/// An absolute, normalized path: no `..`, no `.`, no empty parts.
pub fn check_path(p: &Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(Error::invalid(format!(
            "path {} must be absolute",
            p.display()
        )));
    }
    // `components()` folds a `.` inside the path away, so the text is
    // checked segment by segment as well.
    let dotted = p
        .to_str()
        .is_none_or(|t| t.split('/').any(|seg| seg == "." || seg == ".."));
    if dotted
        || p.components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(Error::invalid(format!(
            "path {} must not contain '..' or '.'",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_need_their_paths() {
        let ok = TargetConfig::parse(
            TargetKind::Nginx,
            &json!({"cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key"}),
        )
        .unwrap();
        assert!(ok.require_complete(TargetKind::Nginx).is_ok());
        assert!(ok.require_complete(TargetKind::Haproxy).is_err());
        assert_eq!(ok.cert_path.unwrap(), PathBuf::from("/etc/nginx/a.pem"));
        assert!(TargetConfig::parse(TargetKind::F5, &json!({"host": "bigip"})).is_ok());
        assert!(
            TargetConfig::parse(
                TargetKind::Nginx,
                &json!({"cert_path": "/a", "key_path": "/b", "reload": "rm -rf /"})
            )
            .is_err()
        );
    }

    #[test]
    fn the_acme_webroot_is_an_absolute_normalized_path() {
        let ok = TargetConfig::parse(TargetKind::Nginx, &json!({"acme_webroot": "/var/www/html"}))
            .unwrap();
        assert_eq!(ok.acme_webroot.unwrap(), PathBuf::from("/var/www/html"));
        for bad in ["/var/www/../../etc", "www", "/var/./www"] {
            assert!(
                TargetConfig::parse(TargetKind::Nginx, &json!({"acme_webroot": bad})).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn traversal_and_relative_paths_are_refused() {
        for bad in ["/etc/nginx/../shadow", "certs/a.pem", "/etc/./a"] {
            let r = TargetConfig::parse(
                TargetKind::Nginx,
                &json!({"cert_path": bad, "key_path": "/etc/nginx/a.key"}),
            );
            assert!(r.is_err(), "{bad}");
        }
        assert!(
            TargetConfig::parse(
                TargetKind::Caddy,
                &json!({"cert_path": "/a", "key_path": "/b", "admin_address": "10.0.0.1:2019"})
            )
            .is_err()
        );
    }
}
