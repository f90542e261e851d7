//! Scraping a plugin's metrics as Prometheus does, for the binary's tests.

/// The address a plugin says it serves metrics on (`serving metrics at /metrics address=...`
/// in its log).
pub fn metrics_address<'a>(log: impl IntoIterator<Item = &'a str>) -> std::net::SocketAddr {
    log.into_iter()
        .find(|l| l.contains("serving metrics at /metrics"))
        .and_then(|l| l.split("address=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a line saying where metrics are served")
        .parse()
        .expect("an address")
}

/// GET /metrics over plain HTTP/1.0, as a scraper asks; the whole response.
pub async fn scrape(address: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
