//! Property tests ("fuzzing") of every parser that sees untrusted bytes:
//! cache entries, Google STS and IAM Credentials answers, RFC 3339 expiry
//! times, JWT payloads, AWS error answers, the executable-protocol JSON read
//! back, provider resources and the SigV4 subject token for any audience.
//!
//! Inputs are arbitrary bytes, structured values with hostile fields, and
//! byte-level mutations of the committed corpus (`tests/corpus/`). Every
//! property includes "no panic" (proptest catches and shrinks panics).
//!
//! Each test runs `PROPTEST_CASES` cases (default 2,000: the whole file takes
//! seconds). `WIF_HELPER_FUZZ_SECS=N` makes each test repeat fresh rounds for
//! N seconds: CI's fuzz smoke step runs it with N=60 (`scripts/test`).
//! Failing seeds are saved under `proptest-regressions/` and replayed first;
//! commit them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

mod generators;

use crate::cache::{Cache, CacheKey};
use crate::error::{Error, ErrorCode};
use crate::google::iam_credentials::{self, Call, Impersonation};
use crate::google::sts;
use crate::provider::Provider;
use crate::subject::{JWT_TOKEN_TYPE, ProviderType};
use crate::token::IssuedToken;
use crate::{aws, pluggable as executable, secret};
use generators::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use std::time::{Duration, Instant};

const DEFAULT_CASES: u32 = 2_000;

/// Runs `test` on `strategy`'s values as the module describes.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("WIF_HELPER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut config = Config {
            source_file: Some(file!()),
            ..Config::default()
        };
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = DEFAULT_CASES;
        }
        total += u64::from(config.cases);
        if let Err(e) = TestRunner::new(config).run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    eprintln!("{name}: {total} cases in {:?}", started.elapsed());
}

fn provider() -> Provider {
    RESOURCE.parse().expect("provider")
}

fn no_control(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

#[test]
fn cache_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path().join("c")).expect("cache");
    let key = CacheKey::new("jwt", [("audience", "fuzz")]);
    let hex = key_hex(&cache, &key);
    assert_eq!(hex.len(), 64);
    let path = cache.dir().join(format!("{}.json", key.stem()));
    let strategy = (cache_entry_bytes(&hex), NOW - 7200..NOW + 7200);
    fuzz("cache_entries", strategy, |(bytes, now)| {
        std::fs::write(&path, &bytes).unwrap();
        match cache.get_fresh(&key, now) {
            Ok(Some(t)) => {
                prop_assert!(t.validate().is_ok(), "implausible token served");
                prop_assert!(t.is_fresh(now));
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                prop_assert_eq!(
                    v["key"].as_str(),
                    Some(hex.as_str()),
                    "foreign entry served"
                );
                prop_assert_eq!(v["schema"].as_i64(), Some(1));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(false, "a private regular file errored: {e}"),
        }
        Ok(())
    });
}

