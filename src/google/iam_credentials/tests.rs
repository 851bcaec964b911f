//! Unit tests of IAM Credentials answers and calls.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(crate) const SA: &str = "app@my-project.iam.gserviceaccount.com";

pub(crate) fn with<T>(delegates: &[String], f: impl FnOnce(&Impersonation<'_>) -> T) -> T {
    let t = Impersonation {
        iam_root: "https://iamcredentials.googleapis.com/",
        service_account: SA,
        delegates,
    };
    f(&t)
}

pub(crate) fn parse(call: Call, status: u16, body: &str) -> Result<IssuedToken> {
    with(&[], |t| {
        parse_response(call, status, body.as_bytes(), t, 1_767_323_045)
    })
}

pub(crate) const ACCESS: Call = Call::AccessToken { lifetime: 3600 };

pub(crate) fn jwt(payload: &str) -> String {
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(payload)
    )
}

#[test]
fn endpoint_and_request_bodies() {
    with(&[], |t| {
        let url = t.endpoint("generateAccessToken");
        assert_eq!(
            url,
            format!(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
            )
        );
        assert_eq!(
            split_endpoint(&url),
            Some(("https://iamcredentials.googleapis.com", SA))
        );
    });
    assert_eq!(
        split_endpoint("https://x/v1/projects/p/serviceAccounts/a:b"),
        None
    );
    let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
    let b = AccessTokenRequest {
        delegates: None,
        scope: &scopes,
        lifetime: "3600s".into(),
    };
    assert_eq!(
        serde_json::to_string(&b).unwrap_or_default(),
        r#"{"scope":["https://www.googleapis.com/auth/cloud-platform"],"lifetime":"3600s"}"#
    );
    let delegates = vec![
        "a@p.iam.gserviceaccount.com".to_owned(),
        "projects/-/serviceAccounts/b@p".to_owned(),
    ];
    with(&delegates, |t| {
        let b = IdTokenRequest {
            delegates: t.delegate_resources(),
            audience: "https://run.app",
            include_email: true,
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap_or_default(),
            r#"{"delegates":["projects/-/serviceAccounts/a@p.iam.gserviceaccount.com","projects/-/serviceAccounts/b@p"],"audience":"https://run.app","includeEmail":true}"#
        );
    });
}

#[test]
fn expire_time_is_rfc3339_utc_with_optional_fractions() -> Result<()> {
    assert_eq!(parse_expire_time("2026-01-02T04:04:05Z")?, 1_767_326_645);
    assert_eq!(parse_expire_time("2026-01-02T04:04:05.5Z")?, 1_767_326_645);
    assert_eq!(
        parse_expire_time("2026-01-02T04:04:05.123456789Z")?,
        1_767_326_645
    );
    assert_eq!(
        parse_expire_time("2026-01-02T05:04:05+01:00")?,
        1_767_326_645
    );
    for bad in [
        "",
        "2026-01-02 04:04:05",
        "2026-01-02T04:04:05",
        "1767326645",
        "tomorrow",
    ] {
        assert!(parse_expire_time(bad).is_err(), "{bad}");
    }
    Ok(())
}

#[test]
fn access_token_success() -> Result<()> {
    let t = parse(
        ACCESS,
        200,
        r#"{"accessToken":"ya29.sa","expireTime":"2026-01-02T04:04:05Z"}"#,
    )?;
    assert_eq!(
        (t.token.expose(), t.expires_at, t.issued_at),
        ("ya29.sa", 1_767_326_645, 1_767_323_045)
    );
    for body in [
        "{}",
        "nope",
        r#"{"accessToken":"x"}"#,
        r#"{"accessToken":"x","expireTime":"soon"}"#,
        r#"{"accessToken":"","expireTime":"2026-01-02T04:04:05Z"}"#,
        r#"{"accessToken":"x","expireTime":"2020-01-01T00:00:00Z"}"#,
        r#"{"accessToken":"x y","expireTime":"2026-01-02T04:04:05Z"}"#,
        r#"{"accessToken":"x","expireTime":"9999-12-31T23:59:59Z"}"#,
    ] {
        let e = parse(ACCESS, 200, body).err();
        assert_eq!(e.map(|e| e.code()), Some(ErrorCode::GoogleError), "{body}");
    }
    Ok(())
}

