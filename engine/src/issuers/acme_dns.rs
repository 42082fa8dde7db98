//! ACME DNS-01 providers.
