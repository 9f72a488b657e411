//! Provenance of accepted answers: a contributor's ed25519 signature over
//! what they saw and what they answered.
//!
//! The signed message binds the item's content hash, the bounty's guideline
//! version and the answer:
//!
//! ```text
//! SAHEL-PROVENANCE-V1
//! <hex SHA-256 of the item data as compact JSON with sorted keys>
//! <guideline version>
//! <hex SHA-256 of the answer as compact JSON with sorted keys>
//! ```
//!
//! serde_json's default map keeps keys sorted, so `Value::to_string()` is
//! the canonical form on both sides.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::signing::{self, SignatureError};

const PROVENANCE_DOMAIN: &str = "SAHEL-PROVENANCE-V1";
const GUIDELINES_DOMAIN: &str = "SAHEL-GUIDELINES-V1";

/// Hex SHA-256 of an item's data in canonical JSON.
pub fn item_content_hash(data: &Value) -> String {
    hex::encode(Sha256::digest(data.to_string().as_bytes()))
}

/// The version of a bounty's guidelines: a hash of its instructions and
/// label schema, so a signature names exactly the rules it answered under.
pub fn guideline_version(instructions: &str, schema: &Value) -> String {
    let h = Sha256::digest(format!("{GUIDELINES_DOMAIN}\n{instructions}\n{schema}").as_bytes());
    format!("g1:{}", &hex::encode(h)[..32])
}

pub fn provenance_message(content_hash: &str, guideline_version: &str, answer: &Value) -> Vec<u8> {
    let answer_hash = hex::encode(Sha256::digest(answer.to_string().as_bytes()));
    format!("{PROVENANCE_DOMAIN}\n{content_hash}\n{guideline_version}\n{answer_hash}").into_bytes()
}

pub fn sign_answer(
    key: &SigningKey,
    content_hash: &str,
    guideline_version: &str,
    answer: &Value,
) -> String {
    hex::encode(
        key.sign(&provenance_message(content_hash, guideline_version, answer))
            .to_bytes(),
    )
}

pub fn verify_answer(
    key: &VerifyingKey,
    content_hash: &str,
    guideline_version: &str,
    answer: &Value,
    signature: &str,
) -> Result<(), SignatureError> {
    signing::verify(
        key,
        &provenance_message(content_hash, guideline_version, answer),
        signature,
    )
}

/// One accepted answer in an export, with what proves who gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedAnswer {
    pub answer_id: i64,
    pub contributor_id: i64,
    /// Hex ed25519 public key that signed.
    pub public_key: String,
    pub answer: Value,
    pub signature: String,
    /// `client` (the contributor's own key) or `custodial` (the per-account
    /// key the server holds for browser users).
    pub signed_by: String,
}

/// One line of a results export (`export.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub item_id: i64,
    pub data: Value,
    pub content_hash: String,
    pub guideline_version: String,
    pub result: Value,
    pub answers: Vec<SignedAnswer>,
}

/// Checks one export line: the content hash matches the data, and every
/// accepted answer's signature verifies under its stated key.
pub fn verify_record(r: &ExportRecord) -> Result<usize, String> {
    let computed = item_content_hash(&r.data);
    if computed != r.content_hash {
        return Err(format!(
            "item {}: the data does not match its content hash",
            r.item_id
        ));
    }
    for a in &r.answers {
        let key = signing::parse_public_key(&a.public_key)
            .map_err(|e| format!("item {} answer {}: {e}", r.item_id, a.answer_id))?;
        verify_answer(
            &key,
            &r.content_hash,
            &r.guideline_version,
            &a.answer,
            &a.signature,
        )
        .map_err(|e| format!("item {} answer {}: {e}", r.item_id, a.answer_id))?;
    }
    Ok(r.answers.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signed_answer_verifies_and_changing_anything_breaks_it() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let data = json!({"text": "great", "b": 1});
        let g = guideline_version("Pick one.", &json!({"classes": ["a", "b"]}));
        let ans = json!({"label": "a"});
        let sig = sign_answer(&k, &item_content_hash(&data), &g, &ans);
        let mut rec = ExportRecord {
            item_id: 1,
            data: data.clone(),
            content_hash: item_content_hash(&data),
            guideline_version: g.clone(),
            result: json!({"answer": ans}),
            answers: vec![SignedAnswer {
                answer_id: 5,
                contributor_id: 2,
                public_key: hex::encode(k.verifying_key().as_bytes()),
                answer: ans.clone(),
                signature: sig,
                signed_by: "client".into(),
            }],
        };
        assert_eq!(verify_record(&rec), Ok(1));
        // Key order in the data does not matter; content does.
        let reordered: Value = serde_json::from_str(r#"{"b":1,"text":"great"}"#).unwrap();
        assert_eq!(item_content_hash(&reordered), rec.content_hash);
        rec.answers[0].answer = json!({"label": "b"});
        assert!(verify_record(&rec).is_err());
        rec.answers[0].answer = ans;
        rec.guideline_version = guideline_version("Pick two.", &json!({"classes": ["a", "b"]}));
        assert!(verify_record(&rec).is_err());
        rec.guideline_version = g;
        rec.data = json!({"text": "awful", "b": 1});
        assert!(verify_record(&rec).unwrap_err().contains("content hash"));
    }
}
