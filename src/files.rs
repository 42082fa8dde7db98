//! Secret files in the data dir (`master.key`, `admin.key`): created with
//! mode 0600 and published atomically, so a reader never sees half a file
//! and two processes starting at once agree on one key.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// What [`write_once`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// This call created the file.
    Created,
    /// Another process created it first; this is its content.
    Existing(String),
}

/// Creates `dir` (and parents) if needed; a directory this call creates is
/// made private (0700).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes `contents` to a fresh private temporary file next to `final_path`.
fn write_temp(final_path: &Path, contents: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let name = final_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    loop {
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        match options.open(&tmp) {
            Ok(mut f) => {
                let written = f
                    .write_all(contents.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all());
                if let Err(e) = written {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok(tmp);
            }
            // A leftover from a crashed process with the same pid: next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Publishes `contents` at `path` unless the file exists: the first writer
/// wins (a hard link cannot replace an existing name), later ones read
/// what the winner wrote.
pub fn write_once(path: &Path, contents: &str) -> io::Result<Published> {
    let tmp = write_temp(path, contents)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Published::Created),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(Published::Existing(read_secret(path)?))
        }
        Err(e) => Err(e),
    }
}

/// Publishes `contents` at `path`, atomically replacing any old file.
/// Returns whether an old file was replaced.
pub fn replace(path: &Path, contents: &str) -> io::Result<bool> {
    let existed = path.exists();
    let tmp = write_temp(path, contents)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(existed)
}

/// Reads a secret file, without surrounding whitespace.
pub fn read_secret(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_writer_wins_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert_eq!(write_once(&path, "first").unwrap(), Published::Created);
        assert_eq!(
            write_once(&path, "second").unwrap(),
            Published::Existing("first".into())
        );
        #[cfg(unix)]
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn replace_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        assert!(!replace(&path, "a").unwrap());
        assert!(replace(&path, "b").unwrap());
        assert_eq!(read_secret(&path).unwrap(), "b");
    }

    #[test]
    fn racing_writers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let results: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(
                        move || match write_once(path, &format!("key-{i}")).unwrap() {
                            Published::Created => format!("key-{i}"),
                            Published::Existing(k) => k,
                        },
                    )
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        assert_eq!(read_secret(&path).unwrap(), results[0]);
    }
}
