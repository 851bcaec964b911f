//! The AWS side: STS query API, the outbound-federation issuer, IMDSv2 and
//! the container credentials endpoint. This module holds the query-protocol
//! XML envelope and error shape shared by the STS actions.

pub(crate) mod issuer;
pub(crate) mod metadata;
pub(crate) mod sts;
pub(crate) mod web_identity;

use crate::server::ErrorCode;
use crate::sigv4::SigV4Error;
use crate::util::{uuid_v4, xml_escape};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// An STS error answered in the query-protocol `ErrorResponse` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl AwsError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `ValidationError` (400).
    pub(crate) fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new(400, "ValidationError", message)
    }

    /// A "1 validation error detected" message for one parameter.
    pub(crate) fn constraint(value: Option<&str>, member: &str, constraint: &str) -> AwsError {
        let value = value.map_or("null".to_string(), |v| format!("'{v}'"));
        AwsError::validation(format!(
            "1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// `AccessDenied` (403).
    pub(crate) fn access_denied(message: impl Into<String>) -> AwsError {
        AwsError::new(403, "AccessDenied", message)
    }
}

impl From<SigV4Error> for AwsError {
    fn from(e: SigV4Error) -> AwsError {
        AwsError {
            status: e.status,
            code: e.code.into(),
            message: e.message,
        }
    }
}

fn xml_response(status: u16, body: String, error: Option<String>) -> Response {
    let request_id = uuid_v4();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.replace("{REQUEST_ID}", &request_id)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    if let Some(code) = error {
        resp.extensions_mut().insert(ErrorCode(code));
    }
    resp
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"{STS_XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{{REQUEST_ID}}</RequestId>\n</ErrorResponse>\n",
            xml_escape(&self.code),
            xml_escape(&self.message),
        );
        xml_response(self.status, body, Some(self.code))
    }
}

/// A successful `<ActionResponse><ActionResult>inner</ActionResult>...` answer.
/// `inner` must already be XML-escaped.
pub(crate) fn xml_ok(action: &str, inner: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{STS_XMLNS}\">\n  <{action}Result>\n{inner}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{{REQUEST_ID}}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n"
    );
    xml_response(200, body, None)
}

/// `<Name>escaped value</Name>` indented for the result body.
pub(crate) fn el(indent: usize, name: &str, value: &str) -> String {
    format!("{:indent$}<{name}>{}</{name}>\n", "", xml_escape(value))
}

/// The `<Credentials>` block of AssumeRole* results.
pub(crate) fn credentials_xml(c: &crate::state::IssuedCredentials) -> String {
    let mut s = String::from("    <Credentials>\n");
    s += &el(6, "AccessKeyId", &c.access_key_id);
    s += &el(6, "SecretAccessKey", &c.secret_access_key);
    s += &el(6, "SessionToken", &c.session_token);
    s += &el(6, "Expiration", &crate::util::rfc3339(c.expiration));
    s += "    </Credentials>\n";
    s
}

/// The `<AssumedRoleUser>` block of AssumeRole* results.
pub(crate) fn assumed_role_user_xml(p: &crate::principal::Principal) -> String {
    let mut s = String::from("    <AssumedRoleUser>\n");
    s += &el(6, "AssumedRoleId", &p.user_id());
    s += &el(6, "Arn", &p.arn());
    s += "    </AssumedRoleUser>\n";
    s
}
