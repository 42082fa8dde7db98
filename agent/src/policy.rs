//! What the agent may run: its execution policy. The programs a target
//! kind may run and the directories a server's configuration and pid files
//! may lie below come from this host's own configuration (`certctl agent
//! --allow-program`, `--config-roots`), with safe defaults per kind; a
//! target's settings, which an operator sets on the control plane, only
//! choose among them. A target naming anything else fails its job before
//! any file is written or any process started.

use std::path::{Component, Path, PathBuf};

use certctl_engine::domain::TargetKind;
use certctl_engine::domain::target_config::{check_path, kind_programs};

use crate::Failure;
use crate::paths::DeployRoots;

/// One `--allow-program KIND=PROGRAM`: a plain name (looked up on this
/// host's PATH) or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedProgram {
    pub kind: TargetKind,
    pub program: PathBuf,
}

impl AllowedProgram {
    /// Parses `KIND=PROGRAM`; only kinds whose connector runs a program.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, program) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not KIND=PROGRAM"))?;
        let kind = TargetKind::parse(kind.trim())
            .ok_or_else(|| format!("'{kind}' is not a target kind"))?;
        if kind_programs(kind).is_empty() {
            return Err(format!(
                "{} targets run no program; there is nothing to allow",
                kind.as_str()
            ));
        }
        let program = PathBuf::from(program.trim());
        if !is_plain_name(&program) && check_path(&program).is_err() {
            return Err(format!(
                "'{}' must be a program name or an absolute path without '.' or '..'",
                program.display()
            ));
        }
        Ok(Self { kind, program })
    }
}

/// The agent's execution policy.
#[derive(Debug, Clone)]
pub struct ExecPolicy {
    /// Programs allowed by flags; a kind named here runs only these, the
    /// others run their defaults ([`kind_programs`]).
    allowed: Vec<AllowedProgram>,
    config_roots: DeployRoots,
}

impl ExecPolicy {
    pub fn new(allowed: Vec<AllowedProgram>, config_roots: DeployRoots) -> Self {
        Self {
            allowed,
            config_roots,
        }
    }

