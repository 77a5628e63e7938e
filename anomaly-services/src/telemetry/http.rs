//! `/health` (JSON) and `/metrics` (Prometheus text) on a small HTTP server; anything else is
//! 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tiny_http::{Header, Response, Server};

use super::metrics::Metrics;

/// What the endpoints read: the service's name, whether it is healthy, its metrics.
pub struct Status {
    /// Fixed service name.
    pub service: &'static str,
    /// False once a dependency is lost; `/health` then answers 503.
    pub healthy: AtomicBool,
    /// The metrics `/metrics` renders.
    pub metrics: Metrics,
}

impl Status {
    /// A healthy service with fresh metrics.
    pub fn new(service: &'static str) -> Arc<Self> {
        Arc::new(Self {
            service,
            healthy: AtomicBool::new(true),
            metrics: Metrics::new(service),
        })
    }
}

/// A running HTTP server; stopped when dropped.
pub struct HttpServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl HttpServer {
    /// Serves `status` on `bind:port` (port 0 picks a free one).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use anomaly_services::telemetry::http::{HttpServer, Status};
    ///
    /// let server = HttpServer::start(Status::new("producer"), "127.0.0.1", 0)?;
    /// let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port()))?;
    /// stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    /// let mut reply = String::new();
    /// stream.read_to_string(&mut reply)?;
    /// assert!(reply.starts_with("HTTP/1.1 200"));
    /// assert!(reply.ends_with(r#"{"status":"ok","service":"producer"}"#));
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn start(
        status: Arc<Status>,
        bind: &str,
        port: u16,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let server = Arc::new(Server::http((bind, port))?);
        let port = server
            .server_addr()
            .to_ip()
            .map_or(port, |address| address.port());
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let response = respond(&status, request.url());
                    let _ = request.respond(response);
                }
            })?;
        Ok(Self {
            server,
            thread: Some(thread),
            port,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(status: &Status, url: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let (code, body, content_type) = match path {
        "/health" => {
            let healthy = status.healthy.load(Ordering::Relaxed);
            // In the documented field order (a JSON map would sort them).
            let body = format!(
                "{{\"status\":\"{}\",\"service\":{}}}",
                if healthy { "ok" } else { "unhealthy" },
                serde_json::Value::from(status.service)
            );
            (if healthy { 200 } else { 503 }, body, "application/json")
        }
        "/metrics" => (
            200,
            status.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => (404, "not found\n".to_owned(), "text/plain"),
    };
    let mut response = Response::from_string(body).with_status_code(code);
    if let Some(h) = header("Content-Type", content_type) {
        response.add_header(h);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(port: u16, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn health_metrics_and_404() {
        let status = Status::new("drift-detector");
        status.metrics.drifts.with_label_values(&["ADWIN"]).inc();
        let server = HttpServer::start(Arc::clone(&status), "127.0.0.1", 0).unwrap();
        let health = get(server.port(), "/health");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.contains("application/json"));
        let metrics = get(server.port(), "/metrics");
        assert!(
            metrics
                .contains(r#"anomaly_drifts_total{detector="ADWIN",service="drift-detector"} 1"#),
            "{metrics}"
        );
        assert!(get(server.port(), "/").starts_with("HTTP/1.1 404"));
        assert!(get(server.port(), "/admin").starts_with("HTTP/1.1 404"));
        status.healthy.store(false, Ordering::Relaxed);
        let unhealthy = get(server.port(), "/health");
        assert!(unhealthy.starts_with("HTTP/1.1 503") && unhealthy.contains("unhealthy"));
    }
}
