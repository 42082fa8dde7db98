//! Discovery on disk: walks the configured directories for PEM certificates
//! (bundles included) and DER certificates, and notes a private key file
//! next to each certificate by its path only.
//!
//! Bounded on purpose: a depth limit, a file-size limit and a cap on files
//! and certificates per run. Symbolic links are followed only to files that
//! stay inside the directory being walked, never to directories (no loops, no
//! escape from the tree). Files that are not certificates are skipped
//! quietly; an unreadable file is skipped with a debug line, never an error.
//! Only the certificate itself (re-encoded as one PEM block) leaves this
//! machine: key material in a combined file is never copied into a report.

use std::path::{Path, PathBuf};

use certctl_engine::ops::DiscoveryReportItem;
use walkdir::WalkDir;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Limits of one discovery run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Directory levels below each root.
    pub max_depth: usize,
    /// Larger files are not read (certificate bundles are far smaller).
    pub max_file_bytes: u64,
    /// Files looked at per run, over all roots.
    pub max_files: usize,
    /// Certificates reported per run.
    pub max_certificates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_file_bytes: 1024 * 1024,
            max_files: 200_000,
            max_certificates: 20_000,
        }
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Found {
    pub items: Vec<DiscoveryReportItem>,
    /// Files looked at.
    pub files: usize,
    /// Files that held no certificate (keys, configs, junk).
    pub skipped: usize,
    /// A limit stopped the walk early.
    pub truncated: bool,
}

/// Walks `roots` and returns every certificate found.
pub fn scan(roots: &[PathBuf], limits: &Limits) -> Found {
    let mut found = Found::default();
    for root in roots {
        let Ok(canonical_root) = root.canonicalize() else {
            tracing::warn!(dir = %root.display(), "discovery directory cannot be read; skipped");
            continue;
        };
        let walk = WalkDir::new(&canonical_root)
            .follow_links(false)
            .max_depth(limits.max_depth)
            .sort_by_file_name();
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(error = %e, "discovery: entry skipped");
                    continue;
                }
            };
            let path = entry.path();
            let file_type = entry.file_type();
            let real = if file_type.is_symlink() {
                // Followed only to a file inside this root.
                match path.canonicalize() {
                    Ok(p) if p.starts_with(&canonical_root) && p.is_file() => p,
                    _ => continue,
                }
            } else if file_type.is_file() {
                path.to_path_buf()
            } else {
                continue;
            };
            if found.files >= limits.max_files || found.items.len() >= limits.max_certificates {
                found.truncated = true;
                return found;
            }
            found.files += 1;
            let n = read_file(&real, path, limits, &mut found.items);
            if n == 0 {
                found.skipped += 1;
            }
        }
    }
    found.items.truncate(limits.max_certificates);
    found
}

/// Reads one file and appends its certificates; returns how many.
fn read_file(
    real: &Path,
    shown: &Path,
    limits: &Limits,
    out: &mut Vec<DiscoveryReportItem>,
) -> usize {
    match std::fs::metadata(real) {
        Ok(m) if m.len() <= limits.max_file_bytes => {}
        _ => return 0,
    }
    let bytes = match std::fs::read(real) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(path = %shown.display(), error = %e, "discovery: unreadable file skipped");
            return 0;
        }
    };
    let ders = certificates_in(&bytes);
    if ders.is_empty() {
        return 0;
    }
    let has_key_inside = contains(&bytes, b"PRIVATE KEY-----");
    let key_path = if has_key_inside {
        Some(shown.to_path_buf())
    } else {
        key_next_to(shown)
    };
    let n = ders.len();
    for der in ders {
        out.push(DiscoveryReportItem {
            path: shown.display().to_string(),
            cert_pem: pem_block(&der),
            key_path: key_path.as_ref().map(|k| k.display().to_string()),
        });
    }
    n
}

/// The DER of every certificate in a file: PEM `CERTIFICATE` blocks, or the
/// whole file when it is one DER certificate. Anything else gives none.
pub fn certificates_in(bytes: &[u8]) -> Vec<Vec<u8>> {
    if contains(bytes, b"-----BEGIN CERTIFICATE-----") {
        let mut ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            match pem {
                Ok(p) if p.label == "CERTIFICATE" => {
                    if is_certificate(&p.contents) {
                        ders.push(p.contents);
                    }
                }
                Ok(_) => {}
                // A damaged block ends the readable part of the file.
                Err(_) => break,
            }
        }
        ders
    } else if bytes.first() == Some(&0x30) && is_certificate(bytes) {
        vec![bytes.to_vec()]
    } else {
        Vec::new()
    }
}

