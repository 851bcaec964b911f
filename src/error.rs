//! Typed errors with stable codes.
//!
//! Every failure wif-helper reports carries an [`ErrorCode`]: a stable,
//! SCREAMING_SNAKE string that scripts and the executable protocol's `code`
//! field can match on, and a message that names the fix. Messages never
//! contain a token, key or signature (see `docs/security.md`).
//!
//! Exit statuses of the print commands (`docs/errors.md`): 0 success,
//! 1 permanent failure, 2 bad usage or input, 3 transient failure (a retry
//! later may succeed). Executable mode always exits 0 and reports failures in
//! its JSON, because Go and Java drop the message on a non-zero exit.

use std::fmt;

/// The stable identity of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A flag, environment variable or input file is invalid.
    InvalidArgument,
    /// No AWS credentials were found by the default chain.
    AwsCredentialsNotFound,
    /// No AWS region could be determined.
    AwsRegionMissing,
    /// The AWS account has not enabled outbound web identity federation.
    AwsOutboundFederationDisabled,
    /// AWS refused the call (missing permission, SCP, role trust).
    AwsAccessDenied,
    /// The AWS credentials have expired.
    AwsExpiredToken,
    /// AWS did not accept the credentials (unknown key, bad signature).
    AwsInvalidCredentials,
    /// Any other error answered by AWS.
    AwsError,
    /// Google STS refused the token exchange.
    GoogleInvalidGrant,
    /// IAM Credentials refused to impersonate the service account.
    GooglePermissionDenied,
    /// The requested token lifetime is not allowed by the organization policy.
    GoogleLifetimeNotAllowed,
    /// Any other error answered by Google.
    GoogleError,
    /// The network failed (connection refused or reset, DNS, TLS).
    NetworkError,
    /// The operation did not finish within its deadline.
    Timeout,
    /// The cache directory or an entry is unsafe to use.
    CacheInsecure,
    /// The cache could not be read or written.
    CacheError,
    /// A file exists and would be overwritten.
    FileExists,
    /// A bug in wif-helper.
    Internal,
}

impl ErrorCode {
    /// The stable string form, as printed and documented.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::AwsCredentialsNotFound => "AWS_CREDENTIALS_NOT_FOUND",
            Self::AwsRegionMissing => "AWS_REGION_MISSING",
            Self::AwsOutboundFederationDisabled => "AWS_OUTBOUND_FEDERATION_DISABLED",
            Self::AwsAccessDenied => "AWS_ACCESS_DENIED",
            Self::AwsExpiredToken => "AWS_EXPIRED_TOKEN",
            Self::AwsInvalidCredentials => "AWS_INVALID_CREDENTIALS",
            Self::AwsError => "AWS_ERROR",
            Self::GoogleInvalidGrant => "GOOGLE_INVALID_GRANT",
            Self::GooglePermissionDenied => "GOOGLE_PERMISSION_DENIED",
            Self::GoogleLifetimeNotAllowed => "GOOGLE_LIFETIME_NOT_ALLOWED",
            Self::GoogleError => "GOOGLE_ERROR",
            Self::NetworkError => "NETWORK_ERROR",
            Self::Timeout => "TIMEOUT",
            Self::CacheInsecure => "CACHE_INSECURE",
            Self::CacheError => "CACHE_ERROR",
            Self::FileExists => "FILE_EXISTS",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure: a stable code, a message that names the fix, and whether a
/// retry may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    transient: bool,
}

impl Error {
    /// A permanent error. The message goes through [`crate::secret::redact`],
    /// because it may quote what AWS or Google (or a proxy) answered.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let transient = matches!(code, ErrorCode::NetworkError | ErrorCode::Timeout);
        Self {
            code,
            message: crate::secret::redact(&message.into()),
            transient,
        }
    }

    /// An error that a later retry may cure (throttling, 5xx, resets).
    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            transient: true,
            ..Self::new(code, message)
        }
    }

    /// Shorthand for [`ErrorCode::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message (no secrets, names the fix).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The process exit status for the print commands.
    pub fn exit_code(&self) -> u8 {
        match self.code {
            ErrorCode::InvalidArgument | ErrorCode::FileExists => 2,
            _ if self.transient => 3,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(Error::invalid("x").exit_code(), 2);
        assert_eq!(Error::new(ErrorCode::AwsAccessDenied, "x").exit_code(), 1);
        assert_eq!(Error::new(ErrorCode::NetworkError, "x").exit_code(), 3);
        assert_eq!(Error::transient(ErrorCode::GoogleError, "x").exit_code(), 3);
    }

    #[test]
    fn messages_never_carry_a_known_secret_or_a_token_shape() {
        crate::secret::remember("aws-secret-key-only-error-tests-know");
        let e = Error::new(
            ErrorCode::AwsError,
            "AWS said: aws-secret-key-only-error-tests-know is wrong for eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.c2ln",
        );
        assert_eq!(e.message(), "AWS said: [redacted] is wrong for [redacted]");
    }

    #[test]
    fn display_leads_with_the_code() {
        let e = Error::new(ErrorCode::AwsRegionMissing, "set --region");
        assert_eq!(e.to_string(), "AWS_REGION_MISSING: set --region");
    }
}
