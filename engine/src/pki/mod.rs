//! PKI building blocks (placeholder until the pki module lands).
