//! STS query API (`POST /` and `POST /aws/sts`): GetCallerIdentity,
//! AssumeRole and GetWebIdentityToken (SigV4-verified), and dispatch of the
//! unsigned AssumeRoleWithWebIdentity.

use super::{AwsError, assumed_role_user_xml, credentials_xml, el, xml_ok};
use crate::principal::{Principal, parse_role_arn, valid_session_name};
use crate::sigv4::{self, KeyInfo, SignedRequest};
use crate::state::Shared;
use crate::util::{form_get, parse_form, rfc3339, uuid_v4};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use time::Duration;

const VERSION: &str = "2011-06-15";

/// The STS actions the emulator implements.
pub(crate) const ACTIONS: [&str; 4] = [
    "GetCallerIdentity",
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
    "GetWebIdentityToken",
];

/// Axum handler for the STS endpoint.
pub(crate) async fn handle(
    State(app): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&app, &method, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Header pairs of a received request (non-UTF-8 values decoded lossily).
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Query-API parameters: the query string's, then the form body's.
pub(crate) fn query_and_form(query: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut params = parse_form(query.as_bytes());
    params.extend(parse_form(body));
    params
}

fn dispatch(
    app: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AwsError> {
    let params = query_and_form(uri.query().unwrap_or(""), body);
    let Some(action) = form_get(&params, "Action") else {
        return Err(AwsError::new(400, "MissingAction", "Missing Action"));
    };
    let version = form_get(&params, "Version").unwrap_or("");
    if !ACTIONS.contains(&action) || version != VERSION {
        return Err(AwsError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        ));
    }
    if action == "AssumeRoleWithWebIdentity" {
        return super::web_identity::assume_role_with_web_identity(app, &params);
    }
    let req = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: header_pairs(headers),
        body,
    };
    let region = &app.config.aws.region;
    let caller = sigv4::verify(&req, region, "sts", app.now(), |id| app.key_info(id))?;
    match action {
        "GetCallerIdentity" => Ok(get_caller_identity(&caller.principal)),
        "AssumeRole" => assume_role(app, &caller.principal, &params),
        _ => get_web_identity_token(app, &caller, &params),
    }
}

fn get_caller_identity(p: &Principal) -> Response {
    let inner =
        el(4, "Arn", &p.arn()) + &el(4, "UserId", &p.user_id()) + &el(4, "Account", p.account());
    xml_ok("GetCallerIdentity", &inner)
}

/// Parses an optional integer parameter; garbage is a validation error.
pub(crate) fn int_param(
    params: &[(String, String)],
    name: &str,
    member: &str,
) -> Result<Option<i64>, AwsError> {
    match form_get(params, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| AwsError::constraint(Some(v), member, "Member must be a valid integer")),
    }
}

