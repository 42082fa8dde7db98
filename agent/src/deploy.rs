//! Writing files the way every connector needs: atomically, keeping the
//! owner and mode of the file replaced, skipping when what is there already
//! has the same SHA-256, validating before reloading, and putting the
//! previous files back when validation or reload fails.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::Failure;
use crate::paths::DeployRoots;

/// Longest a validation or reload command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Most command output kept in a job's reason.
const MAX_OUTPUT: usize = 4000;

/// One file to install.
pub struct PlannedFile {
    pub path: PathBuf,
    pub bytes: Zeroizing<Vec<u8>>,
    /// Mode of a file created new (an existing file keeps its mode).
    pub new_mode: u32,
}

/// A program with its arguments; never a shell line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>, args: &[&std::ffi::OsStr]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| a.to_os_string()).collect(),
        }
    }

    fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs the command; Ok(output) on exit 0, Err(reason with output) otherwise.
    pub async fn run(&self) -> Result<String, Failure> {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, c.output()).await {
            Err(_) => {
                return Err(Failure::new(format!(
                    "`{}` did not finish within {} s",
                    self.display(),
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::new(format!(
                    "`{}` cannot run: {} is not installed (not found)",
                    self.display(),
                    self.program.display()
                )));
            }
            Ok(Err(e)) => {
                return Err(Failure::new(format!(
                    "`{}` cannot run: {e}",
                    self.display()
                )));
            }
            Ok(Ok(o)) => o,
        };
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let text = clip(text.trim());
        if out.status.success() {
            Ok(text)
        } else {
            Err(Failure::new(format!(
                "`{}` failed ({}): {text}",
                self.display(),
                out.status
            )))
        }
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// How a reload happens.
#[derive(Debug, Clone)]
pub enum Reload {
    /// Run this command.
    Command(Cmd),
    /// Send SIGUSR2 to the pid in this file (HAProxy master-worker).
    SignalPidFile(PathBuf),
    /// The server watches its files (Traefik).
    Watched,
}

impl Reload {
    async fn run(&self) -> Result<(), Failure> {
        match self {
            Reload::Command(c) => c.run().await.map(|_| ()),
            Reload::SignalPidFile(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Failure::new(format!("cannot read pid file {}: {e}", p.display()))
                })?;
                // 0 would signal the agent's own process group, 1 init.
                let pid: u32 =
                    text.trim()
                        .parse()
                        .ok()
                        .filter(|pid| *pid > 1)
                        .ok_or_else(|| {
                            Failure::new(format!("pid file {} holds no server pid", p.display()))
                        })?;
                Cmd::new("kill", &["-USR2".as_ref(), pid.to_string().as_ref()])
                    .run()
                    .await
                    .map(|_| ())
            }
            Reload::Watched => Ok(()),
        }
    }
}

/// Everything a connector asks for.
pub struct Plan {
    pub files: Vec<PlannedFile>,
    pub validate: Option<Cmd>,
    pub reload: Reload,
}

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    /// The files already had these contents: nothing written, no reload.
    Unchanged,
    /// Files replaced, validated and reloaded.
    Replaced { validation_output: String },
}

/// The previous state of one file.
struct Backup {
    path: PathBuf,
    /// None: the file did not exist.
    old: Option<(Zeroizing<Vec<u8>>, std::fs::Metadata)>,
}

