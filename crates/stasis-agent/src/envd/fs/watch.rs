//! Watching a directory (tree) with inotify: the streamed `WatchDir` and the polled
//! watchers (`CreateWatcher` / `GetWatcherEvents` / `RemoveWatcher`).
//!
//! Events follow envd (fsnotify): names relative to the watched directory, one event per
//! operation bit in the order create, rename, chmod, write, remove. A recursive watch adds
//! the directories that appear below it as they appear.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use stasis_proto::connect::{Code, ConnectError};
use stasis_proto::filesystem::{EventType, FilesystemEvent};

use super::creds;
use super::entry::{self, io_error, Names};
use crate::supervisor::User;

/// Events a polled watcher keeps until fetched; the oldest go first past this.
pub const MAX_BUFFERED_EVENTS: usize = 10_000;
/// Polled watchers alive at once.
pub const MAX_WATCHERS: usize = 1_000;

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::ATTRIB
        | WatchMask::MODIFY
        | WatchMask::MOVE_SELF
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
}

/// The wire event types one inotify event stands for, in envd's order.
pub fn event_types(m: EventMask) -> Vec<EventType> {
    let mut out = Vec::new();
    if m.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
        out.push(EventType::Create);
    }
    if m.intersects(EventMask::MOVED_FROM | EventMask::MOVE_SELF) {
        out.push(EventType::Rename);
    }
    if m.contains(EventMask::ATTRIB) {
        out.push(EventType::Chmod);
    }
    if m.contains(EventMask::MODIFY) {
        out.push(EventType::Write);
    }
    if m.intersects(EventMask::DELETE | EventMask::DELETE_SELF) {
        out.push(EventType::Remove);
    }
    out
}