/// Validates `DurationSeconds` for AssumeRole*: 900..=max.
pub(crate) fn session_duration(
    params: &[(String, String)],
    max: u32,
) -> Result<Duration, AwsError> {
    let secs = int_param(params, "DurationSeconds", "durationSeconds")?.unwrap_or(3600);
    if secs < 900 {
        return Err(AwsError::constraint(
            Some(&secs.to_string()),
            "durationSeconds",
            "Member must have value greater than or equal to 900",
        ));
    }
    if secs > 43200 {
        return Err(AwsError::constraint(
            Some(&secs.to_string()),
            "durationSeconds",
            "Member must have value less than or equal to 43200",
        ));
    }
    if secs > i64::from(max) {
        return Err(AwsError::validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    Ok(Duration::seconds(secs))
}

/// A validated `RoleArn` + `RoleSessionName`.
pub(crate) struct RoleRequest {
    pub(crate) arn: String,
    pub(crate) account: String,
    pub(crate) name: String,
    pub(crate) session: String,
}

/// Validates `RoleArn` and `RoleSessionName`.
pub(crate) fn role_and_session(params: &[(String, String)]) -> Result<RoleRequest, AwsError> {
    let arn = form_get(params, "RoleArn")
        .ok_or_else(|| AwsError::constraint(None, "roleArn", "Member must not be null"))?;
    let session = form_get(params, "RoleSessionName")
        .ok_or_else(|| AwsError::constraint(None, "roleSessionName", "Member must not be null"))?;
    if !valid_session_name(session) {
        return Err(AwsError::constraint(
            Some(session),
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64",
        ));
    }
    let (account, name) =
        parse_role_arn(arn).ok_or_else(|| AwsError::validation(format!("{arn} is invalid")))?;
    Ok(RoleRequest {
        arn: arn.into(),
        account,
        name,
        session: session.into(),
    })
}

fn assume_role(
    app: &Shared,
    caller: &Principal,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let req = role_and_session(params)?;
    let role = app
        .role(&req.name)
        .filter(|r| r.assumable && req.account == app.config.aws.account_id)
        .ok_or_else(|| {
            AwsError::access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.arn(),
                req.arn
            ))
        })?;
    let mut max = role.max_session_duration;
    if matches!(caller, Principal::AssumedRole { .. }) {
        max = max.min(3600);
        let asked = int_param(params, "DurationSeconds", "durationSeconds")?.unwrap_or(3600);
        if asked > 3600 {
            return Err(AwsError::validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
    }
    let lifetime = session_duration(params, max)?;
    let creds = app.issue_role_credentials(&req.name, &req.session, lifetime);
    let inner = assumed_role_user_xml(&creds.principal) + &credentials_xml(&creds);
    Ok(xml_ok("AssumeRole", &inner))
}

/// `Audience.member.N` values in N order (N = 1, 2, ...; gaps end the list).
fn audiences(params: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for n in 1.. {
        match form_get(params, &format!("Audience.member.{n}")) {
            Some(v) => out.push(v.to_string()),
            None => break,
        }
    }
    out
}

/// `Tags.member.N.Key` / `.Value` pairs.
fn request_tags(params: &[(String, String)]) -> Result<Map<String, Value>, AwsError> {
    let mut tags = Map::new();
    for n in 1.. {
        let Some(key) = form_get(params, &format!("Tags.member.{n}.Key")) else {
            break;
        };
        let value = form_get(params, &format!("Tags.member.{n}.Value")).ok_or_else(|| {
            AwsError::constraint(
                None,
                &format!("tags.{n}.member.value"),
                "Member must not be null",
            )
        })?;
        tags.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(tags)
}

fn get_web_identity_token(
    app: &Shared,
    caller: &KeyInfo,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let principal = &caller.principal;
    if !app.outbound_federation() {
        return Err(AwsError::new(
            403,
            "OutboundWebIdentityFederationDisabledException",
            "Outbound web identity federation is disabled for this account. Enable it with iam:EnableOutboundWebIdentityFederation.",
        ));
    }
    if app
        .config
        .aws
        .web_identity_token_denied
        .iter()
        .any(|d| principal.matches(d))
    {
        return Err(AwsError::access_denied(format!(
            "User: {} is not authorized to perform: sts:GetWebIdentityToken because no identity-based policy allows the sts:GetWebIdentityToken action",
            principal.arn()
        )));
    }
    let aud = audiences(params);
    if aud.is_empty() {
        return Err(AwsError::constraint(
            None,
            "audience",
            "Member must not be null",
        ));
    }
    if aud.len() > 10 {
        return Err(AwsError::constraint(
            Some(&aud.len().to_string()),
            "audience",
            "Member must have length less than or equal to 10",
        ));
    }
    if let Some(bad) = aud.iter().find(|a| a.is_empty() || a.len() > 1000) {
        return Err(AwsError::constraint(
            Some(bad),
            "audience.member",
            "Member must have length between 1 and 1000",
        ));
    }
    match form_get(params, "SigningAlgorithm") {
        Some("RS256") => {}
        Some("ES384") => {
            return Err(AwsError::validation(
                "SigningAlgorithm ES384 is valid in AWS but not implemented by wif-emulator; use RS256",
            ));
        }
        other => {
            return Err(AwsError::constraint(
                other,
                "signingAlgorithm",
                "Member must satisfy enum value set: [RS256, ES384]",
            ));
        }
    }
    let secs = int_param(params, "DurationSeconds", "durationSeconds")?.unwrap_or(300);
    if !(60..=3600).contains(&secs) {
        let c = if secs < 60 {
            "greater than or equal to 60"
        } else {
            "less than or equal to 3600"
        };
        return Err(AwsError::constraint(
            Some(&secs.to_string()),
            "durationSeconds",
            &format!("Member must have value {c}"),
        ));
    }
    let tags = request_tags(params)?;
    let now = app.now();
    let exp = now + Duration::seconds(secs);
    if caller
        .expiration
        .is_some_and(|session_exp| exp > session_exp)
    {
        return Err(AwsError::new(
            403,
            "SessionDurationEscalationException",
            "The requested token duration would extend the session beyond its original expiration time.",
        ));
    }
    let mut aws_claims = json!({
        "aws_account": principal.account(),
        "source_region": app.config.aws.region,
        "principal_id": principal.identity_arn(),
    });
    if let Some(session_exp) = caller.expiration {
        aws_claims["original_session_exp"] = json!(rfc3339(session_exp));
    }
    if !tags.is_empty() {
        aws_claims["request_tags"] = Value::Object(tags);
    }
    let claims = json!({
        "iss": app.issuer(),
        "sub": principal.identity_arn(),
        "aud": match aud.as_slice() { [one] => json!(one), all => json!(all) },
        "iat": now.unix_timestamp(),
        "exp": exp.unix_timestamp(),
        "jti": uuid_v4(),
        "https://sts.amazonaws.com/": aws_claims,
    });
    let token = app.aws_issuer_key.sign(&claims);
    app.record_secret(&token);
    let inner = el(4, "WebIdentityToken", &token) + &el(4, "Expiration", &rfc3339(exp));
    Ok(xml_ok("GetWebIdentityToken", &inner))
}
