//! RS256 JSON Web Tokens: signing keys generated at start, JWKS documents,
//! and verification of received tokens (signature only; claim checks are
//! done by the callers, against the emulator clock).

use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// An RSA signing key with a random `kid`.
pub(crate) struct SigningKey {
    kid: String,
    pair: KeyPair,
    public: PublicJwk,
}

/// The public half of an RSA key, as found in a JWKS.
#[derive(Clone, Debug)]
pub(crate) struct PublicJwk {
    pub(crate) kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl SigningKey {
    /// Generates a 2048-bit RSA key; `kid` is random hex of `kid_bytes` bytes.
    pub(crate) fn generate(kid_bytes: usize) -> std::io::Result<SigningKey> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| std::io::Error::other("RSA key generation failed"))?;
        let comps: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let kid = crate::util::random_hex(kid_bytes);
        let public = PublicJwk {
            kid: kid.clone(),
            n: comps.n,
            e: comps.e,
        };
        Ok(SigningKey { kid, pair, public })
    }

    pub(crate) fn public(&self) -> &PublicJwk {
        &self.public
    }

    /// Signs `claims` as an RS256 JWT with header `{"alg":"RS256","kid":..,"typ":"JWT"}`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // RSA PKCS#1 v1.5 signing with a valid key and a correctly sized
        // buffer cannot fail; an empty signature would simply not verify.
        if self
            .pair
            .sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
            .is_err()
        {
            sig.clear();
        }
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

impl PublicJwk {
    /// The JWK object (`kty`, `alg`, `use`, `kid`, `n`, `e`).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }
}

/// A JWKS document for `keys`.
pub(crate) fn jwks(keys: &[&PublicJwk]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.to_json()).collect::<Vec<_>>() })
}

/// Extracts the RSA keys of a JWKS document; other key types are skipped.
pub(crate) fn parse_jwks(doc: &Value) -> Vec<PublicJwk> {
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
        .filter_map(|k| {
            let field = |name: &str| {
                k.get(name)
                    .and_then(Value::as_str)
                    .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            };
            Some(PublicJwk {
                kid: k.get("kid").and_then(Value::as_str)?.to_string(),
                n: field("n")?,
                e: field("e")?,
            })
        })
        .collect()
}

/// Why a JWT was rejected before its claims were looked at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Not three base64url JSON parts.
    Malformed(&'static str),
    /// `alg` other than RS256 (including `none` and HMAC).
    UnsupportedAlgorithm(String),
    /// No `kid` in the header.
    MissingKid,
    /// `kid` not among the issuer's keys.
    UnknownKid(String),
    /// Signature does not verify.
    BadSignature,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(why) => write!(f, "malformed JWT: {why}"),
            JwtError::UnsupportedAlgorithm(a) => {
                write!(
                    f,
                    "unsupported JWT signing algorithm {a:?}; RS256 is required"
                )
            }
            JwtError::MissingKid => write!(f, "JWT header has no 'kid'"),
            JwtError::UnknownKid(k) => write!(f, "no key with kid {k:?} in the issuer's JWKS"),
            JwtError::BadSignature => write!(f, "invalid JWT signature"),
        }
    }
}

/// A verified token: header and claims.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) claims: Map<String, Value>,
}

fn decode_json(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed(what)),
    }
}

/// Verifies an RS256 JWT against `keys` (looked up by `kid`).
pub(crate) fn verify_rs256(token: &str, keys: &[PublicJwk]) -> Result<Verified, JwtError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    let header = decode_json(h, "header is not base64url JSON")?;
    let claims = decode_json(p, "payload is not base64url JSON")?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != "RS256" {
        return Err(JwtError::UnsupportedAlgorithm(alg.to_string()));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingKid)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| JwtError::UnknownKid(kid.into()))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let public = RsaPublicKeyComponents {
        n: key.n.as_slice(),
        e: key.e.as_slice(),
    };
    let signing_input = &token.trim()[..h.len() + 1 + p.len()];
    public
        .verify(&RSA_PKCS1_2048_8192_SHA256, signing_input.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(Verified { claims })
}

/// The payload of a JWT without verifying anything (to pick the issuer).
pub(crate) fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.trim().split('.').nth(1)?;
    decode_json(payload, "payload").ok()
}

/// Numeric claim (`exp`, `iat`, ...) as seconds; floats are truncated.
pub(crate) fn num_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// `aud` as a list (a string or an array of strings).
pub(crate) fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = SigningKey::generate(8).unwrap();
        let token = key.sign(&json!({"sub": "x"}));
        let keys = parse_jwks(&jwks(&[key.public()]));
        assert_eq!(verify_rs256(&token, &keys).unwrap().claims["sub"], "x");
        let mut bad = token.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verify_rs256(&bad, &keys).is_err());
        assert!(matches!(
            verify_rs256("a.b", &keys),
            Err(JwtError::Malformed(_))
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(
            verify_rs256(&none, &keys).unwrap_err(),
            JwtError::UnsupportedAlgorithm("none".into())
        );
    }
}
