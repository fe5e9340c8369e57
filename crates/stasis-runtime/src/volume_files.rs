//! The files of a volume as its content API (`/volumecontent/{id}/...`) sees them: stat,
//! list, make directories, read, write, change owner and mode, remove.
//!
//! The daemon runs as host root and a volume's files are written by sandboxes, so every
//! path is resolved inside the volume's directory with `openat2(RESOLVE_IN_ROOT)`: a
//! symlink a sandbox planted (`/x -> /etc`) resolves as it would inside the sandbox,
//! never to a host file. Operations act on the final component through its parent's fd
//! without following it (`AT_SYMLINK_NOFOLLOW`, `unlinkat`). Owners are the sandbox's
//! ids (0..65535, host ids 100000 up).
//!
//! It must not know the HTTP wire; the API maps [`Entry`] and errors.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::container::idmap::{HOST_ID_BASE, ID_COUNT};
use crate::container::volumes::DEFAULT_OWNER;

/// Deepest listing the API serves (E2B's limit).
pub const MAX_DEPTH: u32 = 10;

/// A file, directory or symlink of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// "file", "directory", "symlink" or "unknown".
    pub kind: &'static str,
    /// Absolute inside the volume.
    pub path: String,
    pub size: u64,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Unix milliseconds.
    pub atime_ms: i64,
    pub mtime_ms: i64,
    pub ctime_ms: i64,
    pub target: Option<String>,
}

/// What went wrong, as the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("path {0} not found")]
    NotFound(String),
    #[error("path {0} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, FilesError>;

