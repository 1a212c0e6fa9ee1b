//! API keys: generated once, shown once, stored as a hash.
//!
//! A token reads `vgk_<id>_<secret>`: the id (12 hex digits) is public and
//! names the row; the secret (64 hex digits, 256 random bits) is never
//! stored, only its SHA-256. Because the secret is high-entropy, a plain
//! hash is enough (no password stretching); the stored and presented
//! hashes are compared in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "vgk_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// The SHA-256 of a key's secret part.
pub type SecretHash = [u8; 32];

/// A freshly generated token with its parts.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    /// The whole token, shown to the user once.
    pub token: String,
    /// The public id, stored in clear.
    pub id: String,
    pub secret_hash: SecretHash,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Hex digits of `bytes`, lower case.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

/// Makes a new random token.
pub fn generate() -> GeneratedToken {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let secret = hex(&secret);
    GeneratedToken {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into its id and secret, or `None` when it is
/// not shaped like one of ours.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, ID_BYTES * 2) && is_hex(secret, SECRET_BYTES * 2)).then_some((id, secret))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn verify(secret: &str, stored: &SecretHash) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_verifies() {
        let t = generate();
        let (id, secret) = parse(&t.token).expect("parses");
        assert_eq!(id, t.id);
        assert!(verify(secret, &t.secret_hash));
        assert!(!verify(&"0".repeat(64), &t.secret_hash));
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(generate().token, generate().token);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "vgk_",
            "vgk_abc_def",
            "Bearer x",
            &format!("vgk_{}_{}", "g".repeat(12), "0".repeat(64)),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
