//! The gateway's metrics, recorded through the `metrics` facade: every RPC by method and
//! status code with its latency (one tower layer around every service), and the
//! subscriptions open now.
//!
//! The method label is the gRPC path (`/emberline.v1.DeviceService/ListDevices`) for the
//! services the gateway serves, and `other` for anything else, so a client cannot grow the
//! label set. The code is the one in the response's headers: for a unary call and for a
//! stream that fails before its first message the call's outcome; a stream that fails later
//! counts as started (`Ok`). The latency is the time until the response starts — for a
//! stream, until it is opened.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};

/// Wraps each service in [`RpcMetrics`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RpcMetricsLayer;

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

/// Counts and times the RPCs `inner` answers.
#[derive(Clone, Debug)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
}

/// The method label: the path of a service the gateway serves, else `other`.
fn method_label(path: &str) -> String {
    let served = ["/emberline.", "/grpc.health.", "/grpc.reflection."];
    let well_formed = path.len() <= 120 && path.matches('/').count() == 2;
    if well_formed && served.iter().any(|p| path.starts_with(p)) {
        path.to_owned()
    } else {
        "other".to_owned()
    }
}

/// The status code a response's headers carry (none: the call started fine).
fn code_of<B>(response: &Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from)
}

impl<S, B, RB> Service<Request<B>> for RpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut method = method_label(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => format!("{:?}", code_of(response)),
                Err(_) => "transport_error".to_owned(),
            };
            if code == "Unimplemented" {
                method = "other".to_owned();
            }
            metrics::histogram!("emberline_grpc_request_duration_seconds", "method" => method.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("emberline_grpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            result
        })
    }
}

/// One open subscription, counted in `emberline_gateway_subscriptions` until dropped.
pub(crate) struct OpenSubscription(&'static str);

impl OpenSubscription {
    /// A subscription to `topic` (`derived.trends`, `derived.predictions`, `alerts`) opens.
    pub(crate) fn open(topic: &'static str) -> Self {
        metrics::gauge!("emberline_gateway_subscriptions", "topic" => topic).increment(1.0);
        Self(topic)
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        metrics::gauge!("emberline_gateway_subscriptions", "topic" => self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        let listed = "/emberline.v1.DeviceService/ListDevices";
        assert_eq!(method_label(listed), listed);
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/anything/else"), "other");
        assert_eq!(method_label("/emberline.v1.X/a/b"), "other");
        assert_eq!(
            method_label(&format!("/emberline.{}/x", "y".repeat(200))),
            "other"
        );
    }

    #[test]
    fn the_code_comes_from_the_headers() {
        let ok = Response::new(());
        assert_eq!(code_of(&ok), tonic::Code::Ok);
        let mut failed = Response::new(());
        failed.headers_mut().insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("5"),
        );
        assert_eq!(code_of(&failed), tonic::Code::NotFound);
    }
}
