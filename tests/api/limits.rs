//! Limits and timeouts, over raw TCP: the body limit (configurable, also for chunked bodies),
//! the request timeout, the header read timeout against slowloris clients and idle keep-alive
//! connections, and the cap on concurrent connections. Every error answer is a problem with
//! the request id and the security headers. Every wait is bounded, so a regression fails
//! instead of hanging.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// The longest any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(5);

/// A response read off the wire.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A client connection that speaks HTTP/1.1 by hand.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(app: &TestApp) -> Raw {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr(app)))
            .await
            .expect("connect in time")
            .expect("connect");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(STEP, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Reads more bytes into the buffer; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn fill_to(&mut self, len: usize) {
        while self.buf.len() < len {
            assert!(self.fill().await, "connection closed mid-response");
        }
    }

    /// Reads one response; panics if none arrives within `within`.
    async fn response_within(&mut self, within: Duration) -> RawResponse {
        tokio::time::timeout(within, self.read_response())
            .await
            .unwrap_or_else(|_| panic!("no response within {within:?}"))
    }

    async fn read_response(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await, "connection closed before a response");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ASCII head");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().expect("numeric content-length");
            self.fill_to(len).await;
            response.body = self.buf.drain(..len).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "connection closed mid-chunk");
                };
                let size_line = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                self.buf.drain(..line_end + 2);
                self.fill_to(size + 2).await;
                response.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// Asserts that nothing arrives for `quiet` (without consuming anything).
    async fn assert_quiet_for(&mut self, quiet: Duration, why: &str) {
        let mut byte = [0u8; 1];
        if let Ok(peeked) = tokio::time::timeout(quiet, self.stream.peek(&mut byte)).await {
            panic!("{why}: expected no answer for {quiet:?}, got {peeked:?}");
        }
    }

    /// Waits until the server closes the connection (EOF or reset), discarding whatever
    /// arrives; panics if it is still open after `within`.
    async fn closed_within(&mut self, within: Duration) {
        let mut chunk = [0u8; 4096];
        let closed = tokio::time::timeout(within, async {
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection still open after {within:?}");
    }
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A signup body of exactly `len` bytes (an invalid email, so a body within the limit gets a
/// validation answer without creating anything).
fn body_of(len: usize) -> Vec<u8> {
    let empty = r#"{"email":"not-an-email","password":""}"#;
    assert!(len >= empty.len());
    let body = format!(
        r#"{{"email":"not-an-email","password":"{}"}}"#,
        "x".repeat(len - empty.len())
    );
    assert_eq!(body.len(), len);
    body.into_bytes()
}

/// A POST of `body` to signup with a Content-Length.
fn post_with_length(body: &[u8], request_id: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: portvakt\r\nContent-Type: application/json\r\n\
         X-Request-Id: {request_id}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A POST of `body` to signup, chunked (no Content-Length), in chunks of up to 700 bytes.
fn post_chunked(body: &[u8], request_id: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: portvakt\r\nContent-Type: application/json\r\n\
         X-Request-Id: {request_id}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(700) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// The security headers every response must carry, errors included.
fn assert_security_headers(response: &RawResponse, what: &str) {
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: X-Content-Type-Options"
    );
    assert_eq!(
        response.header("x-frame-options"),
        Some("DENY"),
        "{what}: X-Frame-Options"
    );
}

/// Checks a problem answer: status, media type, the request id (header and body), the
/// problem's slug and the security headers. Returns the body.
fn assert_problem(response: &RawResponse, status: u16, request_id: &str, what: &str) -> Value {
    assert_eq!(
        response.status,
        status,
        "{what}: status (body {})",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{what}: content type"
    );
    assert_eq!(
        response.header("x-request-id"),
        Some(request_id),
        "{what}: X-Request-Id echoed"
    );
    let body = response.json();
    assert_eq!(body["status"], status, "{what}: {body}");
    assert_eq!(body["request_id"], request_id, "{what}: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://portvakt.dev/problems/")),
        "{what}: {body}"
    );
    assert_security_headers(response, what);
    body
}

/// One request on a fresh connection.
async fn exchange(app: &TestApp, request: &[u8]) -> RawResponse {
    let mut raw = Raw::connect(app).await;
    raw.send(request).await;
    raw.response_within(STEP).await
}

/// A body within the limit is read and judged on its content: a validation problem, not 413.
fn assert_within_limit(response: &RawResponse, request_id: &str, what: &str) {
    assert!(
        matches!(response.status, 400 | 422),
        "{what}: expected a validation answer, got {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let body = assert_problem(response, response.status, request_id, what);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/validation-failed"))
            && body["errors"].is_array(),
        "{what}: field errors: {body}"
    );
}

