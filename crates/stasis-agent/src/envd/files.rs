//! Plain HTTP `/files`: download and upload file contents.

use axum::http::StatusCode;

pub async fn download() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}

pub async fn upload() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
