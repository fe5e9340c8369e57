//! `filesystem.Filesystem`: stat, list, make, move, remove and watch paths.
//!
//! Maps the wire messages to `fs` operations run with the calling user's rights.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use stasis_proto::connect::{ConnectError, FilesystemMethod};
use stasis_proto::filesystem as pb;

#[path = "fs/mod.rs"]
pub(super) mod fs;

use self::fs::entry::Names;
use self::fs::{creds, ops, path, watch::DirWatch};
use super::{auth, rpc, State};
use crate::supervisor::User;

pub use self::fs::watch::Watchers;

/// Idle time after which a watch stream carries a keepalive event.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn dispatch(state: State, method: FilesystemMethod, req: Request) -> Response {
    use FilesystemMethod as M;
    match method {
        M::Stat => rpc::unary(stat(req).await),
        M::MakeDir => rpc::unary(make_dir(req).await),
        M::Move => rpc::unary(rename(req).await),
        M::ListDir => rpc::unary(list_dir(req).await),
        M::Remove => rpc::unary(remove(req).await),
        M::WatchDir => watch_dir(req).await,
        M::CreateWatcher => rpc::unary(create_watcher(&state, req).await),
        M::GetWatcherEvents => rpc::unary(get_watcher_events(&state, req).await),
        M::RemoveWatcher => rpc::unary(remove_watcher(&state, req).await),
    }
}

fn caller(req: &Request) -> Result<User, ConnectError> {
    auth::lookup_user(&auth::user_name(req.headers(), None)?)
}

/// Run `op` as `user`; a failure to get onto the worker thread is an internal error.
async fn run<T: Send + 'static>(
    user: &User,
    op: impl FnOnce(&Names) -> Result<T, ConnectError> + Send + 'static,
) -> Result<T, ConnectError> {
    creds::as_user(user, move || Ok(op(&Names::load())))
        .await
        .map_err(|e| ConnectError::internal(format!("cannot act as the user: {e}")))?
}

async fn stat(req: Request) -> Result<pb::StatResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::StatRequest = rpc::read_unary(req).await?;
    let p = path::resolve(&r.path, &user)?;
    let entry = run(&user, move |n| ops::stat(&p, n)).await?;
    Ok(pb::StatResponse { entry: Some(entry) })
}

async fn make_dir(req: Request) -> Result<pb::MakeDirResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::MakeDirRequest = rpc::read_unary(req).await?;
    let p = path::resolve(&r.path, &user)?;
    let entry = run(&user, move |n| ops::make_dir(&p, n)).await?;
    Ok(pb::MakeDirResponse { entry: Some(entry) })
}

async fn rename(req: Request) -> Result<pb::MoveResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::MoveRequest = rpc::read_unary(req).await?;
    let src = path::resolve(&r.source, &user)?;
    let dst = path::resolve(&r.destination, &user)?;
    let entry = run(&user, move |n| ops::rename(&src, &dst, n)).await?;
    Ok(pb::MoveResponse { entry: Some(entry) })
}

async fn list_dir(req: Request) -> Result<pb::ListDirResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::ListDirRequest = rpc::read_unary(req).await?;
    let p = path::resolve(&r.path, &user)?;
    let entries = run(&user, move |n| ops::list_dir(&p, r.depth, n)).await?;
    Ok(pb::ListDirResponse { entries })
}

async fn remove(req: Request) -> Result<pb::RemoveResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::RemoveRequest = rpc::read_unary(req).await?;
    let p = path::resolve(&r.path, &user)?;
    run(&user, move |_| ops::remove(&p)).await?;
    Ok(pb::RemoveResponse {})
}

async fn open_watch(
    user: User,
    requested: &str,
    recursive: bool,
    include_entry: bool,
) -> Result<DirWatch, ConnectError> {
    let p = path::resolve(requested, &user)?;
    DirWatch::open(p, recursive, include_entry, user).await
}

async fn watch_dir(req: Request) -> Response {
    use pb::watch_dir_response::{Event, KeepAlive, StartEvent};
    let opened = async {
        let user = caller(&req)?;
        let r: pb::WatchDirRequest = rpc::read_stream_request(req).await?;
        open_watch(user, &r.path, r.recursive, r.include_entry).await
    }
    .await;
    let mut watch = match opened {
        Ok(w) => w,
        Err(e) => return rpc::stream_error(e),
    };
    let msg = |event| Ok(pb::WatchDirResponse { event: Some(event) });
    rpc::stream(async_stream::stream! {
        yield msg(Event::Start(StartEvent {}));
        loop {
            match tokio::time::timeout(KEEPALIVE, watch.next()).await {
                Err(_) => yield msg(Event::Keepalive(KeepAlive {})),
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    yield Err(e);
                    return;
                }
                Ok(Some(Ok(events))) => {
                    for ev in events {
                        yield msg(Event::Filesystem(ev));
                    }
                }
            }
        }
    })
}

async fn create_watcher(state: &State, req: Request) -> Result<pb::CreateWatcherResponse, ConnectError> {
    let user = caller(&req)?;
    let r: pb::CreateWatcherRequest = rpc::read_unary(req).await?;
    let watch = open_watch(user, &r.path, r.recursive, r.include_entry).await?;
    Ok(pb::CreateWatcherResponse { watcher_id: state.watchers.create(watch)? })
}

async fn get_watcher_events(state: &State, req: Request) -> Result<pb::GetWatcherEventsResponse, ConnectError> {
    let r: pb::GetWatcherEventsRequest = rpc::read_unary(req).await?;
    Ok(pb::GetWatcherEventsResponse { events: state.watchers.take_events(&r.watcher_id)? })
}

async fn remove_watcher(state: &State, req: Request) -> Result<pb::RemoveWatcherResponse, ConnectError> {
    let r: pb::RemoveWatcherRequest = rpc::read_unary(req).await?;
    state.watchers.remove(&r.watcher_id)?;
    Ok(pb::RemoveWatcherResponse {})
}
