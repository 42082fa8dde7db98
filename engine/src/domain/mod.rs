//! Domain types, named after the product and the RFCs.

pub mod profile;

pub use profile::{ExtendedKeyUsage, KeyAlgorithm, KeygenMode, Profile, SanRules};