    /// The programs targets of `kind` may run, in order of preference.
    pub fn programs(&self, kind: TargetKind) -> Vec<PathBuf> {
        let given: Vec<PathBuf> = self
            .allowed
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.program.clone())
            .collect();
        if given.is_empty() {
            kind_programs(kind).iter().map(PathBuf::from).collect()
        } else {
            given
        }
    }

    /// The program to run for a target of `kind` whose `config.binary` is
    /// `binary`: without one, the first allowed program installed here;
    /// with one, the allowed program it names (the same entry, the allowed
    /// absolute path with that file name, or the allowed name that PATH
    /// resolves to that absolute path). Anything else is refused.
    pub fn program(&self, kind: TargetKind, binary: Option<&Path>) -> Result<PathBuf, Failure> {
        let allowed = self.programs(kind);
        let Some(b) = binary else {
            return allowed
                .iter()
                .find(|p| installed(p).is_some())
                .or(allowed.first())
                .cloned()
                .ok_or_else(|| {
                    Failure::new(format!(
                        "this agent runs no program for {} targets",
                        kind.as_str()
                    ))
                });
        };
        let found = allowed.iter().find(|p| {
            *p == b
                || (is_plain_name(b) && p.is_absolute() && p.file_name() == Some(b.as_os_str()))
                || (b.is_absolute() && is_plain_name(p) && on_path(p).as_deref() == Some(b))
        });
        found.cloned().ok_or_else(|| {
            Failure::new(format!(
                "config.binary {b} is not a program this agent runs for {kind} targets (it runs {list}); \
                 to allow it, start the agent with --allow-program {kind}={b}",
                b = b.display(),
                kind = kind.as_str(),
                list = allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
        })
    }

    /// Checks that `path` (the target's `config.<field>`) is an existing
    /// regular file below a config root once symlinks are resolved;
    /// returns its real path, which is what the program is given.
    pub fn config_file(&self, field: &str, path: &Path) -> Result<PathBuf, Failure> {
        check_path(path).map_err(|e| Failure::new(format!("config.{field}: {e}")))?;
        let real = path.canonicalize().map_err(|e| {
            Failure::new(format!(
                "config.{field} {} is not usable: {e}",
                path.display()
            ))
        })?;
        if !self.config_roots.holds(&real) {
            return Err(Failure::new(format!(
                "config.{field} {} is outside the agent's config roots ({}); \
                 to allow it, add its directory to the agent's --config-roots",
                path.display(),
                self.config_roots.describe()
            )));
        }
        if !real.is_file() {
            return Err(Failure::new(format!(
                "config.{field} {} is not a regular file",
                path.display()
            )));
        }
        Ok(real)
    }
}

fn is_plain_name(p: &Path) -> bool {
    let mut c = p.components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
}

/// Where a program would be found: itself when absolute, else on PATH.
fn installed(p: &Path) -> Option<PathBuf> {
    if p.is_absolute() {
        p.is_file().then(|| p.to_path_buf())
    } else {
        on_path(p)
    }
}

/// The first `dir/name` on this process's PATH that is a file.
fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], roots: &[&Path]) -> ExecPolicy {
        ExecPolicy::new(
            allowed
                .iter()
                .map(|s| AllowedProgram::parse(s).unwrap())
                .collect(),
            DeployRoots::new(roots.iter().map(|r| r.to_path_buf()).collect()),
        )
    }

    #[test]
    fn defaults_are_the_kinds_programs_and_nothing_else() {
        let p = policy(&[], &[]);
        let nginx = TargetKind::Nginx;
        assert_eq!(p.program(nginx, None).unwrap(), PathBuf::from("nginx"));
        assert_eq!(
            p.program(nginx, Some(Path::new("nginx"))).unwrap(),
            PathBuf::from("nginx")
        );
        for bad in [
            "/bin/sh",
            "sh",
            "/tmp/x/nginx",
            "apache2ctl",
            "/usr/bin/env",
        ] {
            let e = p.program(nginx, Some(Path::new(bad))).unwrap_err();
            assert!(
                e.reason
                    .contains("is not a program this agent runs for nginx targets")
                    && e.reason.contains(&format!("--allow-program nginx={bad}")),
                "{bad}: {}",
                e.reason
            );
        }
        assert!(
            p.program(TargetKind::Apache, Some(Path::new("apachectl")))
                .is_ok()
        );
        assert!(p.program(TargetKind::Traefik, None).is_err());
    }

    #[test]
    fn flags_replace_a_kinds_programs() {
        let p = policy(&["nginx=/opt/nginx/sbin/nginx", "nginx=openresty"], &[]);
        let nginx = TargetKind::Nginx;
        assert_eq!(p.programs(TargetKind::Haproxy), [PathBuf::from("haproxy")]);
        // By its exact path, or by its file name.
        for b in ["/opt/nginx/sbin/nginx", "nginx"] {
            assert_eq!(
                p.program(nginx, Some(Path::new(b))).unwrap(),
                PathBuf::from("/opt/nginx/sbin/nginx"),
                "{b}"
            );
        }
        assert!(p.program(nginx, Some(Path::new("openresty"))).is_ok());
        assert!(
            p.program(nginx, Some(Path::new("/usr/sbin/nginx")))
                .is_err()
        );
    }

    #[test]
    fn an_absolute_path_is_the_allowed_name_only_where_path_finds_it() {
        let p = policy(&["haproxy=sh"], &[]);
        let sh = on_path(Path::new("sh")).expect("sh on PATH");
        assert_eq!(
            p.program(TargetKind::Haproxy, Some(&sh)).unwrap(),
            PathBuf::from("sh")
        );
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("sh");
        std::fs::write(&copy, b"").unwrap();
        assert!(p.program(TargetKind::Haproxy, Some(&copy)).is_err());
    }

    #[test]
    fn allow_program_flags_are_checked() {
        assert!(AllowedProgram::parse("nginx=/usr/sbin/nginx").is_ok());
        for bad in [
            "nginx",
            "web=/bin/sh",
            "traefik=/bin/sh",
            "nginx=../sh",
            "nginx=bin/nginx",
            "nginx=/usr/sbin/../../bin/sh",
        ] {
            assert!(AllowedProgram::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_files_lie_below_the_config_roots_through_real_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("nginx.conf"), b"").unwrap();
        std::fs::write(outside.join("shadow"), b"").unwrap();
        std::os::unix::fs::symlink(outside.join("shadow"), root.join("link.conf")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let p = policy(&[], &[&root]);
        let real = p
            .config_file("config_file", &root.join("nginx.conf"))
            .unwrap();
        assert_eq!(real, root.canonicalize().unwrap().join("nginx.conf"));
        for bad in [
            outside.join("shadow"),
            root.join("link.conf"),
            root.join("escape/shadow"),
            root.join("missing.conf"),
            root.clone(),
            PathBuf::from("relative.conf"),
        ] {
            let e = p.config_file("config_file", &bad).unwrap_err();
            assert!(e.reason.contains("config.config_file"), "{}", e.reason);
        }
        let e = p
            .config_file("pid_file", &outside.join("shadow"))
            .unwrap_err();
        assert!(
            e.reason.contains("outside the agent's config roots")
                && e.reason.contains("--config-roots"),
            "{}",
            e.reason
        );
    }
}
