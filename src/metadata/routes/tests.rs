use super::*;
use crate::env::Env;
use crate::service::{ServiceSettings, TokenService};

const SA: &str = "app@my-proj.iam.gserviceaccount.com";

fn app(project_number: Option<&str>) -> App {
    app_in(Env::from_pairs([]), project_number)
}

/// [`app`] whose AWS chain reads `env`.
fn app_in(env: Env, project_number: Option<&str>) -> App {
    let provider = "projects/123456789012/locations/global/workloadIdentityPools/p/providers/aws"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut s = ServiceSettings::new(provider, SA);
    s.cache.disabled = true;
    let service = TokenService::new(s, env).unwrap_or_else(|e| panic!("{e}"));
    App::new(
        Tokens::new(service),
        Identity {
            email: SA.into(),
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            project_id: Some("my-proj".into()),
            project_number: project_number.map(str::to_owned),
            universe_domain: "googleapis.com".into(),
        },
    )
}

fn ask(path: &str) -> Ask<'_> {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    Ask {
        method: "GET",
        path,
        query,
        flavor: Some(b"Google"),
        forwarded: false,
        host: Some(b"127.0.0.1:8954"),
        has_body: false,
        remote: false,
    }
}

fn answer(app: &App, a: &Ask<'_>) -> Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(app.answer(a))
}

