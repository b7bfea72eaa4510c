//! Measures what one access-log line costs, as the edge middleware emits it: the time per
//! event through the configured subscriber, JSON format, into the buffered sink.
//!
//! Usage: log_cost [EVENTS] > /dev/null     (default 200000; logs go to stdout)

use std::sync::Arc;
use std::time::Instant;

use portvakt::Config;
use portvakt::telemetry::context::{self, RequestContext, Route};
use portvakt::telemetry::{self, Sink};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let config = Config::from_pairs([("log_format", "json"), ("log", "info")])?;
    let guard = telemetry::init(&config, Sink::Stdout)?;
    let ctx = Arc::new(RequestContext::new(
        "0b7c6e2e-2f7a-4a36-9a53-0f4b8f1c2d3e".into(),
        http::Method::GET,
        Route::Unmatched,
    ));
    context::set_user("unused");
    let started = Instant::now();
    // Two workers log at once, as the two runtime threads of a busy server do.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(context::scope(ctx, async move {
                context::set_user("01a204f5-19c7-7481-9699-dcda9ba7a60b");
                for i in 0..events / 2 {
                    tracing::info!(
                        status = 200u16,
                        latency_ms = f64::from(i % 1000) / 1000.0,
                        "request"
                    );
                }
            }))
        })
        .collect();
    for w in workers {
        w.await?;
    }
    // CPU time per line: two threads ran in parallel for the elapsed time.
    let per_event = 2.0 * started.elapsed().as_secs_f64() / f64::from(events);
    guard.flush();
    eprintln!("{:.2} µs per access-log line", per_event * 1e6);
    Ok(())
}
