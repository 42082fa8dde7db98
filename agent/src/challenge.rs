//! ACME HTTP-01 challenges the control plane hands to this agent (issuers
//! with `http01_solver = agent`): put `/.well-known/acme-challenge/TOKEN`
//! in place, so the CA's request to the target host is answered, then take
//! it away once the order is done.
//!
//! The token comes from the CA through the control plane, so it is checked
//! like any hostile input: base64url characters only (RFC 8555 §8.3), so it
//! can never name another directory. The file is written atomically into
//! the target's `acme_webroot`, which must lie below a deploy root, through
//! real directories only. Without a web root, the agent answers on its own
//! listener (`--http01-listen`) instead.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use certctl_engine::issuers::acme_dns::{BuiltinHttp01, Http01Solver};

use crate::{DeployRoots, Failure};

/// Where the CA looks, below the web root.
const CHALLENGE_DIR: [&str; 2] = [".well-known", "acme-challenge"];
/// Longest token accepted (RFC 8555 asks for at least 128 bits; CAs send 43 characters).
const MAX_TOKEN: usize = 256;

/// What a challenge job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Present { key_authorization: String },
    Remove,
}

/// A checked challenge: a token that is safe as a file name, and the key
/// authorization that goes with it (`TOKEN.THUMBPRINT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub identifier: String,
    pub token: String,
    pub action: Action,
}

fn base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Challenge {
    /// Parses a challenge job's payload, refusing anything but base64url
    /// tokens and a key authorization made of the token and a thumbprint.
    pub fn from_payload(p: &serde_json::Value) -> Result<Self, Failure> {
        if p["challenge"].as_str() != Some("http-01") {
            return Err(Failure::new(format!(
                "this agent answers http-01 challenges, not {}",
                p["challenge"]
            )));
        }
        let token = p["token"].as_str().unwrap_or_default();
        if !base64url(token) || token.len() > MAX_TOKEN {
            return Err(Failure::new(
                "the challenge token is not base64url (RFC 8555 §8.3); refused",
            ));
        }
        let action = match p["action"].as_str() {
            Some("present") => {
                let ka = p["key_authorization"].as_str().unwrap_or_default();
                let thumbprint = ka
                    .strip_prefix(token)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .unwrap_or_default();
                if !base64url(thumbprint) || thumbprint.len() > MAX_TOKEN {
                    return Err(Failure::new(
                        "the key authorization is not TOKEN.THUMBPRINT in base64url; refused",
                    ));
                }
                Action::Present {
                    key_authorization: ka.to_owned(),
                }
            }
            Some("remove") => Action::Remove,
            other => {
                return Err(Failure::new(format!("unknown challenge action {other:?}")));
            }
        };
        Ok(Self {
            identifier: p["identifier"].as_str().unwrap_or_default().to_owned(),
            token: token.to_owned(),
            action,
        })
    }
}

/// `WEBROOT/.well-known/acme-challenge`, created (0755) when missing, checked
/// to be a real directory below a deploy root.
fn challenge_dir(roots: &DeployRoots, webroot: &Path, create: bool) -> Result<PathBuf, Failure> {
    let mut dir = roots.check_dir(webroot)?;
    for part in CHALLENGE_DIR {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Failure::new(format!(
                    "{} is not a directory (a link or a file); the agent does not write through it",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
            }
            Err(e) => {
                return Err(Failure::new(format!("{}: {e}", dir.display())));
            }
        }
    }
    Ok(dir)
}

/// Writes the key authorization to `WEBROOT/.well-known/acme-challenge/TOKEN`
/// atomically (a temporary file, fsync, rename), readable by the web server
/// (0644: the key authorization is public, the CA fetches it over plain HTTP).
pub fn place(
    roots: &DeployRoots,
    webroot: &Path,
    token: &str,
    key_authorization: &str,
) -> Result<PathBuf, Failure> {
    if !base64url(token) {
        return Err(Failure::new(
            "the challenge token is not base64url; refused",
        ));
    }
    let dir = challenge_dir(roots, webroot, true)?;
    let path = roots.check(&dir.join(token))?;
    let tmp = dir.join(format!(".{token}.tmp"));
    let res = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(key_authorization.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(format!("cannot write {}: {e}", path.display()))
    })?;
    Ok(path)
}

