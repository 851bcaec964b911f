//! Input generators for `src/fuzz.rs`: hostile structured values,
//! byte-level mutations of the committed corpus, and arbitrary bytes.

use crate::cache::{Cache, CacheKey, Locked};
use crate::clock::FixedClock;
use crate::deadline::Deadline;
use crate::token::IssuedToken;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const NOW: i64 = 1_767_323_045;
pub(crate) const RESOURCE: &str =
    "projects/123456789012/locations/global/workloadIdentityPools/pool/providers/prov";
pub(crate) const SERVICE_ACCOUNT: &str = "app@my-project.iam.gserviceaccount.com";
pub(crate) const AWS_CODES: [&str; 14] = [
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OutboundWebIdentityFederationDisabledException",
    "ValidationError",
    "InternalFailure",
];

/// `tests/corpus/<name>/<status>-<what>.json`, sorted: (status, bytes).
pub(crate) fn corpus(name: &str) -> Vec<(u16, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let status = name.split('-').next().unwrap_or("0").parse().unwrap_or(0);
            (status, std::fs::read(p).unwrap_or_default())
        })
        .collect()
}

fn corpus_bodies(name: &str) -> Vec<Vec<u8>> {
    corpus(name).into_iter().map(|(_, b)| b).collect()
}

/// The `key` field the cache writes for `key` (its hash is private).
pub(crate) fn key_hex(cache: &Cache, key: &CacheKey) -> String {
    let deadline = Deadline::after(Duration::from_secs(5));
    if let Ok(Locked::Held(lock)) = cache.lock(key, &FixedClock(NOW), deadline) {
        lock.store(&IssuedToken {
            token: crate::secret::Secret::new("template-token"),
            expires_at: NOW + 3600,
            issued_at: NOW,
        });
    }
    let path = cache.dir().join(format!("{}.json", key.stem()));
    let v: Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or_default();
    v["key"].as_str().unwrap_or_default().to_owned()
}

/// One byte-level edit; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn interesting() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "\"",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "null",
            "true",
            "-1",
            "0",
            "1e400",
            "1.5",
            "9223372036854775808",
            "-9223372036854775809",
            "\\u0000",
            "\\ud800",
            "é",
            "\n",
            " ",
            "\"\":\"\"",
            "[]",
            "{}",
            "eyJ",
            ".",
            "=",
            "%",
            "\u{202e}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), interesting()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

pub(crate) fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: usize, b: &Vec<u8>| i % (b.len() + 1);
        match e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, bytes) => {
                let i = at(*i, &b);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Truncate(i) => {
                let i = at(*i, &b);
                b.truncate(i);
            }
            Edit::Duplicate(i, n) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                let copy = b[i..end].to_vec();
                b.splice(i..i, copy);
            }
        }
    }
    b
}

/// One of `corpus`, with up to six random edits.
pub(crate) fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(corpus),
        prop::collection::vec(edit(), 0..6),
    )
        .prop_map(|(b, e)| apply(b, &e))
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..400)
}

pub(crate) fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        "[ -~]{0,40}".prop_map(Value::from),
    ]
}

pub(crate) fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![
            200u16, 201, 204, 299, 400, 401, 403, 404, 409, 418, 429, 500, 501, 502, 503, 504
        ]),
        any::<u16>(),
    ]
}

