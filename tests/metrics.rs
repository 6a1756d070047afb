//! The Prometheus endpoint of a running pipeline (`run --metrics ADDR`), scraped over HTTP the
//! way Prometheus does while the run works.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{distillery, mock_definition};

/// GET /metrics; `None` while nothing listens yet.
fn scrape(address: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn a_running_pipeline_serves_labelled_metrics_with_help_text() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough to be scraped mid-run.
    let definition = mock_definition(
        dir.path(),
        "metrics",
        40,
        "concurrency = 4",
        "latency_ms = 150",
    );
    let address = {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let run = dir.path().join("run");
    let mut child = distillery()
        .args(["run", definition.to_str().unwrap(), "--plain"])
        .args(["--run-dir", run.to_str().unwrap(), "--metrics", &address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Scrape until a request has been answered, so the per-endpoint histogram exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        assert!(
            Instant::now() < deadline,
            "no answered request seen in /metrics"
        );
        if let Some(response) = scrape(&address)
            && response.contains("distillery_teacher_request_seconds_count{endpoint=")
        {
            break response;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("content-type: text/plain; version=0.0.4"),
        "{body}"
    );
    for metric in [
        "distillery_prompts_done_total",
        "distillery_generations_accepted_total",
        "distillery_requests_in_flight",
        "distillery_teacher_request_seconds",
        "distillery_endpoint_concurrency_limit",
    ] {
        assert!(
            body.contains(&format!("# HELP {metric} ")),
            "{metric}:\n{body}"
        );
    }
    assert!(
        body.contains("distillery_endpoint_concurrency_limit{endpoint=\"http://127.0.0.1:"),
        "{body}"
    );

    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