/// `path` relative to `root` (`.` for the root itself), as the wire names it.
pub fn relative_name(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// An open watch of a directory, read as a sequence of event batches.
pub struct DirWatch {
    root: PathBuf,
    recursive: bool,
    include_entry: bool,
    user: User,
    names: Names,
    stream: EventStream<Vec<u8>>,
    watches: Watches,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl DirWatch {
    /// Watch `root` (a directory) as `user`.
    pub async fn open(
        root: PathBuf,
        recursive: bool,
        include_entry: bool,
        user: User,
    ) -> Result<DirWatch, ConnectError> {
        let root2 = root.clone();
        let (inotify, dirs, names) = creds::as_user(&user, move || {
            let md = std::fs::metadata(&root2)?;
            if !md.is_dir() {
                return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
            }
            let inotify = Inotify::init()?;
            let mut dirs = HashMap::new();
            add_tree(&mut inotify.watches(), &root2, recursive, &mut dirs, true, &mut None)?;
            Ok((inotify, dirs, Names::load()))
        })
        .await
        .map_err(|e| io_error(e, "cannot watch", &root))?;
        let stream = inotify.into_event_stream(vec![0u8; 64 * 1024]).map_err(|e| io_error(e, "cannot watch", &root))?;
        let watches = stream.watches();
        Ok(DirWatch { root, recursive, include_entry, user, names, stream, watches, dirs })
    }

    /// The next events; `None` once the watched directory is gone. Cancel-safe: the only
    /// await is on the inotify stream.
    pub async fn next(&mut self) -> Option<Result<Vec<FilesystemEvent>, ConnectError>> {
        loop {
            let ev = match self.stream.next().await? {
                Ok(ev) => ev,
                Err(e) => return Some(Err(ConnectError::internal(format!("watch of {}: {e}", self.root.display())))),
            };
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                return Some(Err(ConnectError::new(
                    Code::ResourceExhausted,
                    format!("watch of {}: too many events at once, some were lost", self.root.display()),
                )));
            }
            let Some(dir) = self.dirs.get(&ev.wd).cloned() else { continue };
            if ev.mask.contains(EventMask::IGNORED) {
                self.dirs.remove(&ev.wd);
                if dir == self.root {
                    return None;
                }
                continue;
            }
            let path = match &ev.name {
                Some(n) => dir.join(n),
                None => dir.clone(),
            };
            // A self event of a subdirectory repeats what its parent already reported.
            if ev.name.is_none() && dir != self.root {
                if ev.mask.contains(EventMask::MOVE_SELF) {
                    // Moved away: stop watching it under its old name (a move within the
                    // tree re-adds it from the MOVED_TO below).
                    let _ = self.watches.remove(ev.wd.clone());
                    self.dirs.remove(&ev.wd);
                }
                continue;
            }
            let mut found = None;
            if self.recursive
                && ev.mask.contains(EventMask::ISDIR)
                && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
            {
                let (mut watches, user) = (self.watches.clone(), &self.user);
                let mut added = HashMap::new();
                found = Some(Vec::new());
                // Failing to watch a new subdirectory (gone already, no permission) only
                // means its contents are not reported.
                let _ =
                    creds::as_user_here(user, || add_tree(&mut watches, &path, true, &mut added, false, &mut found));
                self.dirs.extend(added);
            }
            let mut events: Vec<FilesystemEvent> =
                event_types(ev.mask).into_iter().map(|t| self.event(&path, t)).collect();
            events.extend(found.unwrap_or_default().iter().map(|p| self.event(p, EventType::Create)));
            if !events.is_empty() {
                return Some(Ok(events));
            }
        }
    }
}

impl DirWatch {
    fn event(&self, path: &Path, t: EventType) -> FilesystemEvent {
        let entry = if self.include_entry { entry::stat(path, &self.names).ok() } else { None };
        FilesystemEvent { name: relative_name(&self.root, path), r#type: t as i32, entry }
    }
}

/// Watch `dir`, and with `recursive` every directory below it (symlinks not followed).
///
/// `found` collects what already exists below `dir` when it is a new directory: created
/// before its watch was in place, those entries would otherwise go unreported.
fn add_tree(
    watches: &mut Watches,
    dir: &Path,
    recursive: bool,
    dirs: &mut HashMap<WatchDescriptor, PathBuf>,
    top: bool,
    found: &mut Option<Vec<PathBuf>>,
) -> std::io::Result<()> {
    // The watched directory itself may be reached through a symlink; those below are not followed.
    let m = if top { mask() | WatchMask::ONLYDIR } else { mask() | WatchMask::ONLYDIR | WatchMask::DONT_FOLLOW };
    match watches.add(dir, m) {
        Ok(wd) => {
            dirs.insert(wd, dir.to_path_buf());
        }
        Err(e) if top => return Err(e),
        Err(_) => return Ok(()),
    }
    if recursive {
        let Ok(rd) = std::fs::read_dir(dir) else { return Ok(()) };
        let mut children: Vec<_> = rd.flatten().collect();
        children.sort_by_key(|c| c.file_name());
        for child in children {
            if let Some(f) = found.as_mut() {
                f.push(child.path());
            }
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                add_tree(watches, &child.path(), true, dirs, false, found)?;
            }
        }
    }
    Ok(())
}

/// A watcher polled with `GetWatcherEvents`: a task fills a bounded buffer.
struct Polled {
    buffer: Mutex<VecDeque<FilesystemEvent>>,
    error: Mutex<Option<ConnectError>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Polled {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

/// The polled watchers of the sandbox, by id.
#[derive(Clone, Default)]
pub struct Watchers {
    inner: Arc<Mutex<HashMap<String, Arc<Polled>>>>,
}

impl Watchers {
    pub fn create(&self, mut watch: DirWatch) -> Result<String, ConnectError> {
        let id = new_id();
        let polled = Arc::new(Polled { buffer: Mutex::default(), error: Mutex::default(), task: Mutex::default() });
        {
            let mut map = self.inner.lock().unwrap();
            if map.len() >= MAX_WATCHERS {
                return Err(ConnectError::new(
                    Code::ResourceExhausted,
                    format!("too many watchers (at most {MAX_WATCHERS}); remove some"),
                ));
            }
            map.insert(id.clone(), polled.clone());
        }
        let weak = Arc::downgrade(&polled);
        let task = tokio::spawn(async move {
            while let Some(batch) = watch.next().await {
                let Some(p) = weak.upgrade() else { return };
                match batch {
                    Ok(events) => {
                        let mut buf = p.buffer.lock().unwrap();
                        buf.extend(events);
                        while buf.len() > MAX_BUFFERED_EVENTS {
                            buf.pop_front();
                        }
                    }
                    Err(e) => {
                        *p.error.lock().unwrap() = Some(e);
                        return;
                    }
                }
            }
        });
        *polled.task.lock().unwrap() = Some(task.abort_handle());
        Ok(id)
    }

    /// The buffered events (cleared), or the error that stopped the watcher.
    pub fn take_events(&self, id: &str) -> Result<Vec<FilesystemEvent>, ConnectError> {
        let p = self.get(id)?;
        if let Some(e) = p.error.lock().unwrap().clone() {
            return Err(e);
        }
        let events = std::mem::take(&mut *p.buffer.lock().unwrap());
        Ok(events.into())
    }

    pub fn remove(&self, id: &str) -> Result<(), ConnectError> {
        self.inner.lock().unwrap().remove(id).map(|_| ()).ok_or_else(|| not_found(id))
    }

    fn get(&self, id: &str) -> Result<Arc<Polled>, ConnectError> {
        self.inner.lock().unwrap().get(id).cloned().ok_or_else(|| not_found(id))
    }
}

fn not_found(id: &str) -> ConnectError {
    ConnectError::not_found(format!("watcher with id {id:?} not found"))
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        b = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes();
    }
    format!("w{:016x}", u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn me(home: &Path) -> User {
        User::current_with_home(home)
    }

    #[test]
    fn maps_masks_like_fsnotify() {
        assert_eq!(event_types(EventMask::CREATE | EventMask::ISDIR), [EventType::Create]);
        assert_eq!(event_types(EventMask::MOVED_TO), [EventType::Create]);
        assert_eq!(event_types(EventMask::MOVED_FROM), [EventType::Rename]);
        assert_eq!(event_types(EventMask::MODIFY), [EventType::Write]);
        assert_eq!(event_types(EventMask::ATTRIB), [EventType::Chmod]);
        assert_eq!(event_types(EventMask::DELETE), [EventType::Remove]);
        assert!(event_types(EventMask::CLOSE_WRITE).is_empty());
        assert_eq!(relative_name(Path::new("/a"), Path::new("/a/b/c")), "b/c");
        assert_eq!(relative_name(Path::new("/a"), Path::new("/a")), ".");
    }

    async fn collect(w: &mut DirWatch, want: usize) -> Vec<(String, EventType)> {
        let mut out = Vec::new();
        while out.len() < want {
            let batch =
                tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("events in time").unwrap().unwrap();
            out.extend(batch.into_iter().map(|e| (e.name, EventType::try_from(e.r#type).unwrap())));
        }
        out
    }

    #[tokio::test]
    async fn recursive_watch_sees_new_subdirectories() {
        let t = tempfile::tempdir().unwrap();
        let mut w = DirWatch::open(t.path().to_path_buf(), true, true, me(t.path())).await.unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let evs = collect(&mut w, 1).await;
        assert_eq!(evs, [("sub".to_string(), EventType::Create)]);
        std::fs::write(t.path().join("sub/f.txt"), b"x").unwrap();
        let evs = collect(&mut w, 2).await;
        assert_eq!(evs[0], ("sub/f.txt".to_string(), EventType::Create));
        assert_eq!(evs[1], ("sub/f.txt".to_string(), EventType::Write));
        std::fs::remove_file(t.path().join("sub/f.txt")).unwrap();
        assert_eq!(collect(&mut w, 1).await, [("sub/f.txt".to_string(), EventType::Remove)]);
    }

    #[tokio::test]
    async fn entries_made_before_a_new_directory_is_watched_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let mut w = DirWatch::open(t.path().to_path_buf(), true, false, me(t.path())).await.unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        let evs = collect(&mut w, 3).await;
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/c"]);
    }

    #[tokio::test]
    async fn polled_watcher_buffers_and_clears() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let ws = Watchers::default();
        let w = DirWatch::open(t.path().to_path_buf(), false, false, me(t.path())).await.unwrap();
        let id = ws.create(w).unwrap();
        std::fs::write(t.path().join("a"), b"").unwrap();
        std::fs::write(t.path().join("sub/ignored"), b"").unwrap(); // not recursive
        tokio::time::sleep(Duration::from_millis(200)).await;
        let evs = ws.take_events(&id).unwrap();
        assert_eq!(evs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(evs[0].entry.is_none());
        assert!(ws.take_events(&id).unwrap().is_empty());
        ws.remove(&id).unwrap();
        assert_eq!(ws.take_events(&id).unwrap_err().code, Code::NotFound);
        assert_eq!(ws.remove(&id).unwrap_err().code, Code::NotFound);
    }

    #[tokio::test]
    async fn watch_errors() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let e = DirWatch::open(f, false, false, me(t.path())).await.err().unwrap();
        assert_eq!(e.code, Code::InvalidArgument);
        let e = DirWatch::open(t.path().join("nope"), false, false, me(t.path())).await.err().unwrap();
        assert_eq!(e.code, Code::NotFound);
    }
}
