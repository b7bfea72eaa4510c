//! Health, readiness, graceful shutdown, and instances sharing one database.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{PASSWORD, fresh_database, problem, spawn_app, spawn_app_on};

#[tokio::test]
async fn health_and_readiness_answer_when_all_is_well() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({ "status": "ready", "checks": { "database": "ok" } })
    );
}

#[tokio::test]
async fn an_in_flight_request_completes_during_shutdown() {
    let mut app = spawn_app().await;
    app.signup("slow@example.com", PASSWORD).await;
    // A login whose body arrives slowly is in flight when the shutdown begins.
    let body =
        serde_json::to_vec(&json!({ "email": "slow@example.com", "password": PASSWORD })).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
        .send();
    let (half_a, half_b) = body.split_at(10);
    tx.send(Ok(half_a.to_vec())).await.unwrap();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = app.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused once the listener is closed.
    assert!(
        TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .is_err(),
        "listener closed"
    );

    tx.send(Ok(half_b.to_vec())).await.unwrap();
    drop(tx);
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request got an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let pair: Value = response.json().await.unwrap();
    assert!(pair["access_token"].is_string());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped")
        .unwrap();
}

#[tokio::test]
async fn a_request_that_never_finishes_does_not_hold_up_shutdown() {
    let mut app = crate::helpers::spawn_app_with(&[("shutdown_timeout", "1s")]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
        .send();
    tx.send(Ok(b"{\"email\":".to_vec())).await.unwrap();
    let stuck = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = app.stop();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops at the shutdown deadline")
        .unwrap();
    assert!(
        stuck.await.unwrap().is_err(),
        "the stuck request's connection was closed"
    );
    drop(tx);
}

#[tokio::test]
async fn silent_connections_are_dropped_and_free_their_slot() {
    let app =
        crate::helpers::spawn_app_with(&[("header_read_timeout", "1s"), ("max_connections", "2")])
            .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Two clients connect and say nothing, taking every slot.
    let mut silent = vec![
        TcpStream::connect(&addr).await.unwrap(),
        TcpStream::connect(&addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A real client still gets an answer once the silent ones time out.
    let started = std::time::Instant::now();
    let health = app
        .client
        .get(app.url("/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it had to wait for a free slot"
    );
    // And the silent connections were closed by the server.
    use tokio::io::AsyncReadExt;
    for s in &mut silent {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "closed by the server");
    }
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A TCP forwarder standing in for the network between portvakt and PostgreSQL, so the test
/// can cut the database off and bring it back.
struct Link {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Link {
    async fn start(target: String) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                if *watch.borrow() {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Link { addr, cut }
    }
}

#[tokio::test]
async fn readiness_follows_the_database_down_and_back_up() {
    let db = fresh_database().await;
    let Some(url) = db.url().map(str::to_string) else {
        crate::helpers::skipped(
            "readiness_follows_the_database_down_and_back_up",
            "needs PORTVAKT_TEST_DATABASE_URL (PostgreSQL) to cut the database off",
        );
        return;
    };
    let mut parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let link = Link::start(target).await;
    parsed.set_host(Some("127.0.0.1")).unwrap();
    parsed.set_port(Some(link.addr.port())).unwrap();
    let app = crate::helpers::spawn_app_on(
        crate::helpers::TestDatabase::Sqlite,
        &[
            ("database_url", parsed.as_str()),
            ("db_acquire_timeout", "1s"),
            ("db_pool_min", "0"),
        ],
    )
    .await;
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    link.cut.send(true).unwrap();
    let down = crate::helpers::eventually(Duration::from_secs(20), || async {
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(down, "/ready reports the database down");
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "status": "not_ready", "checks": { "database": "down" } })
    );
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "alive while not ready"
    );

    link.cut.send(false).unwrap();
    let up = crate::helpers::eventually(Duration::from_secs(20), || async {
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
    assert!(up, "/ready recovers by itself");
    drop(db);
}

#[tokio::test]
async fn changes_on_one_instance_reach_the_caches_of_another_at_once() {
    let db = fresh_database().await;
    if !db.is_postgres() {
        crate::helpers::skipped(
            "changes_on_one_instance_reach_the_caches_of_another_at_once",
            "two instances share a database only on PostgreSQL; set PORTVAKT_TEST_DATABASE_URL",
        );
        return;
    }
    let url = db.url().unwrap().to_string();
    // A long cache TTL proves the broadcast, not the TTL, ends the session.
    // Instances of one deployment share the secret key that seals the signing keys.
    let secret = portvakt::crypto::secret::generate();
    let a = spawn_app_on(db, &[("cache_ttl", "10m"), ("secret_key", &secret)]).await;
    let b = spawn_app_on(
        crate::helpers::TestDatabase::Sqlite,
        &[
            ("database_url", &url),
            ("cache_ttl", "10m"),
            ("secret_key", &secret),
        ],
    )
    .await;
    let (_, pair) = a.new_user().await;
    assert_eq!(
        b.me(&pair.access_token).await.status(),
        StatusCode::OK,
        "B knows the session as alive"
    );
    assert_eq!(
        a.logout(&pair.access_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let ended = crate::helpers::eventually(Duration::from_secs(2), || async {
        b.me(&pair.access_token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(ended, "B refuses the token within moments");
    problem(b.me(&pair.access_token).await, 401).await;
}