fn google_error_object() -> impl Strategy<Value = Value> {
    let message = prop_oneof![
        any::<String>(),
        Just("Requested lifetime 43200s exceeds the maximum allowed lifetime".to_owned()),
        Just("API has not been used in project 1 before or it is disabled.".to_owned()),
        Just(
            "The audience in ID Token [a/b] does not match the expected audience \"c/d\"."
                .to_owned()
        ),
    ];
    let status = prop_oneof![
        prop::sample::select(vec![
            "PERMISSION_DENIED",
            "INVALID_ARGUMENT",
            "UNAUTHENTICATED",
            "NOT_FOUND"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    let reason = prop_oneof![
        prop::sample::select(vec![
            "SERVICE_DISABLED",
            "IAM_PERMISSION_DENIED",
            "lifetime"
        ])
        .prop_map(Value::from),
        json_scalar(),
    ];
    (
        any::<i64>(),
        message,
        status,
        prop::collection::vec(reason, 0..3),
    )
        .prop_map(|(c, m, s, r)| {
            let details: Vec<Value> = r.into_iter().map(|x| json!({ "reason": x })).collect();
            json!({"error": {"code": c, "message": m, "status": s, "details": details}})
        })
}

/// STS bodies, with the access token planted in structured ones.
pub(crate) fn sts_body() -> impl Strategy<Value = (Vec<u8>, Option<String>)> {
    let token = prop_oneof![
        "ya29\\.PLANTED[A-Za-z0-9_-]{8,40}".prop_map(|t| (Value::from(t.clone()), Some(t))),
        json_scalar().prop_map(|v| (v, None)),
    ];
    let expires = prop_oneof![
        (-10i64..100_000).prop_map(Value::from),
        "[0-9]{1,6}".prop_map(Value::from),
        json_scalar(),
    ];
    let error = prop::option::of(prop_oneof![
        prop::sample::select(vec![
            "invalid_grant",
            "invalid_target",
            "invalid_request",
            "unauthorized_client",
            "access_denied",
            "invalid_scope",
            "temporarily_unavailable",
        ])
        .prop_map(Value::from),
        json_scalar(),
        google_error_object().prop_map(|v| v["error"].clone()),
    ]);
    let description = prop::option::of(prop_oneof![
        any::<String>().prop_map(Value::from),
        "The audience in ID Token \\[[ -~]{0,30}\\] does not match the expected audience \"[ -~]{0,30}\"\\."
            .prop_map(Value::from),
    ]);
    let structured = (token, expires, error, description).prop_map(|((t, planted), e, err, d)| {
        let mut m = Map::new();
        m.insert("access_token".into(), t);
        m.insert("expires_in".into(), e);
        if let Some(err) = err {
            m.insert("error".into(), err);
        }
        if let Some(d) = d {
            m.insert("error_description".into(), d);
        }
        (Value::Object(m).to_string().into_bytes(), planted)
    });
    prop_oneof![
        3 => structured,
        3 => mutated(corpus_bodies("google_sts")).prop_map(|b| (b, None)),
        1 => bytes().prop_map(|b| (b, None)),
    ]
}

/// RFC 3339 text for an instant, in any offset, with 0–9 fraction digits.
pub(crate) fn rfc3339() -> impl Strategy<Value = (String, i64)> {
    (
        86_400i64..253_402_214_399,
        -1439i32..=1439,
        "[0-9]{0,9}",
        any::<bool>(),
    )
        .prop_map(|(secs, minutes, frac, zulu)| {
            let minutes = if zulu { 0 } else { minutes };
            let offset =
                time::UtcOffset::from_whole_seconds(minutes * 60).unwrap_or(time::UtcOffset::UTC);
            let t = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                .to_offset(offset);
            let suffix = if zulu {
                "Z".to_owned()
            } else {
                let sign = if minutes < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
            };
            let frac = if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{suffix}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            (text, secs)
        })
}

/// A JWT whose payload is an arbitrary JSON object (padded or not).
pub(crate) fn jwt() -> impl Strategy<Value = (String, Map<String, Value>)> {
    let exp = prop_oneof![
        (NOW - 100..NOW + 100_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    // No floats: serde_json does not promise to read back every f64 exactly.
    let claim = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    (
        "[A-Za-z0-9_-]{0,40}",
        prop::collection::btree_map("[a-z]{1,8}", claim, 0..6),
        prop::option::of(exp),
        "[A-Za-z0-9_-]{0,40}",
        any::<bool>(),
    )
        .prop_map(|(header, claims, exp, sig, pad)| {
            let mut map: Map<String, Value> = claims.into_iter().collect();
            if let Some(e) = exp {
                map.insert("exp".into(), e);
            }
            let payload = serde_json::to_vec(&map).unwrap_or_default();
            let engine = if pad {
                base64::engine::general_purpose::URL_SAFE
            } else {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
            };
            (format!("{header}.{}.{sig}", engine.encode(payload)), map)
        })
}

pub(crate) fn iam_body() -> impl Strategy<Value = Vec<u8>> {
    let access_token = prop_oneof!["[!-~]{1,60}".prop_map(Value::from), json_scalar()];
    let expire = prop_oneof![
        rfc3339().prop_map(|(s, _)| Value::from(s)),
        (NOW - 100..NOW + 100_000).prop_map(|s| {
            let t = time::OffsetDateTime::from_unix_timestamp(s)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            Value::from(
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            )
        }),
        json_scalar(),
    ];
    let access = (access_token, expire).prop_map(|(t, e)| {
        json!({"accessToken": t, "expireTime": e})
            .to_string()
            .into_bytes()
    });
    let id_token = prop_oneof![jwt().prop_map(|(t, _)| Value::from(t)), json_scalar(),];
    let id = id_token.prop_map(|t| json!({ "token": t }).to_string().into_bytes());
    prop_oneof![
        2 => access,
        2 => id,
        2 => google_error_object().prop_map(|v| v.to_string().into_bytes()),
        3 => mutated(corpus_bodies("iam_credentials")),
        1 => bytes(),
    ]
}

pub(crate) fn cache_entry_bytes(hex: &str) -> impl Strategy<Value = Vec<u8>> {
    let time = || {
        prop_oneof![
            (NOW - 4_000..NOW + 700_000).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            json_scalar(),
        ]
    };
    let structured = (
        prop_oneof![3 => Just(json!(1)), 1 => json_scalar()],
        prop_oneof![3 => Just(Value::from(hex)), 1 => "[0-9a-f]{64}".prop_map(Value::from), 1 => json_scalar()],
        prop_oneof!["[!-~]{1,80}".prop_map(Value::from), json_scalar()],
        time(),
        time(),
    )
        .prop_map(|(schema, key, token, expires_at, issued_at)| {
            json!({"schema": schema, "key": key, "token": token,
                   "expires_at": expires_at, "issued_at": issued_at})
            .to_string()
            .into_bytes()
        });
    let corpus: Vec<Vec<u8>> = corpus_bodies("cache_entry")
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).replace("KEY", hex).into_bytes())
        .collect();
    prop_oneof![3 => structured, 3 => mutated(corpus), 1 => bytes()]
}

pub(crate) fn provider_text() -> impl Strategy<Value = String> {
    let id = || {
        prop_oneof![
            4 => "[a-z0-9-]{1,63}",
            1 => Just("global".to_owned()),
            1 => "[ -~]{0,70}",
            1 => "[a-z0-9-]{64}",
        ]
    };
    (
        prop::sample::select(vec![
            "",
            "//iam.googleapis.com/",
            "https://iam.googleapis.com/",
            "http://iam.googleapis.com/",
            "//iam.googleapis.com",
        ]),
        prop_oneof![3 => "[0-9]{1,15}", 1 => "[ -~]{0,8}"],
        id(),
        id(),
        id(),
        prop_oneof![3 => Just(String::new()), 1 => "/[ -~]{0,10}"],
    )
        .prop_map(|(prefix, n, l, p, q, extra)| {
            format!(
                "{prefix}projects/{n}/locations/{l}/workloadIdentityPools/{p}/providers/{q}{extra}"
            )
        })
}

#[derive(Debug, Clone)]
pub(crate) struct SigV4Input {
    pub credentials: aws_credential_types::Credentials,
    pub region: String,
    pub audience: String,
    pub time: SystemTime,
}

pub(crate) fn sigv4_input() -> impl Strategy<Value = SigV4Input> {
    let audience = prop_oneof![
        any::<String>(),
        "[ -~]{0,200}",
        Just(format!("//iam.googleapis.com/{RESOURCE}")),
    ];
    let region =
        prop_oneof![3 => "[a-z]{2}-[a-z]{4,9}-[1-9]", 1 => any::<String>(), 1 => "[a-z0-9-]{0,70}"];
    (
        "[A-Z0-9]{16,24}",
        "[A-Za-z0-9/+]{40}",
        prop::option::of("[A-Za-z0-9/+=]{20,400}"),
        region,
        audience,
        0u64..4_102_444_800,
    )
        .prop_map(|(akid, secret, token, region, audience, secs)| SigV4Input {
            credentials: aws_credential_types::Credentials::new(akid, secret, token, None, "fuzz"),
            region,
            audience,
            time: UNIX_EPOCH + Duration::from_secs(secs),
        })
}
