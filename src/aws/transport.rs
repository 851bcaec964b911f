//! The HTTP client of every AWS call: proxies for AWS services, never for
//! instance metadata or container credentials.
//!
//! Since behavior version 2025-08-07 the AWS SDK's default client routes
//! *every* request through `HTTP_PROXY`/`HTTPS_PROXY` (minus `NO_PROXY`),
//! instance metadata and container credentials included. A proxy answering
//! those returns the credentials of the proxy's host, not of this workload
//! (boto#1146); the other AWS SDKs bypass proxies for them (botocore#2644,
//! aws-sdk-kotlin#1315). [`client`] keeps the SDK's default for everything
//! else (AWS STS honours the proxy variables and `NO_PROXY`) and connects
//! directly to:
//!
//! * the IMDS addresses `169.254.169.254` and `fd00:ec2::254`;
//! * the ECS and EKS Pod Identity addresses `169.254.170.2`,
//!   `169.254.170.23` and `fd00:ec2::23`;
//! * the endpoints named by `AWS_EC2_METADATA_SERVICE_ENDPOINT` and
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` (read from the same [`Env`]
//!   aws-config reads them from).
//!
//! Every answer, on either route, is capped at [`MAX_BODY_BYTES`]: the SDK
//! buffers whole bodies, so a hostile or broken endpoint (or a proxy) could
//! otherwise make it hold hundreds of megabytes. An answer that declares a
//! larger `Content-Length` is refused before its body is read; a longer
//! chunked one once the limit is passed. Either way the request fails with a
//! [`TooLarge`] connector error, which the SDK does not retry. The SDK does
//! not follow redirects: a 3xx is an answer like any other, an AWS error.

use crate::env::Env;
use crate::http::MAX_BODY_BYTES;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;

/// Hosts that serve AWS credentials to the machine or the task itself.
const METADATA_HOSTS: [&str; 5] = [
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.170.2",
    "169.254.170.23",
    "fd00:ec2::23",
];

/// Environment variables that move the metadata or container endpoint.
const ENDPOINT_VARS: [&str; 2] = [
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// `(host, port)` of a URL, as the WHATWG URL parser reads it (the host
/// lower-cased, an IPv6 one without brackets and compressed), the port
/// defaulted from the scheme. `None` if it is not a URL with a host.
pub(crate) fn authority(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.to_ascii_lowercase(), url.port_or_known_default()?))
}

/// Decides which requests go around the proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bypass {
    endpoints: Vec<(String, u16)>,
}

impl Bypass {
    /// The fixed metadata hosts plus the endpoints `var` names (a lookup
    /// such as the process environment).
    pub(crate) fn new(var: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            endpoints: ENDPOINT_VARS
                .iter()
                .filter_map(|v| var(v))
                .filter_map(|url| authority(&url))
                .collect(),
        }
    }

    /// Whether a request to `url` must connect directly.
    pub(crate) fn is_direct(&self, url: &str) -> bool {
        let Some((host, port)) = authority(url) else {
            return false;
        };
        METADATA_HOSTS.contains(&host.as_str())
            || self.endpoints.iter().any(|(h, p)| *h == host && *p == port)
    }
}

/// The client for `aws_config`: the SDK's default HTTPS client (rustls with
/// aws-lc, proxies from the environment) except for metadata endpoints,
/// which get the same client without a proxy.
pub(crate) fn client(env: &Env) -> SharedHttpClient {
    let bypass = Bypass::new(|v| env.get(v).map(str::to_owned));
    SharedHttpClient::new(Routing {
        bypass: Arc::new(bypass),
        proxied: https_client(ProxyConfig::from_env),
        direct: https_client(ProxyConfig::disabled),
    })
}

/// What aws-smithy-runtime's default HTTPS client builds, with `proxy`.
fn https_client(proxy: fn() -> ProxyConfig) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(proxy()));
        // The static binary resolves without the C library (`dns.rs`).
        #[cfg(feature = "static-dns")]
        return b.build_with_resolver(crate::dns::Resolver::default());
        #[cfg(not(feature = "static-dns"))]
        b.build()
    })
}

#[derive(Debug)]
struct Routing {
    bypass: Arc<Bypass>,
    proxied: SharedHttpClient,
    direct: SharedHttpClient,
}

impl HttpClient for Routing {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RoutingConnector {
            bypass: Arc::clone(&self.bypass),
            proxied: self.proxied.http_connector(settings, components),
            direct: self.direct.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct RoutingConnector {
    bypass: Arc<Bypass>,
    proxied: SharedHttpConnector,
    direct: SharedHttpConnector,
}

impl HttpConnector for RoutingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let from = authority(request.uri())
            .map(|(host, port)| format!("{host}:{port}"))
            .unwrap_or_else(|| "?".into());
        let answer = if self.bypass.is_direct(request.uri()) {
            self.direct.call(request)
        } else {
            self.proxied.call(request)
        };
        HttpConnectorFuture::new(async move { read_capped(answer.await?, from).await })
    }
}

/// An AWS answer larger than [`MAX_BODY_BYTES`].
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// `host:port` of the endpoint that sent it.
    from: String,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the answer from {} is larger than {MAX_BODY_BYTES} bytes, far more than any AWS \
             answer, and was refused; check what AWS_ENDPOINT_URL_STS, the credentials \
             endpoint and any proxy in the way point to",
            self.from
        )
    }
}

impl std::error::Error for TooLarge {}

impl TooLarge {
    /// The [`TooLarge`] among `e` and its sources, if any.
    pub(crate) fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<Self>())
    }
}

/// `response` with its body read into memory, at most [`MAX_BODY_BYTES`].
async fn read_capped(
    mut response: HttpResponse,
    from: String,
) -> Result<HttpResponse, ConnectorError> {
    let too_large = |from| ConnectorError::other(Box::new(TooLarge { from }), None);
    let body = std::mem::replace(response.body_mut(), SdkBody::taken());
    if body
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large(from));
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(read) => {
            *response.body_mut() = SdkBody::from(read.to_bytes());
            Ok(response)
        }
        Err(e) if e.is::<LengthLimitError>() => Err(too_large(from)),
        // A connection lost mid-body: retried like one lost before it.
        Err(e) => Err(ConnectorError::io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_parsed_with_default_ports() {
        let a = |u: &str| authority(u);
        assert_eq!(
            a("http://169.254.169.254/latest/api/token"),
            Some(("169.254.169.254".into(), 80))
        );
        assert_eq!(
            a("https://sts.us-east-1.amazonaws.com"),
            Some(("sts.us-east-1.amazonaws.com".into(), 443))
        );
        assert_eq!(
            a("http://[fd00:ec2::254]/latest"),
            Some(("fd00:ec2::254".into(), 80))
        );
        assert_eq!(
            a("http://[FD00:EC2::23]:8080/x"),
            Some(("fd00:ec2::23".into(), 8080))
        );
        assert_eq!(
            a("http://user@127.0.0.1:1234?x"),
            Some(("127.0.0.1".into(), 1234))
        );
        for bad in [
            "",
            "no-scheme",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://[::1",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }

    #[test]
    fn metadata_and_configured_endpoints_are_direct_and_aws_services_are_not() {
        let b = Bypass::new(|v| match v {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI" => Some("http://127.0.0.1:9911/creds".into()),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT" => Some("not a url".into()),
            _ => None,
        });
        for direct in [
            "http://169.254.169.254/latest/api/token",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://169.254.170.2/v2/credentials/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://127.0.0.1:9911/creds",
        ] {
            assert!(b.is_direct(direct), "{direct}");
        }
        for proxied in [
            "https://sts.us-east-1.amazonaws.com/",
            "https://portal.sso.us-east-1.amazonaws.com/federation/credentials",
            "http://127.0.0.1:9912/",
            "http://169.254.169.254.evil.example/",
            "garbage",
        ] {
            assert!(!b.is_direct(proxied), "{proxied}");
        }
    }
}
