//! Secrets Stowage hands out: API keys (`stw_<key id>_<secret>`) and upload tokens
//! (`stu_<token id>_<secret>`). The id finds the row; only the SHA-256 of the secret is stored,
//! and it is compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// What a secret is, told by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An API key: `stw_…`.
    ApiKey,
    /// An upload token: `stu_…` (src/upload_tokens.rs).
    UploadToken,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::ApiKey => "stw_",
            Kind::UploadToken => "stu_",
        }
    }
}

/// A freshly generated key: what to store and what to show the operator once.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: Uuid,
    pub secret_hash: Vec<u8>,
    /// The full key to hand to a client; never stored.
    pub plaintext: String,
}

/// Generates a secret of this kind with 256 bits of randomness.
pub fn generate(kind: Kind) -> NewKey {
    let id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source failed");
    let secret = hex::encode(secret);
    NewKey {
        id,
        secret_hash: hash_secret(&secret),
        plaintext: format!("{}{}_{secret}", kind.prefix(), id.simple()),
    }
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A presented secret of this kind split into its id and secret; `None` if it is not shaped
/// like one.
pub fn parse(kind: Kind, presented: &str) -> Option<(Uuid, &str)> {
    let rest = presented.strip_prefix(kind.prefix())?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.is_empty() || secret.len() > 128 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// Whether a presented secret matches the stored hash, in constant time.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_a_changed_one_does_not() {
        let key = generate(Kind::ApiKey);
        let (id, secret) = parse(Kind::ApiKey, &key.plaintext).expect("well-formed");
        assert_eq!(id, key.id);
        assert!(verify(secret, &key.secret_hash));
        let mut other = secret.to_owned();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!verify(&other, &key.secret_hash));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(parse(Kind::ApiKey, "").is_none());
        assert!(parse(Kind::ApiKey, "stw_short_secret").is_none());
        assert!(parse(Kind::ApiKey, "Bearer abc").is_none());
        assert!(parse(Kind::ApiKey, &format!("stw_{}_", Uuid::new_v4().simple())).is_none());
    }

    #[test]
    fn a_token_is_not_a_key_and_a_key_is_not_a_token() {
        let token = generate(Kind::UploadToken);
        assert!(token.plaintext.starts_with("stu_"));
        assert!(parse(Kind::UploadToken, &token.plaintext).is_some());
        assert!(parse(Kind::ApiKey, &token.plaintext).is_none());
        let key = generate(Kind::ApiKey);
        assert!(parse(Kind::UploadToken, &key.plaintext).is_none());
    }
}