#[test]
fn the_rules_come_before_any_route() {
    let app = app(None);
    let path = "/computeMetadata/v1/instance/service-accounts/default/email";
    let ok = answer(&app, &ask(path));
    assert_eq!((ok.status, ok.body.as_str()), (200, SA));

    let r = answer(
        &app,
        &Ask {
            flavor: None,
            ..ask(path)
        },
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Metadata-Flavor"), "{}", r.body);
    let r = answer(
        &app,
        &Ask {
            flavor: Some(b"google"),
            ..ask(path)
        },
    );
    assert_eq!(r.status, 403);
    let r = answer(
        &app,
        &Ask {
            forwarded: true,
            ..ask(path)
        },
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("X-Forwarded-For"), "{}", r.body);
    let r = answer(
        &app,
        &Ask {
            host: Some(b"evil.example.com"),
            ..ask(path)
        },
    );
    assert_eq!(r.status, 403);
    let r = answer(
        &app,
        &Ask {
            method: "POST",
            ..ask(path)
        },
    );
    assert_eq!(r.status, 405);
    let r = answer(
        &app,
        &Ask {
            has_body: true,
            ..ask(path)
        },
    );
    assert_eq!(r.status, 400);
    // The root answers detection probes without the header, as the real server does.
    let r = answer(
        &app,
        &Ask {
            flavor: None,
            ..ask("/")
        },
    );
    assert_eq!(r.status, 200);
}

#[test]
fn hosts_are_ip_literals_localhost_or_the_metadata_name() {
    for ok in [
        "127.0.0.1",
        "127.0.0.1:8954",
        "[::1]:8954",
        "[::1]",
        "169.254.169.254",
        "localhost",
        "LOCALHOST:80",
        "metadata.google.internal",
        "metadata.google.internal.",
        "metadata.google.internal:80",
    ] {
        assert!(host_allowed(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "evil.example.com",
        "127.0.0.1.nip.io",
        "metadata.google.internal.evil.com",
        "localhost.evil.com",
        "[::1",
        "[::1]x",
        "127.0.0.1:",
        "127.0.0.1:99999999",
        "",
        "metadata",
    ] {
        assert!(!host_allowed(bad.as_bytes()), "{bad}");
    }
    assert!(!host_allowed(b"\xff"));
}

#[test]
fn directories_answer_with_and_without_the_trailing_slash() {
    let app = app(Some("123456789012"));
    for path in [
        "/computeMetadata/v1/instance",
        "/computeMetadata/v1/instance/",
    ] {
        let r = answer(&app, &ask(path));
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "service-accounts/\n"),
            "{path}"
        );
    }
    let r = answer(&app, &ask("/computeMetadata/v1/instance/service-accounts/"));
    assert_eq!(r.body, format!("default/\n{SA}/\n"));
    for path in [
        "/computeMetadata/v1/instance/service-accounts/default/?recursive=true",
        "/computeMetadata/v1/instance/service-accounts/default?recursive=true",
        "/computeMetadata/v1/instance/service-accounts/APP@my-proj.iam.gserviceaccount.com/?recursive=true",
    ] {
        let r = answer(&app, &ask(path));
        assert_eq!(
            (r.status, r.content_type),
            (200, "application/json"),
            "{path}"
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        assert_eq!(v["email"], SA, "{path}");
        assert_eq!(v["aliases"][0], "default");
    }
    let r = answer(
        &app,
        &ask("/computeMetadata/v1/instance/service-accounts/?recursive=true"),
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    assert_eq!(v["default"]["email"], SA);
    assert_eq!(v[SA]["email"], SA);
    let r = answer(&app, &ask("/computeMetadata/v1/project/numeric-project-id"));
    assert_eq!(r.body, "123456789012");
    let r = answer(&app, &ask("/computeMetadata/v1/project/?recursive=true"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    assert_eq!(
        v,
        serde_json::json!({"numericProjectId": 123456789012u64, "projectId": "my-proj"})
    );
}

#[test]
fn leaves_answer_in_text() {
    let app = app(None);
    for (path, body) in [
        ("/computeMetadata/v1/project/project-id", "my-proj"),
        (
            "/computeMetadata/v1/universe/universe-domain",
            "googleapis.com",
        ),
        (
            "/computeMetadata/v1/universe/universe_domain",
            "googleapis.com",
        ),
        (
            "/computeMetadata/v1/instance/service-accounts/default/aliases",
            "default\n",
        ),
        (
            "/computeMetadata/v1/instance/service-accounts/default/scopes",
            "https://www.googleapis.com/auth/cloud-platform\n",
        ),
    ] {
        let r = answer(&app, &ask(path));
        assert_eq!((r.status, r.body.as_str()), (200, body), "{path}");
        assert!(r.content_type.starts_with("text/plain"), "{path}");
    }
}

#[test]
fn unknown_paths_accounts_and_values_are_404() {
    let app = app(None);
    for path in [
        "/computeMetadata/v1/instance/id",
        "/computeMetadata/v1/project/numeric-project-id",
        "/computeMetadata/v1/project/project-id/",
        "/computeMetadata/v1/instance/service-accounts/other@x.iam.gserviceaccount.com/token",
        "/computeMetadata/v1/instance/service-accounts/default/nothing",
        "/computeMetadata/v2/",
        "/latest/meta-data/",
        "/computeMetadata/v1beta1/instance",
    ] {
        let r = answer(&app, &ask(path));
        assert_eq!(r.status, 404, "{path}");
        assert!(r.content_type.starts_with("text/html"), "{path}");
    }
}

#[test]
fn an_identity_request_needs_an_audience() {
    let app = app(None);
    for path in [
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=",
        "/computeMetadata/v1/instance/service-accounts/default/identity?format=full",
    ] {
        let r = answer(&app, &ask(path));
        assert_eq!(r.status, 400, "{path}");
        assert!(r.body.contains("audience"), "{}", r.body);
    }
}

/// A client on another host (`--allow-remote`) learns the code of a
/// failure, not its message: that names the AWS role and local paths.
#[test]
fn a_remote_client_is_told_the_code_not_the_details() {
    let e = Error::new(
        ErrorCode::GooglePermissionDenied,
        "grant roles/iam.workloadIdentityUser to arn:aws:sts::123456789012:assumed-role/app/i-0abc \
         (credentials from /home/app/.aws/config)",
    );
    let local = Reply::upstream(&e, "an access token");
    assert_eq!(local.status, 500);
    assert!(local.body.contains("assumed-role/app"), "{}", local.body);
    let remote = Reply::upstream(&e, "an access token").for_remote();
    assert_eq!(remote.status, 500);
    assert!(
        remote.body.contains("GOOGLE_PERMISSION_DENIED"),
        "{}",
        remote.body
    );
    for detail in ["123456789012", "assumed-role", "/home/app"] {
        assert!(!remote.body.contains(detail), "{detail} in {}", remote.body);
    }
    // A bad value in the request itself is the client's to fix: said in full.
    let bad = Reply::upstream(&Error::invalid("audience too long"), "an ID token").for_remote();
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("audience too long"), "{}", bad.body);
}

/// Through the routes: a token that cannot be had (no AWS credentials at
/// all, nothing asked of any network) is the whole message for a local
/// client and the code alone for one on another host.
#[test]
fn a_failed_token_tells_a_remote_client_its_code_only() {
    let app = app_in(
        Env::from_pairs([("AWS_EC2_METADATA_DISABLED", "true")]),
        None,
    );
    let path = "/computeMetadata/v1/instance/service-accounts/default/token";
    let local = answer(&app, &ask(path));
    assert!(local.status >= 500, "{local:?}");
    let remote = answer(
        &app,
        &Ask {
            remote: true,
            ..ask(path)
        },
    );
    assert_eq!(remote.status, local.status);
    let code = local.body.split(": ").nth(1).unwrap_or_default().to_owned();
    assert!(
        !code.is_empty() && remote.body.contains(&code),
        "{remote:?}"
    );
    assert!(remote.body.contains("log says why"), "{remote:?}");
    assert!(
        remote.body.len() < local.body.len(),
        "{remote:?} vs {local:?}"
    );
}
