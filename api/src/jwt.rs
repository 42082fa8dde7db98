//! JWT bearer authentication (`CERTCTL_AUTH_TYPE=jwt`): tokens from an
//! identity provider, signed with HS256 (a shared secret) or RS256 (the
//! provider's public key), with the issuer and audience checked and `exp`
//! required. The token's claims name the role:
//!
//! ```json
//! {"sub": "alice", "role": "operator", "iss": "...", "aud": "certctl", "exp": 1790000000}
//! ```
//!
//! `role` is one of viewer, operator, approver, admin, agent (an agent token
//! also carries `agent_id`). The principal id is `jwt:<sub>`.

use certctl_engine::domain::{Principal, Role};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The key a JWT is checked against.
pub enum JwtKey {
    /// HS256 with a shared secret (at least 32 bytes).
    Hs256(Vec<u8>),
    /// RS256 with the provider's public key (PEM).
    Rs256Pem(Vec<u8>),
}

/// Checks tokens and turns their claims into principals.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
}

impl JwtVerifier {
    /// A verifier for tokens from `issuer` meant for `audience`.
    pub fn new(key: JwtKey, issuer: &str, audience: &str) -> Result<Self, String> {
        if issuer.is_empty() || audience.is_empty() {
            return Err("JWT authentication needs an issuer and an audience to check".into());
        }
        let (key, alg) = match key {
            JwtKey::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err("the HS256 secret must be at least 32 bytes".into());
                }
                (
                    DecodingKey::from_secret(&secret).map_err(|e| format!("HS256 secret: {e}"))?,
                    Algorithm::HS256,
                )
            }
            JwtKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| format!("the RS256 public key is not a valid PEM RSA key: {e}"))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    /// The principal a token stands for, or `Unauthenticated`.
    pub fn verify(&self, token: &str) -> certctl_engine::Result<Principal> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                tracing::debug!(error = %e, "JWT refused");
                certctl_engine::Error::Unauthenticated
            })?;
        let c = data.claims;
        let role = Role::parse(&c.role).ok_or(certctl_engine::Error::Unauthenticated)?;
        if (role == Role::Agent) != c.agent_id.is_some() || c.sub.is_empty() || c.sub.len() > 200 {
            return Err(certctl_engine::Error::Unauthenticated);
        }
        Ok(Principal {
            id: format!("jwt:{}", c.sub),
            name: c.name.unwrap_or_else(|| c.sub.clone()),
            role,
            agent_id: c.agent_id,
            address: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn far() -> i64 {
        4_000_000_000
    }

    #[test]
    fn hs256_checks_signature_issuer_audience_and_expiry() {
        let v = JwtVerifier::new(JwtKey::Hs256(SECRET.to_vec()), "https://idp", "certctl").unwrap();
        let good = json!({"sub": "alice", "role": "operator", "iss": "https://idp", "aud": "certctl", "exp": far()});
        let p = v.verify(&token(good.clone(), SECRET)).unwrap();
        assert_eq!((p.id.as_str(), p.role), ("jwt:alice", Role::Operator));
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = "https://evil".into();
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "other".into();
        let mut expired = good.clone();
        expired["exp"] = 1_000.into();
        let mut bad_role = good.clone();
        bad_role["role"] = "root".into();
        let mut agent_without_id = good.clone();
        agent_without_id["role"] = "agent".into();
        for bad in [wrong_iss, wrong_aud, expired, bad_role, agent_without_id] {
            assert!(v.verify(&token(bad.clone(), SECRET)).is_err(), "{bad}");
        }
        assert!(
            v.verify(&token(good, b"another-secret-another-secret-xx"))
                .is_err()
        );
        assert!(v.verify("not.a.jwt").is_err());
    }

    #[test]
    fn short_secrets_and_missing_audience_are_refused() {
        assert!(JwtVerifier::new(JwtKey::Hs256(b"short".to_vec()), "i", "a").is_err());
        assert!(JwtVerifier::new(JwtKey::Hs256(SECRET.to_vec()), "i", "").is_err());
        assert!(JwtVerifier::new(JwtKey::Rs256Pem(b"nope".to_vec()), "i", "a").is_err());
    }
}