/// Deletes the token file; true when there was one.
pub fn remove(roots: &DeployRoots, webroot: &Path, token: &str) -> Result<bool, Failure> {
    if !base64url(token) {
        return Err(Failure::new(
            "the challenge token is not base64url; refused",
        ));
    }
    let dir = match challenge_dir(roots, webroot, false) {
        Ok(d) => d,
        // No challenge directory: nothing to take away.
        Err(_) if !webroot.join(CHALLENGE_DIR[0]).exists() => return Ok(false),
        Err(e) => return Err(e),
    };
    let path = roots.check(&dir.join(token))?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::new(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// The agent's own HTTP-01 responder (`--http01-listen`), for targets
/// without a web root: it binds on the first challenge and stays up.
pub struct Listener {
    solver: BuiltinHttp01,
    pub address: String,
}

impl Listener {
    pub fn new(address: &str) -> Self {
        Self {
            solver: BuiltinHttp01::new(address),
            address: address.to_owned(),
        }
    }

    pub async fn present(&self, c: &Challenge, key_authorization: &str) -> Result<(), Failure> {
        self.solver
            .present(&c.identifier, &c.token, key_authorization)
            .await
            .map_err(|e| Failure::new(e.message))
    }

    pub async fn remove(&self, c: &Challenge) {
        self.solver.cleanup(&c.identifier, &c.token).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    fn present(token: &str, ka: &str) -> serde_json::Value {
        json!({"challenge": "http-01", "action": "present", "identifier": "app.test",
               "token": token, "key_authorization": ka})
    }

    #[test]
    fn hostile_tokens_and_key_authorizations_are_refused() {
        let ok = format!("{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
        assert!(Challenge::from_payload(&present(TOKEN, &ok)).is_ok());
        for token in [
            "../../etc/passwd",
            "a/b",
            "..",
            "",
            "tok en",
            "tok%2F",
            "x\u{0}y",
        ] {
            let ka = format!("{token}.abc");
            let e = Challenge::from_payload(&present(token, &ka)).unwrap_err();
            assert!(e.reason.contains("base64url"), "{token:?}: {e}");
        }
        assert!(Challenge::from_payload(&present(&"a".repeat(300), "a.b")).is_err());
        for ka in [
            "other.thumb",
            &format!("{TOKEN}."),
            &format!("{TOKEN}.a/b"),
            TOKEN,
        ] {
            assert!(
                Challenge::from_payload(&present(TOKEN, ka)).is_err(),
                "{ka}"
            );
        }
        let mut dns = present(TOKEN, &ok);
        dns["challenge"] = "dns-01".into();
        assert!(Challenge::from_payload(&dns).is_err());
        assert_eq!(
            Challenge::from_payload(
                &json!({"challenge": "http-01", "action": "remove", "token": TOKEN})
            )
            .unwrap()
            .action,
            Action::Remove
        );
    }

    #[test]
    fn tokens_are_written_atomically_below_the_webroot_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        let roots = DeployRoots::new(vec![root.clone()]);
        let path = place(&roots, &root, TOKEN, "ka-1").unwrap();
        assert_eq!(
            path,
            root.canonicalize()
                .unwrap()
                .join(".well-known/acme-challenge")
                .join(TOKEN)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ka-1");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // Written again (a resumed job): replaced, no temporary file left.
        place(&roots, &root, TOKEN, "ka-2").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ka-2");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(remove(&roots, &root, TOKEN).unwrap());
        assert!(!path.exists());
        assert!(!remove(&roots, &root, TOKEN).unwrap(), "already gone");
        assert!(place(&roots, &root, "../x", "ka").is_err());
    }

    /// `GET path` on 127.0.0.1:port; the status line and the body.
    async fn get(port: u16, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.lines().next().unwrap_or_default().to_owned();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn the_listener_serves_only_the_tokens_it_holds() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let l = Listener::new(&format!("127.0.0.1:{port}"));
        let ka = format!("{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
        let c = Challenge::from_payload(&present(TOKEN, &ka)).unwrap();
        l.present(&c, &ka).await.unwrap();
        let path = format!("/.well-known/acme-challenge/{TOKEN}");
        let (status, body) = get(port, &path).await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, ka);
        let (status, _) = get(port, "/.well-known/acme-challenge/other").await;
        assert!(status.contains("404"), "{status}");
        l.remove(&c).await;
        let (status, _) = get(port, &path).await;
        assert!(status.contains("404"), "{status}");
    }

    #[test]
    fn webroots_outside_the_roots_or_through_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let roots = DeployRoots::new(vec![root.clone()]);
        let e = place(&roots, &outside, TOKEN, "ka").unwrap_err();
        assert!(e.reason.contains("outside"), "{e}");
        // A .well-known that is a link out of the roots.
        let site = root.join("site");
        std::fs::create_dir_all(&site).unwrap();
        std::os::unix::fs::symlink(&outside, site.join(".well-known")).unwrap();
        let e = place(&roots, &site, TOKEN, "ka").unwrap_err();
        assert!(e.reason.contains("link"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A missing webroot is not created.
        assert!(place(&roots, &root.join("missing"), TOKEN, "ka").is_err());
    }
}