/// Owner and mode a create asks for (`None`: the defaults, E2B's: 0777 directories, 0666
/// files, owned by the templates' `user`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// One volume's directory.
pub struct VolumeFiles {
    root: File,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FilesError {
    let context = context.into();
    move |source| FilesError::Io { context, source }
}

/// `path` normalized to `/a/b`, or why not (no `..`: a volume path names what it says).
fn clean(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.contains(&"..") || path.contains('\0') {
        return Err(FilesError::Invalid(format!("path {path:?} has .. or NUL in it")));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn host_id(id: u32) -> Result<u32> {
    if id >= ID_COUNT {
        return Err(FilesError::Invalid(format!("uid/gid {id} is outside the sandbox's ids (0..{})", ID_COUNT - 1)));
    }
    Ok(HOST_ID_BASE + id)
}

fn sandbox_id(host: u32) -> u32 {
    host.checked_sub(HOST_ID_BASE).filter(|i| *i < ID_COUNT).unwrap_or(65534)
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| FilesError::Invalid("NUL in path".into()))
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl VolumeFiles {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Ok(Self { root: File::open(dir)? })
    }

    /// Opens `rel` (relative, clean) inside the root.
    fn resolve(&self, rel: &str, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
        let name =
            CString::new(if rel.is_empty() { "." } else { rel }).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: open_how is plain data; all-zero is its empty value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.mode = if flags & libc::O_CREAT != 0 { mode as u64 } else { 0 };
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how of the
        // size passed; the fd it returns is ours.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                name.as_ptr(),
                &how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(last_err());
        }
        // SAFETY: a fresh fd owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// The parent directory of `path` (clean, not `/`) and its last component.
    fn parent(&self, path: &str) -> Result<(OwnedFd, CString, String)> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name.is_empty() {
            return Err(FilesError::Invalid("the volume's root cannot be changed this way".into()));
        }
        let fd = self.resolve(dir.trim_start_matches('/'), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                FilesError::NotFound(if dir.is_empty() { "/".into() } else { dir.to_string() })
            } else {
                io(format!("open {dir}"))(e)
            }
        })?;
        Ok((fd, cstr(name)?, name.to_string()))
    }

    fn stat_at(&self, dir: &OwnedFd, name: &CString, path: &str) -> Result<Entry> {
        // SAFETY: plain data filled in by fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let flags = libc::AT_SYMLINK_NOFOLLOW | if name.as_bytes().is_empty() { libc::AT_EMPTY_PATH } else { 0 };
        // SAFETY: fstatat on a valid dirfd, a NUL-terminated name and a stat buffer.
        if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) } != 0 {
            let e = last_err();
            return Err(if e.raw_os_error() == Some(libc::ENOENT) {
                FilesError::NotFound(path.to_string())
            } else {
                io(format!("stat {path}"))(e)
            });
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => "file",
            libc::S_IFDIR => "directory",
            libc::S_IFLNK => "symlink",
            _ => "unknown",
        };
        let target = (kind == "symlink").then(|| {
            let mut buf = vec![0u8; 4096];
            // SAFETY: readlinkat into a buffer of the length passed.
            let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned()
        });
        let ms = |s: i64, ns: i64| s * 1000 + ns / 1_000_000;
        Ok(Entry {
            name: path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("/").to_string(),
            kind,
            path: path.to_string(),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: sandbox_id(st.st_uid),
            gid: sandbox_id(st.st_gid),
            atime_ms: ms(st.st_atime, st.st_atime_nsec),
            mtime_ms: ms(st.st_mtime, st.st_mtime_nsec),
            ctime_ms: ms(st.st_ctime, st.st_ctime_nsec),
            target,
        })
    }

    /// What is at `path` (a symlink itself, not what it points to).
    pub fn stat(&self, path: &str) -> Result<Entry> {
        let path = clean(path)?;
        if path == "/" {
            let fd = OwnedFd::from(self.root.try_clone().map_err(io("open root"))?);
            return self.stat_at(&fd, &cstr("")?, "/");
        }
        let (dir, name, _) = self.parent(&path)?;
        self.stat_at(&dir, &name, &path)
    }

    /// The entries under directory `path`, `depth` levels down (1: its children).
    pub fn list(&self, path: &str, depth: u32) -> Result<Vec<Entry>> {
        let path = clean(path)?;
        if depth > MAX_DEPTH {
            return Err(FilesError::Invalid(format!("depth {depth} is more than {MAX_DEPTH}")));
        }
        let top = self.stat(&path)?;
        if top.kind != "directory" {
            return Err(FilesError::Invalid(format!("{path} is not a directory")));
        }
        let mut out = Vec::new();
        self.list_into(&path, depth.max(1), &mut out)?;
        Ok(out)
    }

    fn list_into(&self, path: &str, depth: u32, out: &mut Vec<Entry>) -> Result<()> {
        let fd = self
            .resolve(path.trim_start_matches('/'), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
            .map_err(io(format!("open {path}")))?;
        let dir = File::from(fd);
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(io(format!("list {path}")))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let dfd = OwnedFd::from(dir);
        for n in names {
            let child = if path == "/" { format!("/{n}") } else { format!("{path}/{n}") };
            let e = match self.stat_at(&dfd, &cstr(&n)?, &child) {
                Ok(e) => e,
                Err(FilesError::NotFound(_)) => continue, // removed meanwhile
                Err(e) => return Err(e),
            };
            let recurse = e.kind == "directory" && depth > 1;
            out.push(e);
            if recurse {
                self.list_into(&child, depth - 1, out)?;
            }
        }
        Ok(())
    }

    fn chown_chmod(&self, dir: &OwnedFd, name: &CString, path: &str, a: Attrs, dflt_mode: Option<u32>) -> Result<()> {
        let uid = a.uid.map(host_id).transpose()?;
        let gid = a.gid.map(host_id).transpose()?;
        if uid.is_some() || gid.is_some() {
            let (u, g) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
            // SAFETY: fchownat on a valid dirfd and name, not following a symlink.
            if unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), u, g, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                return Err(io(format!("chown {path}"))(last_err()));
            }
        }
        if let Some(mode) = a.mode.or(dflt_mode) {
            if mode > 0o7777 {
                return Err(FilesError::Invalid(format!("mode {mode:o} is not a permission mode")));
            }
            let e = self.stat_at(dir, name, path)?;
            if e.kind == "symlink" {
                return Ok(()); // a symlink has no mode of its own
            }
            // SAFETY: fchmodat on a valid dirfd and name (checked not to be a symlink).
            if unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) } != 0 {
                return Err(io(format!("chmod {path}"))(last_err()));
            }
        }
        Ok(())
    }

    /// Makes directory `path`; with `force`, its missing parents too, and an existing
    /// directory is no error.
    pub fn make_dir(&self, path: &str, a: Attrs, force: bool) -> Result<Entry> {
        let path = clean(path)?;
        if path == "/" {
            return if force { self.stat("/") } else { Err(FilesError::Exists(path)) };
        }
        if force {
            let mut sofar = String::new();
            let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            for c in &parts[..parts.len() - 1] {
                sofar = format!("{sofar}/{c}");
                match self.make_one(&sofar, a) {
                    Ok(_) | Err(FilesError::Exists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match self.make_one(&path, a) {
            Err(FilesError::Exists(_)) if force && self.stat(&path)?.kind == "directory" => self.stat(&path),
            other => other,
        }
    }

    fn make_one(&self, path: &str, a: Attrs) -> Result<Entry> {
        let (dir, name, _) = self.parent(path)?;
        // SAFETY: mkdirat on a valid dirfd and a NUL-terminated name.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
            let e = last_err();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => FilesError::Exists(path.to_string()),
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => FilesError::NotFound(path.to_string()),
                _ => io(format!("mkdir {path}"))(e),
            });
        }
        let a = Attrs { uid: a.uid.or(Some(DEFAULT_OWNER)), gid: a.gid.or(Some(DEFAULT_OWNER)), ..a };
        self.chown_chmod(&dir, &name, path, a, Some(0o777))?;
        self.stat_at(&dir, &name, path)
    }

    /// Writes `data` to file `path` (replacing one that exists). With `force`, missing
    /// parent directories are made.
    pub fn write(&self, path: &str, a: Attrs, force: bool, data: &mut dyn std::io::Read) -> Result<Entry> {
        let path = clean(path)?;
        if force {
            if let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
                self.make_dir(parent, Attrs::default(), true)?;
            }
        }
        let (dir, name, _) = self.parent(&path)?;
        // The file itself is opened through its parent, never following a final symlink.
        // SAFETY: openat on a valid dirfd and name; the fd is ours.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            let e = last_err();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => FilesError::Invalid(format!("{path} is a symlink")),
                Some(libc::EISDIR) => FilesError::Invalid(format!("{path} is a directory")),
                _ => io(format!("create {path}"))(e),
            });
        }
        // SAFETY: a fresh fd owned by nothing else.
        let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        std::io::copy(data, &mut f).map_err(io(format!("write {path}")))?;
        f.sync_all().map_err(io(format!("sync {path}")))?;
        let a = Attrs { uid: a.uid.or(Some(DEFAULT_OWNER)), gid: a.gid.or(Some(DEFAULT_OWNER)), ..a };
        self.chown_chmod(&dir, &name, &path, a, Some(0o666))?;
        self.stat_at(&dir, &name, &path)
    }

    /// File `path`, open for reading (a symlink is followed inside the volume).
    pub fn read(&self, path: &str) -> Result<File> {
        let path = clean(path)?;
        let fd = self.resolve(path.trim_start_matches('/'), libc::O_RDONLY, 0).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                FilesError::NotFound(path.clone())
            } else {
                io(format!("open {path}"))(e)
            }
        })?;
        let f = File::from(fd);
        if f.metadata().map_err(io(format!("stat {path}")))?.is_dir() {
            return Err(FilesError::Invalid(format!("{path} is a directory")));
        }
        Ok(f)
    }

    /// Changes owner and/or mode of `path`.
    pub fn update(&self, path: &str, a: Attrs) -> Result<Entry> {
        let path = clean(path)?;
        if path == "/" {
            return Err(FilesError::Invalid("the volume's root cannot be changed".into()));
        }
        let (dir, name, _) = self.parent(&path)?;
        self.stat_at(&dir, &name, &path)?;
        self.chown_chmod(&dir, &name, &path, a, None)?;
        self.stat_at(&dir, &name, &path)
    }

    /// Removes `path` (a directory with everything in it). The root cannot be removed.
    pub fn remove(&self, path: &str) -> Result<()> {
        let path = clean(path)?;
        if path == "/" {
            return Err(FilesError::Invalid("the volume's root cannot be removed".into()));
        }
        let (dir, name, _) = self.parent(&path)?;
        let e = self.stat_at(&dir, &name, &path)?;
        if e.kind == "directory" {
            for child in self.list(&path, 1)? {
                self.remove(&child.path)?;
            }
        }
        let flags = if e.kind == "directory" { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: unlinkat on a valid dirfd and name (never follows a symlink).
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } != 0 {
            return Err(io(format!("remove {path}"))(last_err()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol() -> (tempfile::TempDir, VolumeFiles) {
        let d = tempfile::tempdir().unwrap();
        let v = VolumeFiles::open(d.path()).unwrap();
        (d, v)
    }

    #[test]
    fn paths_resolve_inside_the_volume_even_through_planted_symlinks() {
        let (d, v) = vol();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("root")).unwrap();
        // Reading through a symlink to an absolute host path finds nothing in the volume.
        assert!(matches!(v.read("/escape/secret"), Err(FilesError::NotFound(_))));
        // A write through a symlinked directory lands inside the volume, or fails.
        let _ = v.write("/root/etc-file", Attrs::default(), true, &mut "x".as_bytes());
        assert!(!Path::new("/etc-file").exists());
        // Writing onto a symlink itself is refused, not followed.
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        assert!(v.write("/link", Attrs::default(), false, &mut "y".as_bytes()).is_err());
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "host");
        assert!(v.read("/../x").is_err());
    }

    #[test]
    fn make_dir_write_list_stat_and_remove() {
        let (_d, v) = vol();
        assert!(matches!(v.make_dir("/a/b", Attrs::default(), false), Err(FilesError::NotFound(_))));
        let e = v.make_dir("/a/b", Attrs { mode: Some(0o750), ..Default::default() }, true).unwrap();
        assert_eq!((e.kind, e.mode, e.name.as_str()), ("directory", 0o750, "b"));
        v.make_dir("/a/b", Attrs::default(), true).unwrap();
        assert!(matches!(v.make_dir("/a/b", Attrs::default(), false), Err(FilesError::Exists(_))));
        let f = v.write("/a/b/f.txt", Attrs::default(), false, &mut "hello".as_bytes()).unwrap();
        assert_eq!((f.kind, f.size, f.mode), ("file", 5, 0o666));
        let mut s = String::new();
        std::io::Read::read_to_string(&mut v.read("/a/b/f.txt").unwrap(), &mut s).unwrap();
        assert_eq!(s, "hello");
        let names: Vec<String> = v.list("/", 3).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(names, ["/a", "/a/b", "/a/b/f.txt"]);
        assert_eq!(v.list("/", 1).unwrap().len(), 1);
        assert!(v.list("/", 11).is_err());
        assert_eq!(v.update("/a/b/f.txt", Attrs { mode: Some(0o600), ..Default::default() }).unwrap().mode, 0o600);
        assert!(v.remove("/").is_err());
        v.remove("/a").unwrap();
        assert!(matches!(v.stat("/a"), Err(FilesError::NotFound(_))));
    }
}
