//! Connect responses: unary bodies and errors, and server streams that always end with
//! the end-of-stream frame.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use stasis_proto::connect::{
    decode_stream_request, decode_unary, encode_stream_message, encode_unary, end_stream_frame, ConnectError,
    CONTENT_TYPE_CONNECT_JSON, CONTENT_TYPE_JSON,
};

/// Largest request message accepted.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

pub fn unary_error(e: &ConnectError) -> Response {
    let mut r = Response::new(Body::from(e.to_unary_json()));
    *r.status_mut() = e.http_status();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    r
}

pub fn unary<T: Serialize>(result: Result<T, ConnectError>) -> Response {
    match result.and_then(|m| encode_unary(&m)) {
        Ok(body) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
            r
        }
        Err(e) => unary_error(&e),
    }
}

fn content_type(req: &Request) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn body_bytes(req: Request) -> Result<(Option<String>, Bytes), ConnectError> {
    let ct = content_type(&req);
    let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|e| ConnectError::new(stasis_proto::connect::Code::ResourceExhausted, format!("request body: {e}")))?;
    Ok((ct, body))
}

pub async fn read_unary<T: DeserializeOwned>(req: Request) -> Result<T, ConnectError> {
    let (ct, body) = body_bytes(req).await?;
    decode_unary(ct.as_deref(), &body)
}

pub async fn read_stream_request<T: DeserializeOwned>(req: Request) -> Result<T, ConnectError> {
    let (ct, body) = body_bytes(req).await?;
    decode_stream_request(ct.as_deref(), &body)
}

/// A server-stream response: one envelope per message, then the end-of-stream frame
/// (carrying the error if the stream failed). Errors before the first message are also
/// sent this way, as Connect streams do.
pub fn stream<T, S>(messages: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, ConnectError>> + Send + 'static,
{
    let body = async_stream::stream! {
        futures::pin_mut!(messages);
        while let Some(item) = messages.next().await {
            match item.and_then(|m| encode_stream_message(&m)) {
                Ok(frame) => yield Ok::<Bytes, std::convert::Infallible>(frame),
                Err(e) => {
                    yield Ok(end_stream_frame(Some(&e)));
                    return;
                }
            }
        }
        yield Ok(end_stream_frame(None));
    };
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_CONNECT_JSON));
    r
}

/// A stream that fails at once (bad request to a streaming method).
pub fn stream_error(e: ConnectError) -> Response {
    stream::<(), _>(futures::stream::once(async move { Err(e) }))
}
