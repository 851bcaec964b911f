//! Unit tests of the Google HTTP client: classification, backoff, retries, redirects.

use super::fake::FakeServer;
use super::*;

#[test]
fn status_classification_table() {
    for s in [429, 500, 502, 503, 504] {
        assert!(is_retryable_status(s), "{s}");
    }
    for s in [
        200, 201, 204, 301, 400, 401, 403, 404, 409, 412, 413, 422, 501, 505,
    ] {
        assert!(!is_retryable_status(s), "{s}");
    }
}

#[test]
fn transport_classification_table() {
    use TransportFailure::*;
    // (builder, timeout, fatal) -> class, retryable
    let table = [
        ((true, false, false), Invalid, false),
        ((true, true, false), Invalid, false),
        ((false, true, false), Timeout, true),
        ((false, true, true), Timeout, true),
        ((false, false, true), Fatal, false),
        ((false, false, false), Network, true),
    ];
    for ((b, t, f), class, retry) in table {
        let c = TransportFailure::from_flags(b, t, f);
        assert_eq!(c, class, "{b} {t} {f}");
        assert_eq!(c.is_retryable(), retry, "{c:?}");
    }
}

#[test]
fn backoff_ceilings_double_from_100ms_and_cap_at_2s() {
    let ms = |r| backoff_ceiling(r).as_millis();
    assert_eq!(
        [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5)],
        [100, 200, 400, 800, 1600, 2000]
    );
    assert_eq!(ms(31), 2000);
    assert_eq!(ms(u32::MAX), 2000);
}

#[test]
fn full_jitter_stays_within_zero_and_the_ceiling() {
    for retry in 0..8 {
        let ceiling = backoff_ceiling(retry);
        for r in [0, 1, 99, 100, 101, 12_345, u64::MAX, random(), random()] {
            assert!(backoff(retry, r) <= ceiling, "{retry} {r}");
        }
        assert_eq!(backoff(retry, 0), Duration::ZERO);
        assert_eq!(
            backoff(retry, u64::try_from(ceiling.as_millis()).unwrap_or(0)),
            ceiling
        );
    }
}

#[test]
fn jitter_source_varies() {
    let draws: std::collections::HashSet<u64> = (0..16).map(|_| random()).collect();
    assert!(draws.len() > 1);
}

#[test]
fn debug_of_a_response_hides_the_body() {
    let r = Response {
        retry_after: None,
        status: 200,
        body: b"{\"access_token\":\"ya29.secret\"}".to_vec(),
    };
    let d = format!("{r:?}");
    assert!(!d.contains("ya29"), "{d}");
    assert!(d.contains("200"));
}

#[tokio::test]
async fn past_deadline_means_timeout_without_a_request() {
    let client = reqwest::Client::new();
    let e = send_with_retry(Deadline::after(Duration::ZERO), "Google STS", || {
        client.post("http://127.0.0.1:9/x")
    })
    .await
    .err();
    assert_eq!(e.map(|e| e.code()), Some(ErrorCode::Timeout));
}

#[tokio::test]
async fn refused_connection_is_a_network_error_naming_the_host_within_the_deadline() {
    // Port 9 (discard) on loopback is closed here; connection refused is immediate.
    let client = reqwest::Client::new();
    let deadline = Deadline::after(Duration::from_secs(3));
    let e = send_with_retry(deadline, "Google STS", || {
        client.post("http://127.0.0.1:9/v1/token?x=secret")
    })
    .await
    .err()
    .unwrap_or_else(|| panic!("expected an error"));
    assert!(Instant::now() <= deadline.instant() + Duration::from_millis(200));
    assert_eq!(e.code(), ErrorCode::NetworkError, "{e}");
    assert!(e.message().contains("127.0.0.1"), "{e}");
    assert!(!e.message().contains("secret"), "{e}");
    assert!(e.is_transient());
}

fn script(statuses: &[u16]) -> Vec<(u16, String)> {
    statuses
        .iter()
        .map(|s| (*s, format!("{{\"n\":{s}}}")))
        .collect()
}

#[tokio::test]
async fn retryable_statuses_are_retried_until_success() -> Result<()> {
    let server = FakeServer::start(script(&[503, 429, 502, 200]));
    let client = client(Duration::from_secs(5))?;
    let r = send_with_retry(
        Deadline::after(Duration::from_secs(10)),
        "Google STS",
        || client.post(&server.url),
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"n\":200}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    assert!(
        reqs[0]
            .to_ascii_lowercase()
            .contains(&format!("user-agent: {USER_AGENT}")),
        "{}",
        reqs[0]
    );
    Ok(())
}