#[tokio::test]
async fn the_body_limit_is_configurable_and_holds_for_chunked_bodies() {
    let app = spawn_app_with(&[("max_body_bytes", "2048")]).await;

    let big = body_of(3000);
    let over = exchange(&app, &post_with_length(&big, "limit-length")).await;
    let p = assert_problem(&over, 413, "limit-length", "3000 bytes with Content-Length");
    assert!(p["type"].as_str().unwrap().ends_with("/payload-too-large"));
    let over = exchange(&app, &post_chunked(&big, "limit-chunked")).await;
    let p = assert_problem(&over, 413, "limit-chunked", "3000 bytes chunked");
    assert!(p["type"].as_str().unwrap().ends_with("/payload-too-large"));

    let small = body_of(1000);
    let within = exchange(&app, &post_with_length(&small, "small-length")).await;
    assert_within_limit(&within, "small-length", "1000 bytes with Content-Length");
    let within = exchange(&app, &post_chunked(&small, "small-chunked")).await;
    assert_within_limit(&within, "small-chunked", "1000 bytes chunked");

    // The limit is exact: 2048 bytes pass, 2049 do not, either way of sending.
    let at = body_of(2048);
    let one_over = body_of(2049);
    assert_within_limit(
        &exchange(&app, &post_with_length(&at, "at-length")).await,
        "at-length",
        "2048 bytes with Content-Length",
    );
    assert_within_limit(
        &exchange(&app, &post_chunked(&at, "at-chunked")).await,
        "at-chunked",
        "2048 bytes chunked",
    );
    assert_problem(
        &exchange(&app, &post_with_length(&one_over, "over-length")).await,
        413,
        "over-length",
        "2049 bytes with Content-Length",
    );
    assert_problem(
        &exchange(&app, &post_chunked(&one_over, "over-chunked")).await,
        413,
        "over-chunked",
        "2049 bytes chunked",
    );
}

#[tokio::test]
async fn the_default_body_limit_is_64_kib() {
    let app = spawn_app().await;
    // What the configured instance refuses, the default one reads.
    assert_within_limit(
        &exchange(&app, &post_with_length(&body_of(3000), "default-3000")).await,
        "default-3000",
        "3000 bytes under the default limit",
    );
    assert_within_limit(
        &exchange(&app, &post_chunked(&body_of(65536), "default-at")).await,
        "default-at",
        "64 KiB chunked under the default limit",
    );
    assert_problem(
        &exchange(&app, &post_with_length(&body_of(65537), "default-over")).await,
        413,
        "default-over",
        "64 KiB + 1 with Content-Length",
    );
    assert_problem(
        &exchange(&app, &post_chunked(&body_of(65537), "default-over-chunked")).await,
        413,
        "default-over-chunked",
        "64 KiB + 1 chunked",
    );
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415_problem_with_the_security_headers() {
    let app = spawn_app().await;
    let body = br#"{"email":"a@b.co","password":"x"}"#;
    let request = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: portvakt\r\nContent-Type: text/plain\r\n\
         X-Request-Id: wrong-type\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    let response = exchange(&app, request.as_bytes()).await;
    let p = assert_problem(&response, 415, "wrong-type", "text/plain body");
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("/unsupported-media-type")
    );
}

