//! The smallest axum server, built with the same toolchain, profile and dependency versions
//! as portvakt: the ceiling our own request handling is compared against in `bench/`.
//!
//! Usage: hello_baseline [ADDR]   (default 127.0.0.1:8090)

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let app = Router::new().route("/", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