#[tokio::test]
async fn other_4xx_are_returned_at_once() -> Result<()> {
    for status in [400, 401, 403, 404] {
        let server = FakeServer::start(script(&[status, 200]));
        let client = client(Duration::from_secs(5))?;
        let r = send_with_retry(Deadline::after(Duration::from_secs(10)), "IAM", || {
            client.post(&server.url)
        })
        .await?;
        assert_eq!(r.status, status);
        assert_eq!(server.requests().len(), 1, "{status}");
    }
    Ok(())
}

#[tokio::test]
async fn redirects_are_not_followed_or_retried_and_name_both_hosts() -> Result<()> {
    for status in [301, 302, 303, 307, 308] {
        let elsewhere = FakeServer::start(script(&[200, 200]));
        let redirecting = FakeServer::with_headers(vec![
            (
                status,
                format!("location: {}/steal?subject_token=x\r\n", elsewhere.url),
                "{}".into(),
            ),
            (200, String::new(), "{}".into()),
        ]);
        let client = client(Duration::from_secs(5))?;
        let e = send_with_retry(
            Deadline::after(Duration::from_secs(10)),
            "Google STS",
            || {
                client
                    .post(format!("{}/v1/token", redirecting.url))
                    .body("subject_token=eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.c2ln")
            },
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{status}: expected an error"));
        assert_eq!(e.code(), ErrorCode::GoogleError, "{e}");
        assert!(!e.is_transient(), "{e}");
        let to = format!(
            "redirect (HTTP {status}) to {}",
            elsewhere.url.replace("localhost", "127.0.0.1")
        );
        let m = e.message();
        assert!(
            m.contains("Google STS at 127.0.0.1") && m.contains(&to),
            "{m}"
        );
        assert!(!m.contains("steal") && !m.contains("subject_token"), "{m}");
        assert_eq!(redirecting.requests().len(), 1, "{status} was retried");
        assert_eq!(elsewhere.requests().len(), 0, "{status} was followed");
    }
    Ok(())
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_status_is_returned() -> Result<()> {
    let server = FakeServer::start(script(&[500; 8]));
    let client = client(Duration::from_secs(5))?;
    let r = send_with_retry(Deadline::after(Duration::from_secs(20)), "IAM", || {
        client.post(&server.url)
    })
    .await?;
    assert_eq!(r.status, 500);
    assert_eq!(
        server.requests().len(),
        usize::try_from(MAX_ATTEMPTS).unwrap_or(0)
    );
    Ok(())
}

#[test]
fn retry_after_is_seconds_or_an_http_date() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    // Sun, 06 Nov 1994 08:49:37 GMT is 784111777; ten seconds later:
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-1", now), None);
}

#[tokio::test]
async fn retry_after_is_waited_for_inside_the_deadline() -> Result<()> {
    let server = FakeServer::with_headers(vec![
        (429, "retry-after: 1\r\n".into(), "{}".into()),
        (200, String::new(), "{}".into()),
    ]);
    let client = client(Duration::from_secs(5))?;
    let started = Instant::now();
    let r = send_with_retry(Deadline::after(Duration::from_secs(10)), "IAM", || {
        client.post(&server.url)
    })
    .await?;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_ends_the_call_at_once() -> Result<()> {
    let server = FakeServer::with_headers(vec![
        (503, "retry-after: 60\r\n".into(), "{}".into()),
        (200, String::new(), "{}".into()),
    ]);
    let client = client(Duration::from_secs(5))?;
    let started = Instant::now();
    let r = send_with_retry(Deadline::after(Duration::from_secs(5)), "IAM", || {
        client.post(&server.url)
    })
    .await?;
    assert_eq!(r.status, 503);
    assert_eq!(server.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn backoff_never_sleeps_past_the_deadline() -> Result<()> {
    let server = FakeServer::start(script(&[503; 100]));
    let client = client(Duration::from_secs(5))?;
    let deadline = Deadline::after(Duration::from_millis(150));
    let r = send_with_retry(deadline, "IAM", || client.post(&server.url)).await?;
    assert_eq!(r.status, 503);
    assert!(Instant::now() <= deadline.instant() + Duration::from_millis(50));
    Ok(())
}

/// A pause that runs long (the task woken late on a busy machine) ends the
/// call with the last answer, never a bare "no time left" timeout.
#[tokio::test]
async fn a_pause_that_runs_past_the_deadline_returns_the_last_answer() -> Result<()> {
    let server =
        FakeServer::with_headers(vec![(503, "retry-after: 1\r\n".into(), "{}".into()); 10]);
    let client = client(Duration::from_secs(5))?;
    let deadline = Deadline::after(Duration::from_millis(1500));
    // The test's runtime has one thread: blocking it from 0.2 s to 1.6 s
    // wakes the 1 s pause after the deadline.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::thread::sleep(Duration::from_millis(1400));
    });
    let r = send_with_retry(deadline, "IAM", || client.post(&server.url)).await?;
    assert_eq!(r.status, 503);
    assert_eq!(server.requests().len(), 1);
    Ok(())
}
