//! The HTTP layer under async-openai: a plain reqwest call that turns a non-2xx response
//! into an error carrying what retry decisions need (status and `Retry-After`), which
//! async-openai's own error type drops.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use futures::StreamExt;

use crate::backoff::parse_retry_after;

/// Most error bodies are a short JSON object; a proxy's HTML page need not be kept whole.
const MAX_ERROR_BODY: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub(crate) struct HttpStatusError {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl HttpStatusError {
    /// The `error.message` of an OpenAI-style body, else the body itself.
    pub(crate) fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.body.trim().to_owned())
    }
}

#[derive(Clone)]
pub(crate) struct StatusCheckingService {
    client: reqwest::Client,
}

impl StatusCheckingService {
    pub(crate) fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower_service::Service<HttpRequestFactory> for StatusCheckingService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = client.execute(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = parse_retry_after(
                header("retry-after").as_deref(),
                header("retry-after-ms").as_deref(),
            );
            let body = read_prefix(response, MAX_ERROR_BODY).await;
            Err(OpenAIError::Boxed(Box::new(HttpStatusError {
                status,
                retry_after,
                body,
            })))
        })
    }
}

async fn read_prefix(response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= limit {
            bytes.truncate(limit);
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
