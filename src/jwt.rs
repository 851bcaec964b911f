//! Reading a JWT's claims, for whichever upstream issued it.
//!
//! The signature is not checked: every JWT wif-helper reads came straight
//! from AWS STS or Google IAM Credentials over TLS and is only inspected (for
//! its `exp`, or its `sub` in an error hint). Errors are reasons; the caller
//! says whose token it was.

use base64::Engine as _;
use serde_json::{Map, Value};

/// The claims of a JWT (its payload, base64url with or without padding),
/// which must be a JSON object.
pub(crate) fn claims(token: &str) -> Result<Map<String, Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected three dot-separated parts");
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(payload)
        .map_err(|_| "the payload is not base64url")?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the payload is not a JSON object"),
        Err(_) => Err("the payload is not JSON"),
    }
}

/// The integer `exp` claim.
pub(crate) fn exp(token: &str) -> Result<i64, &'static str> {
    claims(token)?
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("no integer exp claim")
}

/// A string claim, if the token has it.
pub(crate) fn string_claim(token: &str, name: &str) -> Option<String> {
    claims(token)
        .ok()?
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!("h.{}.s", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn claims_exp_and_strings() {
        let t = jwt(r#"{"exp":1767326645,"sub":"arn:aws:iam::1:role/r"}"#);
        assert_eq!(exp(&t), Ok(1_767_326_645));
        assert_eq!(
            string_claim(&t, "sub").as_deref(),
            Some("arn:aws:iam::1:role/r")
        );
        assert_eq!(string_claim(&t, "aud"), None);
        assert_eq!(exp(&jwt(r#"{"exp":"soon"}"#)), Err("no integer exp claim"));
        assert!(claims("a.b").is_err());
        assert!(claims("a.!!!.c").is_err());
        assert!(claims(&jwt("[1]")).is_err());
        assert!(claims(&jwt("{")).is_err());
    }
}
