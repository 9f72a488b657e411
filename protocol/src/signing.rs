//! Canonical signing of CLI requests.
//!
//! A signed request carries four headers: the signer's public key, a unix
//! timestamp in seconds, a random nonce, and an ed25519 signature over the
//! canonical message below. Binding the method, path, query and body hash
//! means a captured signature cannot be replayed against another route or
//! with another body; the timestamp and nonce stop replays of the same one.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub const HEADER_KEY: &str = "x-sahel-key";
pub const HEADER_TIMESTAMP: &str = "x-sahel-timestamp";
pub const HEADER_NONCE: &str = "x-sahel-nonce";
pub const HEADER_SIGNATURE: &str = "x-sahel-signature";

/// How far a request's timestamp may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

const REQUEST_DOMAIN: &str = "SAHEL-REQUEST-V1";
const KEY_LINK_DOMAIN: &str = "SAHEL-KEY-LINK-V1";

/// The parts of an HTTP request that a signature covers.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string as sent, without the `?`; empty when none.
    pub query: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    /// The exact bytes that are signed: one field per line, the body as the
    /// hex SHA-256 of its bytes so the message stays small.
    pub fn canonical_message(&self) -> Vec<u8> {
        let body_hash = hex::encode(Sha256::digest(self.body));
        format!(
            "{REQUEST_DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            self.path,
            self.query,
            self.timestamp,
            self.nonce,
            body_hash
        )
        .into_bytes()
    }
}

/// The four header values of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    pub key: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

impl SignedHeaders {
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            (HEADER_KEY, &self.key),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

pub fn sign_request(key: &SigningKey, parts: &RequestParts<'_>) -> SignedHeaders {
    let signature = key.sign(&parts.canonical_message());
    SignedHeaders {
        key: public_key_hex(&key.verifying_key()),
        timestamp: parts.timestamp.to_string(),
        nonce: parts.nonce.to_owned(),
        signature: hex::encode(signature.to_bytes()),
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the public key is not 32 bytes of hex encoding a valid ed25519 point")]
    BadKey,
    #[error("the signature is not 64 bytes of hex")]
    Malformed,
    #[error("the signature does not match the request")]
    Mismatch,
}

/// Parses a hex public key. Keys seen before come from a process-wide
/// cache: decompressing the point is a square root in the field, a sixth
/// of a strict verification's work, and a server checks three signatures
/// per answer from the same few thousand keys.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, SignatureError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::BadKey)?;
    let cache = PARSED_KEYS.get_or_init(Default::default);
    if let Some(key) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&bytes) {
        return Ok(*key);
    }
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::BadKey)?;
    let mut keys = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Past the bound the cache starts over rather than track recency: a
    // miss costs one decompression, and the bound caps the memory (about
    // 200 bytes a key) whatever keys a client sends.
    if keys.len() >= PARSED_KEYS_CAP {
        keys.clear();
    }
    keys.insert(bytes, key);
    Ok(key)
}

/// Only keys that parse are kept; see [`parse_public_key`].
static PARSED_KEYS: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifyingKey>>,
> = std::sync::OnceLock::new();
const PARSED_KEYS_CAP: usize = 16_384;

pub fn parse_signature(hex_sig: &str) -> Result<Signature, SignatureError> {
    let bytes: [u8; 64] = hex::decode(hex_sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    Ok(Signature::from_bytes(&bytes))
}

pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Verifies `signature` over `message` with strict checks (no malleable
/// signatures, no small-order keys).
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let signature = parse_signature(signature_hex)?;
    key.verify_strict(message, &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The message a key signs to prove possession when it is linked to an
/// account, so nobody can link a public key they do not hold.
pub fn key_link_message(user_id: i64, public_key_hex: &str) -> Vec<u8> {
    format!("{KEY_LINK_DOMAIN}\n{user_id}\n{public_key_hex}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn parts(body: &[u8]) -> RequestParts<'_> {
        RequestParts {
            method: "post",
            path: "/api/v1/submissions",
            query: "",
            timestamp: 1_700_000_000,
            nonce: "00ff",
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let k = key();
        let p = parts(b"{\"a\":1}");
        let h = sign_request(&k, &p);
        let vk = parse_public_key(&h.key).unwrap();
        verify(&vk, &p.canonical_message(), &h.signature).unwrap();

        let changed = [
            RequestParts {
                body: b"{\"a\":2}",
                ..p.clone()
            },
            RequestParts {
                path: "/api/v1/other",
                ..p.clone()
            },
            RequestParts {
                method: "PUT",
                ..p.clone()
            },
            RequestParts {
                query: "x=1",
                ..p.clone()
            },
            RequestParts {
                timestamp: p.timestamp + 1,
                ..p.clone()
            },
            RequestParts {
                nonce: "00fe",
                ..p.clone()
            },
        ];
        for c in changed {
            assert_eq!(
                verify(&vk, &c.canonical_message(), &h.signature),
                Err(SignatureError::Mismatch),
                "{c:?}"
            );
        }
    }

    #[test]
    fn method_case_does_not_matter_but_hex_must_be_well_formed() {
        let k = key();
        let p = parts(b"");
        let h = sign_request(&k, &p);
        let upper = RequestParts {
            method: "POST",
            ..p.clone()
        };
        let vk = parse_public_key(&h.key).unwrap();
        verify(&vk, &upper.canonical_message(), &h.signature).unwrap();
        assert_eq!(parse_public_key("zz"), Err(SignatureError::BadKey));
        assert_eq!(verify(&vk, b"x", "abcd"), Err(SignatureError::Malformed));
    }

    /// A key parsed again (from the cache) is the same key, and a bad
    /// one is refused every time, never remembered.
    #[test]
    fn a_key_parsed_twice_is_the_same_and_a_bad_key_stays_bad() {
        let k = key();
        let hex_key = public_key_hex(&k.verifying_key());
        let first = parse_public_key(&hex_key).unwrap();
        let again = parse_public_key(&hex_key.to_ascii_uppercase()).unwrap();
        assert_eq!(first, again);
        assert_eq!(again, k.verifying_key());
        // 32 bytes that are no point on the curve (y = 2 has no x).
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let bad = hex::encode(not_a_point);
        for _ in 0..2 {
            assert_eq!(parse_public_key(&bad), Err(SignatureError::BadKey));
        }
        let p = parts(b"x");
        let h = sign_request(&k, &p);
        verify(&again, &p.canonical_message(), &h.signature).unwrap();
    }
}
