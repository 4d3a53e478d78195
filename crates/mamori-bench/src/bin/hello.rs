//! The HTTP baseline: axum's hello world (`GET /` → `hello`) on 127.0.0.1:PORT, on the same
//! multi-threaded tokio runtime as `mamori serve`.
//!
//! Usage: `hello PORT`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: hello PORT");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("hello listening on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/", get(|| async { "hello" }))).await
}