fn is_certificate(der: &[u8]) -> bool {
    matches!(X509Certificate::from_der(der), Ok((rest, _)) if rest.is_empty())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pem_block(der: &[u8]) -> String {
    certctl_engine::pki::pem_certificate(der)
}

/// A private key file next to a certificate, by the usual naming habits:
/// `name.key`, `name-key.pem`, `name.key.pem`, `name-cert.pem` ->
/// `name-key.pem`, and Let's Encrypt's `privkey.pem` next to
/// `cert.pem`/`fullchain.pem`/`chain.pem`. Existence only: never opened.
pub fn key_next_to(cert: &Path) -> Option<PathBuf> {
    let dir = cert.parent()?;
    let file = cert.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".pem")
        .or_else(|| file.strip_suffix(".crt"))
        .or_else(|| file.strip_suffix(".cer"))
        .or_else(|| file.strip_suffix(".der"))
        .unwrap_or(file);
    let mut candidates = vec![
        format!("{stem}.key"),
        format!("{stem}-key.pem"),
        format!("{stem}_key.pem"),
        format!("{stem}.key.pem"),
    ];
    for (from, to) in [("cert", "key"), ("crt", "key")] {
        if stem.contains(from) {
            let k = stem.replacen(from, to, 1);
            candidates.push(format!("{k}.pem"));
            candidates.push(format!("{k}.key"));
        }
    }
    if matches!(stem, "cert" | "fullchain" | "chain") {
        candidates.push("privkey.pem".into());
    }
    candidates
        .into_iter()
        .map(|c| dir.join(c))
        .find(|p| p != cert && p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let p = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
        let c = p.self_signed(&key).expect("cert");
        (c.pem(), c.der().to_vec())
    }

    #[test]
    fn reads_pem_bundles_and_der_and_skips_junk() {
        let (a, a_der) = cert("a.test");
        let (b, _) = cert("b.test");
        assert_eq!(
            certificates_in(format!("# chain\n{a}{b}").as_bytes()).len(),
            2
        );
        assert_eq!(certificates_in(&a_der), vec![a_der.clone()]);
        let mut trailing = a_der.clone();
        trailing.push(0);
        assert!(certificates_in(&trailing).is_empty());
        assert!(certificates_in(b"").is_empty());
        assert!(certificates_in(b"\x30\x03\x01\x01\xff").is_empty());
        assert!(
            certificates_in(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_empty()
        );
    }

    #[test]
    fn walk_is_bounded_and_stays_in_the_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).expect("mkdir");
        let (a, _) = cert("a.test");
        let (out, _) = cert("out.test");
        std::fs::write(deep.join("site-cert.pem"), &a).expect("write");
        std::fs::write(deep.join("site-key.pem"), "key").expect("write");
        std::fs::write(dir.path().join("outside.pem"), &out).expect("write");
        std::os::unix::fs::symlink(dir.path().join("outside.pem"), root.join("escape.pem"))
            .expect("link");
        std::os::unix::fs::symlink(deep.join("site-cert.pem"), root.join("inside.pem"))
            .expect("link");
        std::os::unix::fs::symlink(&root, deep.join("loop")).expect("link");
        let found = scan(std::slice::from_ref(&root), &Limits::default());
        let paths: Vec<&str> = found.items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(found.items.len(), 2, "{paths:?}");
        assert!(paths.iter().any(|p| p.ends_with("a/b/c/site-cert.pem")));
        assert!(paths.iter().any(|p| p.ends_with("inside.pem")));
        let direct = found
            .items
            .iter()
            .find(|i| i.path.ends_with("site-cert.pem"))
            .expect("found");
        assert!(
            direct
                .key_path
                .as_deref()
                .unwrap_or_default()
                .ends_with("site-key.pem")
        );
        assert!(!direct.cert_pem.contains("PRIVATE"));
        // Depth limit: nothing below two levels.
        let shallow = scan(
            std::slice::from_ref(&root),
            &Limits {
                max_depth: 2,
                ..Limits::default()
            },
        );
        assert_eq!(shallow.items.len(), 1, "only the link at the top");
        // Size limit and a missing root are skipped, not errors.
        let tiny = scan(
            &[root.clone(), dir.path().join("missing")],
            &Limits {
                max_file_bytes: 10,
                ..Limits::default()
            },
        );
        assert!(tiny.items.is_empty());
    }

    #[test]
    fn key_files_by_their_usual_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for (cert, key) in [
            ("www.crt", "www.key"),
            ("api.pem", "api-key.pem"),
            ("fullchain.pem", "privkey.pem"),
            ("mail.cert.pem", "mail.key.pem"),
        ] {
            std::fs::write(d.join(cert), "c").expect("write");
            std::fs::write(d.join(key), "k").expect("write");
            assert_eq!(key_next_to(&d.join(cert)), Some(d.join(key)), "{cert}");
        }
        std::fs::write(d.join("lonely.pem"), "c").expect("write");
        assert_eq!(key_next_to(&d.join("lonely.pem")), None);
    }
}
