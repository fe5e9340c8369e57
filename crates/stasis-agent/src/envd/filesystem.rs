//! `filesystem.Filesystem`: stat, list, make, move, remove and watch paths.

use axum::extract::Request;
use axum::response::Response;
use stasis_proto::connect::{ConnectError, FilesystemMethod};

use super::{rpc, State};

#[derive(Clone, Default)]
pub struct Watchers {}

pub async fn dispatch(_state: State, method: FilesystemMethod, _req: Request) -> Response {
    rpc::unary_error(&ConnectError::unimplemented(format!("filesystem.Filesystem/{} is not implemented yet", method.name())))
}