pub async fn apply(plan: Plan, roots: &DeployRoots) -> Result<Deployed, Failure> {
    let mut checked = Vec::new();
    for f in &plan.files {
        checked.push(roots.check(&f.path)?);
    }
    let unchanged = plan
        .files
        .iter()
        .zip(&checked)
        .all(|(f, p)| std::fs::read(p).is_ok_and(|old| sha256(&old) == sha256(&f.bytes)));
    if unchanged {
        return Ok(Deployed::Unchanged);
    }
    let mut backups = Vec::new();
    for p in &checked {
        let old = match std::fs::read(p) {
            Ok(b) => {
                let meta = std::fs::metadata(p)
                    .map_err(|e| Failure::new(format!("cannot stat {}: {e}", p.display())))?;
                Some((Zeroizing::new(b), meta))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Failure::new(format!("cannot read {}: {e}", p.display()))),
        };
        backups.push(Backup {
            path: p.clone(),
            old,
        });
    }
    for (f, b) in plan.files.iter().zip(&backups) {
        let keep = b.old.as_ref().map(|(_, m)| m);
        if let Err(e) = write_atomic(&b.path, &f.bytes, f.new_mode, keep) {
            restore(&backups);
            return Err(e);
        }
    }
    let validation_output = match &plan.validate {
        Some(cmd) => match cmd.run().await {
            Ok(out) => out,
            Err(e) => {
                restore(&backups);
                return Err(Failure::new(format!(
                    "validation failed, previous files restored: {}",
                    e.reason
                )));
            }
        },
        None => String::new(),
    };
    if let Err(e) = plan.reload.run().await {
        restore(&backups);
        // Bring the server back to the files it had; its own reload error is the reason.
        let again = plan.reload.run().await.err();
        return Err(Failure::new(format!(
            "reload failed, previous files restored{}: {}",
            if again.is_some() {
                " (reloading them failed too)"
            } else {
                ""
            },
            e.reason
        )));
    }
    Ok(Deployed::Replaced { validation_output })
}

fn restore(backups: &[Backup]) {
    for b in backups {
        let res = match &b.old {
            Some((bytes, meta)) => write_atomic(&b.path, bytes, meta.mode() & 0o7777, Some(meta)),
            None => std::fs::remove_file(&b.path)
                .map_err(|e| Failure::new(format!("cannot remove {}: {e}", b.path.display()))),
        };
        if let Err(e) = res {
            tracing::error!(path = %b.path.display(), error = %e.reason, "rollback could not restore a file");
        }
    }
}

/// Temporary file next to `path`, same owner and mode as the file it
/// replaces (or `new_mode`), fsync, rename over it.
fn write_atomic(
    path: &Path,
    bytes: &[u8],
    new_mode: u32,
    keep: Option<&std::fs::Metadata>,
) -> Result<(), Failure> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.certctl-tmp"));
    let mode = keep.map(|m| m.mode() & 0o7777).unwrap_or(new_mode);
    let res = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(m) = keep {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(format!("cannot write {}: {e}", path.display()))
    })
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, text: &str, mode: u32) -> PlannedFile {
        PlannedFile {
            path: path.to_path_buf(),
            bytes: Zeroizing::new(text.as_bytes().to_vec()),
            new_mode: mode,
        }
    }

    fn sh(script: &str) -> Cmd {
        Cmd::new("sh", &["-c".as_ref(), script.as_ref()])
    }

    #[tokio::test]
    async fn writes_skips_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let roots = DeployRoots::new(vec![dir.path().to_path_buf()]);
        let cert = dir.path().join("site.pem");
        let key = dir.path().join("site.key");
        let plan = |c: &str, validate: &str| Plan {
            files: vec![file(&cert, c, 0o644), file(&key, "key", 0o600)],
            validate: Some(sh(validate)),
            reload: Reload::Watched,
        };
        let r = apply(plan("one", "true"), &roots).await.unwrap();
        assert!(matches!(r, Deployed::Replaced { .. }));
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        // An admin loosened the cert's mode: a new deployment keeps it.
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            apply(plan("one", "exit 1"), &roots).await.unwrap(),
            Deployed::Unchanged
        );
        let err = apply(
            plan("two", "echo 'emerg: bad directive' >&2; exit 1"),
            &roots,
        )
        .await
        .unwrap_err();
        assert!(err.reason.contains("validation failed"), "{}", err.reason);
        assert!(err.reason.contains("bad directive"), "{}", err.reason);
        assert_eq!(
            std::fs::read_to_string(&cert).unwrap(),
            "one",
            "rolled back"
        );
        apply(plan("three", "true"), &roots).await.unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "three");
        assert_eq!(std::fs::metadata(&cert).unwrap().mode() & 0o777, 0o640);
    }

    #[tokio::test]
    async fn reload_failure_restores_and_new_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let roots = DeployRoots::new(vec![dir.path().to_path_buf()]);
        let cert = dir.path().join("new.pem");
        let plan = Plan {
            files: vec![file(&cert, "x", 0o644)],
            validate: None,
            reload: Reload::Command(Cmd::new("/nonexistent/nginx", &[])),
        };
        let err = apply(plan, &roots).await.unwrap_err();
        assert!(err.reason.contains("not installed"), "{}", err.reason);
        assert!(!cert.exists());
    }
}