#[test]
fn id_token_expiry_comes_from_exp() -> Result<()> {
    let tok = jwt(r#"{"aud":"https://run.app","exp":1767326645,"iat":1767323045}"#);
    let t = parse(Call::IdToken, 200, &format!(r#"{{"token":"{tok}"}}"#))?;
    assert_eq!(t.expires_at, 1_767_326_645);
    // Padded base64url is accepted too.
    let padded = format!(
        "h.{}.s",
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":1767326645}"#)
    );
    assert_eq!(jwt_exp(&padded)?, 1_767_326_645);
    for bad in [
        "notajwt".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "a.!!!.c".to_owned(),
        jwt("[1,2]"),
        jwt("not json"),
        jwt(r#"{"exp":"1767326645"}"#),
        jwt(r#"{"exp":1767326645.5}"#),
        jwt(r#"{"iat":1}"#),
    ] {
        assert!(jwt_exp(&bad).is_err(), "{bad}");
        let e = parse(Call::IdToken, 200, &format!(r#"{{"token":"{bad}"}}"#)).err();
        assert_eq!(e.map(|e| e.code()), Some(ErrorCode::GoogleError), "{bad}");
    }
    Ok(())
}

#[test]
fn refused_lifetime_names_the_org_policy() {
    let body = r#"{"error":{"code":400,"message":"Requested lifetime 43200s exceeds the maximum allowed lifetime of 3600s. Check the organization policy.","status":"INVALID_ARGUMENT"}}"#;
    let e = parse(Call::AccessToken { lifetime: 43200 }, 400, body)
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GoogleLifetimeNotAllowed);
    assert!(e.message().contains(LIFETIME_CONSTRAINT), "{}", e.message());
    assert!(e.message().contains("43200"), "{}", e.message());
}

#[test]
fn other_statuses() {
    let code = |call, status, body: &str| {
        parse(call, status, body)
            .err()
            .map(|e| (e.code(), e.is_transient()))
    };
    let unauth = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
    assert_eq!(
        code(ACCESS, 401, unauth),
        Some((ErrorCode::GoogleInvalidGrant, false))
    );
    for s in [429, 500, 502, 503, 504] {
        assert_eq!(
            code(ACCESS, s, "{}"),
            Some((ErrorCode::GoogleError, true)),
            "{s}"
        );
        assert_eq!(
            code(Call::IdToken, s, "<html>"),
            Some((ErrorCode::GoogleError, true)),
            "{s}"
        );
    }
    let disabled = r#"{"error":{"code":403,"message":"IAM Service Account Credentials API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED","details":[{"reason":"SERVICE_DISABLED"}]}}"#;
    let e = parse(ACCESS, 403, disabled)
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GoogleError);
    assert!(
        e.message()
            .contains("gcloud services enable iamcredentials.googleapis.com")
    );
    let nf = r#"{"error":{"code":404,"message":"Not found; Gaia id not found for email x","status":"NOT_FOUND"}}"#;
    let e = parse(ACCESS, 404, nf)
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(e.code(), ErrorCode::GoogleError);
    assert!(e.message().contains("--service-account"));
    let bad_scope =
        r#"{"error":{"code":400,"message":"Invalid scope","status":"INVALID_ARGUMENT"}}"#;
    assert_eq!(
        code(ACCESS, 400, bad_scope),
        Some((ErrorCode::GoogleError, false))
    );
    assert_eq!(
        code(Call::IdToken, 400, bad_scope),
        Some((ErrorCode::GoogleError, false))
    );
}

#[test]
fn messages_never_echo_tokens() {
    // A body that is not a Google error is not quoted.
    let e = parse(ACCESS, 418, r#"{"accessToken":"ya29.leak"}"#).err();
    assert!(e.is_some_and(|e| !e.message().contains("ya29.leak")));
}

#[tokio::test]
async fn calls_send_the_bearer_token_and_json_bodies() -> Result<()> {
    let id = jwt(r#"{"aud":"https://a.run.app","exp":1767326645}"#);
    let server = crate::http::fake::FakeServer::start(vec![
        (
            200,
            r#"{"accessToken":"ya29.sa","expireTime":"2026-01-02T04:04:05Z"}"#.into(),
        ),
        (200, format!(r#"{{"token":"{id}"}}"#)),
    ]);
    let client = crate::http::client(std::time::Duration::from_secs(5))?;
    let delegates = vec!["d@p.iam.gserviceaccount.com".to_owned()];
    let t = Impersonation {
        iam_root: &server.url,
        service_account: SA,
        delegates: &delegates,
    };
    let fed = Secret::new("ya29.federated");
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
    let a =
        generate_access_token(&client, &t, &fed, &scopes, 7200, deadline, 1_767_323_045).await?;
    assert_eq!(a.token.expose(), "ya29.sa");
    let i = generate_id_token(
        &client,
        &t,
        &fed,
        "https://a.run.app",
        true,
        deadline,
        1_767_323_045,
    )
    .await?;
    assert_eq!(i.expires_at, 1_767_326_645);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0].starts_with(&format!(
            "POST /v1/projects/-/serviceAccounts/{SA}:generateAccessToken HTTP/1.1"
        )),
        "{}",
        reqs[0]
    );
    assert!(
        reqs[1].starts_with(&format!(
            "POST /v1/projects/-/serviceAccounts/{SA}:generateIdToken HTTP/1.1"
        )),
        "{}",
        reqs[1]
    );
    for r in &reqs {
        assert!(
            r.to_ascii_lowercase()
                .contains("authorization: bearer ya29.federated"),
            "{r}"
        );
    }
    let body = |r: &str| -> Value {
        serde_json::from_str(r.rsplit("\r\n\r\n").next().unwrap_or_default()).unwrap_or_default()
    };
    assert_eq!(
        body(&reqs[0]),
        serde_json::json!({"delegates":["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"],"scope":scopes,"lifetime":"7200s"})
    );
    assert_eq!(
        body(&reqs[1]),
        serde_json::json!({"delegates":["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"],"audience":"https://a.run.app","includeEmail":true})
    );
    Ok(())
}