#[tokio::test]
async fn a_stalled_body_gets_a_408_problem_while_others_are_served() {
    let app = spawn_app_with(&[("request_timeout", "1s")]).await;
    let mut stalled = Raw::connect(&app).await;
    let started = Instant::now();
    stalled
        .send(
            b"POST /api/v1/users HTTP/1.1\r\nHost: portvakt\r\nContent-Type: application/json\r\n\
              X-Request-Id: stalled-body\r\nContent-Length: 100\r\n\r\n{\"email\":\"a@b.co\",",
        )
        .await;

    // While it waits, the server answers someone else at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = exchange(
        &app,
        b"GET /health HTTP/1.1\r\nHost: portvakt\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(other.status, 200, "another client is served meanwhile");
    // ... while the stalled request is still waiting for its answer.
    stalled
        .assert_quiet_for(
            Duration::from_millis(1),
            "the other client was served before the stalled request timed out",
        )
        .await;

    let response = stalled.response_within(STEP).await;
    let elapsed = started.elapsed();
    let p = assert_problem(&response, 408, "stalled-body", "stalled body");
    assert!(p["type"].as_str().unwrap().ends_with("/request-timeout"));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "408 after about the request timeout, took {elapsed:?}"
    );
    // The half-read request cannot continue: the connection is closed, not left to hold a
    // slot.
    stalled.closed_within(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn clients_trickling_their_headers_are_cut_off_and_cannot_pin_the_server() {
    let app = spawn_app_with(&[("header_read_timeout", "500ms"), ("max_connections", "2")]).await;
    // Two slowloris clients take every slot and send a header byte every 100 ms, forever.
    let mut tricklers = Vec::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(addr(&app)).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let started = Instant::now();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let writer = tokio::spawn(async move {
            if write
                .write_all(b"GET /health HTTP/1.1\r\nHost: portvakt\r\nX-Slow: ")
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if write.write_all(b"a").await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 1024];
            let mut answered = Vec::new();
            loop {
                match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return (started.elapsed(), answered),
                    Ok(n) => answered.extend_from_slice(&chunk[..n]),
                }
            }
        });
        tricklers.push((sent, writer, reader));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A real client is still served, a slot having been freed by the timeout.
    let started = Instant::now();
    let response = exchange(
        &app,
        b"GET /health HTTP/1.1\r\nHost: portvakt\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served within 3 s, took {:?}",
        started.elapsed()
    );

    for (sent, writer, reader) in tricklers {
        let (closed_after, answered) = tokio::time::timeout(Duration::from_secs(3), reader)
            .await
            .expect("the trickling client is disconnected within 3 s")
            .unwrap();
        let sent_by_then = sent.load(Ordering::SeqCst);
        assert!(
            closed_after >= Duration::from_millis(400) && closed_after < Duration::from_secs(3),
            "closed by the header read timeout (500 ms), took {closed_after:?}"
        );
        assert!(
            sent_by_then >= 2,
            "it was still sending when it was cut off ({sent_by_then} bytes trickled)"
        );
        assert!(
            !String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 2"),
            "the unfinished request was not served: {}",
            String::from_utf8_lossy(&answered)
        );
        // The socket is gone on the server's side: further trickling fails.
        tokio::time::timeout(Duration::from_secs(2), writer)
            .await
            .expect("writes fail once the server has closed the connection")
            .unwrap();
    }
}

/// A complete keep-alive request for `/health`, and its answer.
async fn served_and_kept_open(app: &TestApp) -> Raw {
    let mut raw = Raw::connect(app).await;
    raw.send(b"GET /health HTTP/1.1\r\nHost: portvakt\r\n\r\n")
        .await;
    let response = raw.response_within(STEP).await;
    assert_eq!(response.status, 200);
    assert_ne!(
        response.header("connection"),
        Some("close"),
        "the connection stays open"
    );
    raw
}

#[tokio::test]
async fn open_keep_alive_connections_hold_their_slots_until_they_close() {
    let app = spawn_app_with(&[("max_connections", "2"), ("header_read_timeout", "30s")]).await;
    let first = served_and_kept_open(&app).await;
    let mut second = served_and_kept_open(&app).await;

    // A third client connects (the kernel's backlog takes it) but is not answered.
    let mut third = Raw::connect(&app).await;
    third
        .send(b"GET /health HTTP/1.1\r\nHost: portvakt\r\nConnection: close\r\n\r\n")
        .await;
    third
        .assert_quiet_for(
            Duration::from_millis(800),
            "both slots are held by idle keep-alive connections",
        )
        .await;

    // One of them leaves: the third is served.
    drop(first);
    let started = Instant::now();
    let response = third.response_within(Duration::from_secs(3)).await;
    assert_eq!(response.status, 200);
    assert!(started.elapsed() < Duration::from_secs(3));

    // The other kept its connection all along and can still use it.
    second
        .send(b"GET /health HTTP/1.1\r\nHost: portvakt\r\n\r\n")
        .await;
    assert_eq!(second.response_within(STEP).await.status, 200);
}

/// `ops::silent_connections_are_dropped_and_free_their_slot` covers connections that never
/// send a byte; this covers keep-alive connections gone idle after a request.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_free_their_slot() {
    let app = spawn_app_with(&[("max_connections", "2"), ("header_read_timeout", "500ms")]).await;
    let mut idle = vec![
        served_and_kept_open(&app).await,
        served_and_kept_open(&app).await,
    ];

    let started = Instant::now();
    let mut third = Raw::connect(&app).await;
    third
        .send(b"GET /health HTTP/1.1\r\nHost: portvakt\r\nConnection: close\r\n\r\n")
        .await;
    let response = third.response_within(Duration::from_secs(3)).await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited for an idle connection to be closed ({:?})",
        started.elapsed()
    );

    for raw in &mut idle {
        raw.closed_within(Duration::from_secs(3)).await;
    }
}
