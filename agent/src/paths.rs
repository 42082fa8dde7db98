//! Where the agent may write: only below its deploy roots, through real
//! directories, onto regular files (never through a symlink), whatever the
//! control plane's target says.

use std::path::{Path, PathBuf};

use crate::Failure;

/// The directories deployments may write below.
#[derive(Debug, Clone)]
pub struct DeployRoots(Vec<PathBuf>);

/// Where servers keep their certificates on common systems.
pub const DEFAULT_ROOTS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/etc/nginx",
    "/etc/apache2",
    "/etc/httpd",
    "/etc/haproxy",
    "/etc/traefik",
    "/etc/caddy",
];

impl DeployRoots {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self(roots)
    }

    pub fn defaults() -> Self {
        Self(DEFAULT_ROOTS.iter().map(PathBuf::from).collect())
    }

    /// Whether the real (symlink-free) path `real` lies below a root.
    pub fn holds(&self, real: &Path) -> bool {
        self.0
            .iter()
            .any(|root| root.canonicalize().is_ok_and(|r| real.starts_with(&r)))
    }

    /// The roots, for messages.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks that `dir` is an existing directory below a root once
    /// symlinks are resolved; returns its real path.
    pub fn check_dir(&self, dir: &Path) -> Result<PathBuf, Failure> {
        certctl_engine::domain::target_config::check_path(dir)
            .map_err(|e| Failure::new(e.to_string()))?;
        let real = dir
            .canonicalize()
            .map_err(|e| Failure::new(format!("directory {} is not usable: {e}", dir.display())))?;
        if !real.is_dir() {
            return Err(Failure::new(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        if !self
            .0
            .iter()
            .any(|root| root.canonicalize().is_ok_and(|r| real.starts_with(&r)))
        {
            return Err(Failure::new(format!(
                "{} is outside the agent's deploy roots ({})",
                dir.display(),
                self.0
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(real)
    }

    /// Checks that `path` is a file the agent may replace: absolute and
    /// normalized, its parent a real directory below a root once symlinks
    /// are resolved, and the path itself not a symlink or a directory.
    pub fn check(&self, path: &Path) -> Result<PathBuf, Failure> {
        certctl_engine::domain::target_config::check_path(path)
            .map_err(|e| Failure::new(e.to_string()))?;
        let parent = path
            .parent()
            .ok_or_else(|| Failure::new(format!("{} has no directory", path.display())))?;
        let name = path
            .file_name()
            .ok_or_else(|| Failure::new(format!("{} has no file name", path.display())))?;
        let real_parent = parent.canonicalize().map_err(|e| {
            Failure::new(format!("directory {} is not usable: {e}", parent.display()))
        })?;
        let inside = self.0.iter().any(|root| {
            root.canonicalize()
                .is_ok_and(|r| real_parent.starts_with(&r))
        });
        if !inside {
            return Err(Failure::new(format!(
                "{} is outside the agent's deploy roots ({})",
                path.display(),
                self.0
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let real = real_parent.join(name);
        match std::fs::symlink_metadata(&real) {
            Ok(m) if m.file_type().is_symlink() => Err(Failure::new(format!(
                "{} is a symbolic link; the agent does not write through links",
                path.display()
            ))),
            Ok(m) if !m.is_file() => Err(Failure::new(format!(
                "{} exists and is not a regular file",
                path.display()
            ))),
            _ => Ok(real),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_below_roots_and_never_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("x"), root.join("link.pem")).unwrap();
        let roots = DeployRoots::new(vec![root.clone()]);
        assert!(roots.check(&root.join("sub/a.pem")).is_ok());
        assert!(roots.check(&outside.join("a.pem")).is_err());
        assert!(
            roots.check(&root.join("escape/a.pem")).is_err(),
            "symlinked directory"
        );
        assert!(
            roots.check(&root.join("link.pem")).is_err(),
            "symlinked file"
        );
        assert!(roots.check(&root.join("sub/../../outside/a.pem")).is_err());
        assert!(roots.check(&root.join("sub")).is_err(), "a directory");
        assert!(roots.check(&root.join("missing/a.pem")).is_err());
    }
}
