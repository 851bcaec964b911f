//! Google's side of the exchange: STS token exchange and IAM Credentials.
//!
//! * [`sts`]: RFC 8693 token exchange at `token_url`, turning a subject
//!   token (`crate::subject`) into a federated access token.
//! * [`iam_credentials`]: `generateAccessToken` / `generateIdToken` for a
//!   service account, authorized by the federated token.
//!
//! Each module keeps response parsing in pure functions (status + body in,
//! token or a fix-naming [`crate::error::Error`] out) so every Google error
//! shape is unit-tested without a network. All calls go through
//! [`crate::http::send_with_retry`]. Nothing here knows AWS: what the
//! federated identity is on the AWS side, and so which member to bind, is
//! `crate::hints`' job.

pub(crate) mod iam_credentials;
pub(crate) mod sts;
