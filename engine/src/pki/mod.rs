//! PKI building blocks of the local CA: sealing keys at rest, parsing and
//! checking CSRs against profiles, server-side key generation, and the CA
//! itself (creation, sub-CA import, leaf issuance).
//!
//! Nothing here reads the clock, the environment or storage: callers pass
//! `now` and the sealed material, and persist what comes back.

pub mod ca;
mod cert;
pub mod check;
pub mod crl;
pub mod csr;
mod der;
pub mod keygen;
pub mod ocsp;
mod pem;
pub mod pkcs12;
pub mod pkcs7;
pub mod seal;

pub use ca::{
    CaMaterial, CertificateInfo, IssuedLeaf, LeafRequest, SigningCa, create_local_ca,
    fingerprint_sha256, import_sub_ca, parse_certificate_pem,
};
pub use check::{check_request, validate_dns_name};
pub use csr::{ParsedCsr, SubjectNames, parse_csr, parse_csr_der};
pub use keygen::{GeneratedKey, csr_for, generate_key};
pub use seal::MasterKey;
