//! The key directory: private keys (0600, named by the SHA-256 of their
//! public key, so a certificate finds its key) and one small state file per
//! job, so a restarted agent resumes a job with the key it already made
//! instead of making a second one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use certctl_engine::domain::KeyAlgorithm;
use certctl_engine::pki::GeneratedKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Failure;

/// What the agent remembers about one job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// SHA-256 (hex) of the public key generated for this job's CSR.
    pub key_id: Option<String>,
    pub algorithm: Option<KeyAlgorithm>,
    /// The CSR was accepted and this version issued.
    pub version_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KeyDir {
    root: PathBuf,
}

impl KeyDir {
    /// Opens (and creates, 0700) the key directory.
    pub fn open(root: &Path) -> Result<Self, Failure> {
        for d in [root.to_path_buf(), root.join("keys"), root.join("jobs")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Failure::new(format!("cannot restrict {}: {e}", d.display())))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn job_path(&self, job_id: &str) -> Result<PathBuf, Failure> {
        if job_id.is_empty()
            || job_id.len() > 100
            || !job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Failure::new(format!("malformed job id '{job_id}'")));
        }
        Ok(self.root.join("jobs").join(format!("{job_id}.json")))
    }

    pub fn job_state(&self, job_id: &str) -> Result<JobState, Failure> {
        let p = self.job_path(job_id)?;
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Failure::new(format!("job state {} is corrupt: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobState::default()),
            Err(e) => Err(Failure::new(format!("cannot read {}: {e}", p.display()))),
        }
    }

    pub fn save_job_state(&self, job_id: &str, s: &JobState) -> Result<(), Failure> {
        let p = self.job_path(job_id)?;
        let bytes = serde_json::to_vec_pretty(s).map_err(|e| Failure::new(e.to_string()))?;
        write_private(&p, &bytes)
    }

    /// Stores a new key; returns its id (SHA-256 of its SPKI).
    pub fn store_key(&self, key: &GeneratedKey) -> Result<String, Failure> {
        let id = key_id(&key.spki_der);
        write_private(&self.key_path(&id), key.pkcs8_pem.as_bytes())?;
        Ok(id)
    }

    pub fn key_path(&self, id: &str) -> PathBuf {
        self.root.join("keys").join(format!("{id}.key"))
    }

    /// The stored key with this id, if any.
    pub fn load_key(
        &self,
        id: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<Option<GeneratedKey>, Failure> {
        let p = self.key_path(id);
        let pem = match std::fs::read_to_string(&p) {
            Ok(s) => Zeroizing::new(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Failure::new(format!("cannot read {}: {e}", p.display()))),
        };
        let pair = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| Failure::new(format!("key {} is unreadable: {e}", p.display())))?;
        Ok(Some(GeneratedKey {
            algorithm,
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&pair),
            pkcs8_pem: pem,
        }))
    }

    /// The PEM of the key whose public key is `spki_der`.
    pub fn key_pem_for(&self, spki_der: &[u8]) -> Result<Option<Zeroizing<String>>, Failure> {
        let p = self.key_path(&key_id(spki_der));
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(Zeroizing::new(s))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::new(format!("cannot read {}: {e}", p.display()))),
        }
    }
}

pub fn key_id(spki_der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        spki_der,
    ))
}

/// Writes a 0600 file atomically (temporary file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    let res = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(format!("cannot write {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_found_by_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let kd = KeyDir::open(dir.path()).unwrap();
        let key = certctl_engine::pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let id = kd.store_key(&key).unwrap();
        let mode = std::fs::metadata(kd.key_path(&id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = kd.load_key(&id, KeyAlgorithm::EcdsaP256).unwrap().unwrap();
        assert_eq!(again.spki_der, key.spki_der);
        assert!(kd.key_pem_for(&key.spki_der).unwrap().is_some());
        assert!(kd.key_pem_for(b"other").unwrap().is_none());
    }

    #[test]
    fn job_state_survives_a_restart_and_ids_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let kd = KeyDir::open(dir.path()).unwrap();
        assert_eq!(kd.job_state("job-1").unwrap(), JobState::default());
        let s = JobState {
            key_id: Some("ab".into()),
            algorithm: Some(KeyAlgorithm::Ed25519),
            version_id: None,
        };
        kd.save_job_state("job-1", &s).unwrap();
        let reopened = KeyDir::open(dir.path()).unwrap();
        assert_eq!(reopened.job_state("job-1").unwrap(), s);
        assert!(kd.job_state("../../etc/passwd").is_err());
    }
}