#[test]
fn google_sts_answers() {
    let p = provider();
    let strategy = (status(), sts_body(), prop::bool::ANY);
    fuzz(
        "google_sts_answers",
        strategy,
        |(status, (body, planted), oidc)| {
            let pt = if oidc {
                ProviderType::Oidc
            } else {
                ProviderType::Aws
            };
            match sts::parse_response(status, &body, &p, pt, NOW) {
                Ok(t) => {
                    prop_assert!((200..300).contains(&status));
                    prop_assert!(t.validate().is_ok());
                    prop_assert!(t.issued_at == NOW && t.expires_at > NOW);
                }
                Err(e) => {
                    prop_assert!(matches!(
                        e.code(),
                        ErrorCode::GoogleError | ErrorCode::GoogleInvalidGrant
                    ));
                    prop_assert_eq!(e.is_transient(), crate::http::is_retryable_status(status));
                    prop_assert!(no_control(e.message()), "{}", e.message());
                    if let Some(tok) = planted {
                        prop_assert!(!e.message().contains(&tok), "echoed the access token");
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn iam_credentials_answers() {
    let p = provider();
    // What the direct path reports: IAM's answer explained with the facts.
    let facts = crate::hints::Facts {
        provider: &p,
        provider_type: ProviderType::Aws,
        service_account: SERVICE_ACCOUNT,
        subject: None,
    };
    let delegates = Vec::new();
    let target = Impersonation {
        iam_root: "https://iamcredentials.googleapis.com",
        service_account: SERVICE_ACCOUNT,
        delegates: &delegates,
    };
    let call = prop_oneof![
        (1u32..=43_200).prop_map(|lifetime| Call::AccessToken { lifetime }),
        Just(Call::IdToken),
    ];
    fuzz(
        "iam_credentials_answers",
        (call, status(), iam_body()),
        |(call, status, body)| {
            match iam_credentials::parse_response(call, status, &body, &target, NOW)
                .map_err(|e| crate::hints::explain(e, &facts))
            {
                Ok(t) => {
                    prop_assert!((200..300).contains(&status));
                    prop_assert!(t.validate().is_ok() && t.expires_at > NOW && t.issued_at == NOW);
                    if call == Call::IdToken {
                        // The JWT's exp, but never more than an hour (and the skew) out.
                        prop_assert_eq!(
                            iam_credentials::jwt_exp(t.token.expose())
                                .ok()
                                .map(|exp| exp.min(NOW + 3600 + crate::token::MAX_CLOCK_SKEW_SECS)),
                            Some(t.expires_at)
                        );
                    }
                }
                Err(e) => {
                    let m = e.message();
                    prop_assert!(no_control(m), "{m}");
                    prop_assert_eq!(e.is_transient(), crate::http::is_retryable_status(status));
                    match e.code() {
                        ErrorCode::GooglePermissionDenied => {
                            prop_assert_eq!(status, 403);
                            prop_assert!(
                                m.contains("roles/iam.workloadIdentityUser")
                                    && m.contains(SERVICE_ACCOUNT)
                            );
                            prop_assert!(m.contains("principalSet://iam.googleapis.com/projects/"));
                        }
                        ErrorCode::GoogleLifetimeNotAllowed => {
                            let access = matches!(call, Call::AccessToken { .. });
                            prop_assert!(access, "lifetime refused for an ID token");
                            prop_assert!(m.contains(iam_credentials::LIFETIME_CONSTRAINT));
                        }
                        ErrorCode::GoogleInvalidGrant => prop_assert_eq!(status, 401),
                        ErrorCode::GoogleError => {}
                        other => prop_assert!(false, "unexpected {other}"),
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn expire_times() {
    let strategy = prop_oneof![
        any::<String>().prop_map(|s| (s, None)),
        rfc3339().prop_map(|(s, secs)| (s, Some(secs))),
        rfc3339()
            .prop_flat_map(|(s, _)| mutated(vec![s.into_bytes()]))
            .prop_map(|b| (String::from_utf8_lossy(&b).into_owned(), None)),
    ];
    fuzz("expire_times", strategy, |(text, want)| {
        let got = iam_credentials::parse_expire_time(&text);
        if let Some(secs) = want {
            prop_assert_eq!(got.as_ref().ok(), Some(&secs), "{}", text);
        }
        if let Err(e) = got {
            prop_assert_eq!(e.code(), ErrorCode::GoogleError);
            prop_assert!(no_control(e.message()));
        }
        Ok(())
    });
}

#[test]
fn jwt_payloads() {
    let strategy = prop_oneof![
        any::<String>().prop_map(|s| (s, None)),
        jwt().prop_map(|(t, claims)| (t, Some(claims))),
        jwt()
            .prop_flat_map(|(t, _)| mutated(vec![t.into_bytes()]))
            .prop_map(|b| (String::from_utf8_lossy(&b).into_owned(), None)),
    ];
    fuzz("jwt_payloads", strategy, |(token, want)| {
        let got = crate::jwt::claims(&token);
        if let Some(claims) = &want {
            prop_assert_eq!(got.as_ref().ok(), Some(claims));
        }
        match got {
            Ok(map) => {
                prop_assert_eq!(token.split('.').count(), 3);
                let exp = iam_credentials::jwt_exp(&token).ok();
                prop_assert_eq!(exp, map.get("exp").and_then(Value::as_i64));
            }
            Err(_) => prop_assert_eq!(
                iam_credentials::jwt_exp(&token).err().map(|e| e.code()),
                Some(ErrorCode::GoogleError)
            ),
        }
        Ok(())
    });
}

#[test]
fn aws_error_answers() {
    let planted = "aws-secret-planted-in-an-error-answer";
    secret::remember(planted);
    let code = prop::option::of(prop_oneof![
        prop::sample::select(AWS_CODES.to_vec()).prop_map(str::to_owned),
        any::<String>(),
    ]);
    let message = prop::option::of(prop_oneof![
        any::<String>(),
        any::<String>().prop_map(move |s| format!("{s} {planted} {s}")),
    ]);
    fuzz(
        "aws_error_answers",
        (code, message, status()),
        |(code, message, status)| {
            let e = aws::sts_service_error(
                "GetWebIdentityToken",
                code.as_deref(),
                message.as_deref(),
                status,
                "Grant sts:GetWebIdentityToken.",
            );
            let m = e.message();
            prop_assert!(!m.is_empty() && no_control(m) && m.len() < 2_000, "{m}");
            prop_assert!(!m.contains(planted), "a remembered secret was printed");
            let c = code.as_deref().unwrap_or_default();
            let (want, transient) = match c {
                "AccessDenied" | "AccessDeniedException" => (ErrorCode::AwsAccessDenied, false),
                "ExpiredToken" | "ExpiredTokenException" => (ErrorCode::AwsExpiredToken, false),
                "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException"
                | "IncompleteSignature" => (ErrorCode::AwsInvalidCredentials, false),
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                    (ErrorCode::AwsError, true)
                }
                _ => (ErrorCode::AwsError, status == 429 || status >= 500),
            };
            prop_assert_eq!(e.code(), want);
            prop_assert_eq!(e.is_transient(), transient);
            Ok(())
        },
    );
}

#[test]
fn executable_protocol_json_reads_back() {
    let token = ("[!-~]{1,300}", 0i64..4_000_000_000, 1i64..=43_200);
    let strategy = prop_oneof![
        (any::<String>(), any::<String>()).prop_map(|(c, m)| (c, m, None)),
        token.prop_map(|(t, issued, life)| (String::new(), String::new(), Some((t, issued, life)))),
    ];
    fuzz(
        "executable_protocol_json_reads_back",
        strategy,
        |(code, message, token)| {
            let (text, want) = match token {
                None => (
                    executable::failure_json_parts(&code, &message),
                    serde_json::json!({"version":1,"success":false,
                    "token_type":JWT_TOKEN_TYPE,"code":code,"message":message}),
                ),
                Some((t, issued_at, life)) => {
                    let ct = IssuedToken {
                        token: secret::Secret::new(t.clone()),
                        issued_at,
                        expires_at: issued_at + life,
                    };
                    let exp = executable::announced_expiry(&ct);
                    prop_assert!(exp <= ct.expires_at && exp > ct.issued_at);
                    (
                        executable::success_json(&ct),
                        serde_json::json!({"version":1,"success":true,
                        "token_type":JWT_TOKEN_TYPE,"id_token":t,"expiration_time":exp}),
                    )
                }
            };
            prop_assert!(!text.contains('\n') && !text.contains('\r'), "not one line");
            let back: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, want);
            // An error message made from hostile text still reads back, redacted.
            let e = Error::new(
                ErrorCode::GoogleError,
                format!("{message} eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln"),
            );
            let back: Value = serde_json::from_str(&executable::failure_json(&e)).unwrap();
            prop_assert!(
                !back["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("eyJhbGciOiJSUzI1NiJ9.eyJ4")
            );
            Ok(())
        },
    );
}

#[test]
fn provider_resources() {
    let strategy = prop_oneof![any::<String>(), provider_text()];
    fuzz("provider_resources", strategy, |text| {
        match text.parse::<Provider>() {
            Ok(p) => {
                let resource = p.resource();
                prop_assert_eq!(p.audience(), format!("//iam.googleapis.com/{resource}"));
                prop_assert_eq!(resource.parse::<Provider>().ok(), Some(p.clone()));
                prop_assert_eq!(p.audience().parse::<Provider>().ok(), Some(p.clone()));
                prop_assert!(
                    resource
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'-')
                );
                prop_assert!(p.project_number().bytes().all(|b| b.is_ascii_digit()));
            }
            Err(e) => {
                prop_assert_eq!(e.code(), ErrorCode::InvalidArgument);
                prop_assert!(e.message().starts_with("--provider"));
            }
        }
        Ok(())
    });
}

#[test]
fn sigv4_subject_tokens_for_any_audience() {
    fuzz(
        "sigv4_subject_tokens_for_any_audience",
        sigv4_input(),
        |input| {
            let SigV4Input {
                credentials,
                region,
                audience,
                time,
            } = input;
            let got = aws::caller_identity::subject_token(&credentials, &region, &audience, time);
            let valid_region = crate::settings::validate::region("--region", &region).is_ok();
            let valid_audience =
                !audience.is_empty() && audience.bytes().all(|b| (0x20..0x7f).contains(&b));
            match got {
                Ok(tok) => {
                    prop_assert!(
                        valid_region && valid_audience,
                        "accepted {audience:?} in {region:?}"
                    );
                    let text = tok.expose();
                    prop_assert!(
                        text.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-~/%".contains(&b))
                    );
                    let json = percent_encoding::percent_decode_str(text)
                        .decode_utf8()
                        .unwrap();
                    let v: Value = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(v["method"].as_str(), Some("POST"));
                    let url = aws::caller_identity::verification_url(&region).unwrap();
                    prop_assert_eq!(v["url"].as_str(), Some(url.as_str()));
                    let header = |k: &str| {
                        v["headers"]
                            .as_array()
                            .and_then(|h| h.iter().find(|x| x["key"] == k))
                            .and_then(|x| x["value"].as_str())
                            .map(str::to_owned)
                    };
                    prop_assert_eq!(
                        header("x-goog-cloud-target-resource"),
                        Some(audience.clone())
                    );
                    let session = header("x-amz-security-token");
                    prop_assert_eq!(session.as_deref(), credentials.session_token());
                    let auth = header("Authorization").unwrap_or_default();
                    let want = format!(
                        "AWS4-HMAC-SHA256 Credential={}/",
                        credentials.access_key_id()
                    );
                    prop_assert!(auth.starts_with(&want), "{auth}");
                }
                Err(e) => {
                    prop_assert!(
                        !(valid_region && valid_audience),
                        "refused a valid input: {e}"
                    );
                    prop_assert_eq!(e.code(), ErrorCode::InvalidArgument, "{}", e);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn the_committed_corpus_gives_the_expected_answers() {
    let p = provider();
    for (status, body) in corpus("google_sts") {
        let r = sts::parse_response(status, &body, &p, ProviderType::Oidc, NOW);
        assert_eq!(r.is_ok(), status == 200, "{status}: {r:?}");
    }
    let delegates = Vec::new();
    let target = Impersonation {
        iam_root: "https://iamcredentials.googleapis.com",
        service_account: SERVICE_ACCOUNT,
        delegates: &delegates,
    };
    for (status, body) in corpus("iam_credentials") {
        let call = if body.starts_with(b"{\"token\"") {
            Call::IdToken
        } else {
            Call::AccessToken { lifetime: 43_200 }
        };
        let r = iam_credentials::parse_response(call, status, &body, &target, NOW);
        assert_eq!(r.is_ok(), status == 200, "{status}: {r:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path().join("c")).expect("cache");
    let key = CacheKey::new("jwt", [("audience", "corpus")]);
    let hex = key_hex(&cache, &key);
    let path = cache.dir().join(format!("{}.json", key.stem()));
    for (status, body) in corpus("cache_entry") {
        let text = String::from_utf8_lossy(&body).replace("KEY", &hex);
        std::fs::write(&path, text).expect("write");
        let got = cache.get_fresh(&key, NOW + 60).expect("get_fresh");
        assert_eq!(got.is_some(), status == 200, "{status}: {got:?}");
    }
}
