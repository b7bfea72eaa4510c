//! What the Prometheus metrics cost per request: `record_request` (one counter and one
//! histogram sample with method, route and status labels) timed over many calls, and one
//! render of the exposition. Run: `cargo run --release --example metrics_cost`.

use std::time::{Duration, Instant};

use axum::http::Method;
use portvakt::telemetry::metrics;

fn main() {
    let handle = metrics::install();
    let routes = [
        "/api/v1/users/me",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/users/me/sessions",
    ];
    let statuses = [200, 401, 404];
    let calls = 2_000_000u32;
    for round in 0..3 {
        let started = Instant::now();
        for i in 0..calls {
            let route = routes[(i as usize) % routes.len()];
            let status = statuses[(i as usize / 7) % statuses.len()];
            metrics::record_request(&Method::GET, route, status, Duration::from_micros(250));
        }
        let per_call = started.elapsed().as_nanos() as f64 / f64::from(calls);
        println!("round {round}: record_request {per_call:.0} ns per request");
    }
    let started = Instant::now();
    let text = handle.render();
    println!(
        "render: {:.2} ms for {} lines ({} bytes)",
        started.elapsed().as_secs_f64() * 1000.0,
        text.lines().count(),
        text.len()
    );
}
