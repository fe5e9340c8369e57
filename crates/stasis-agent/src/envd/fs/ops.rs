//! The filesystem operations themselves: plain blocking functions on resolved paths, run
//! by the caller under the user's credentials (see `creds`). Errors are Connect errors.

use std::io;
use std::path::{Path, PathBuf};

use stasis_proto::connect::{Code, ConnectError};
use stasis_proto::filesystem::EntryInfo;

use super::entry::{self, io_error, Names};

pub fn stat(path: &Path, names: &Names) -> Result<EntryInfo, ConnectError> {
    entry::stat(path, names).map_err(|e| io_error(e, "cannot stat", path))
}

/// Create `path` and missing parents (0755). `already_exists` when it is a directory.
pub fn make_dir(path: &Path, names: &Names) -> Result<EntryInfo, ConnectError> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => {
            return Err(ConnectError::new(Code::AlreadyExists, format!("directory already exists: {}", path.display())))
        }
        Ok(_) => {
            return Err(ConnectError::invalid_argument(format!(
                "path already exists but is not a directory: {}",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e, "cannot stat", path)),
    }
    ensure_dirs(path)?;
    stat(path, names)
}

/// Make sure `dir` is a directory, creating it and missing parents (0755).
pub fn ensure_dirs(dir: &Path) -> Result<(), ConnectError> {
    create_missing_dirs(dir, None)
}

/// [`ensure_dirs`], run with the agent's own rights, with every directory it creates handed
/// to `owner` (uid, gid): what envd does for the parents of an upload, so a user can upload
/// to a new top-level directory (the SDKs' own tests write `/0/file` as `user`). Existing
/// directories are left as they are.
pub fn ensure_dirs_owned_by(dir: &Path, owner: (u32, u32)) -> Result<(), ConnectError> {
    create_missing_dirs(dir, Some(owner))
}

fn create_missing_dirs(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), ConnectError> {
    let mut missing: Vec<&Path> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        match std::fs::metadata(p) {
            Ok(md) if md.is_dir() => break,
            Ok(_) => {
                return Err(ConnectError::invalid_argument(format!("path is a file, not a directory: {}", p.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p),
            Err(e) => return Err(io_error(e, "cannot stat", p)),
        }
        cur = p.parent();
    }
    for p in missing.into_iter().rev() {
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
        match b.create(p) {
            Ok(()) => {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid))
                        .map_err(|e| io_error(e, "cannot hand over directory", p))?;
                }
            }
            // Created concurrently: fine as long as it is a directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(io_error(e, "cannot create directory", p)),
        }
    }
    Ok(())
}

/// Rename `source` to `destination`, creating the destination's parents.
pub fn rename(source: &Path, destination: &Path, names: &Names) -> Result<EntryInfo, ConnectError> {
    if let Err(e) = std::fs::symlink_metadata(source) {
        return Err(io_error(e, "cannot move: source", source));
    }
    if let Some(parent) = destination.parent() {
        ensure_dirs(parent)?;
    }
    std::fs::rename(source, destination).map_err(|e| {
        if e.raw_os_error() == Some(libc::EXDEV) {
            ConnectError::new(
                Code::FailedPrecondition,
                format!(
                    "cannot move {} to {}: they are on different filesystems",
                    source.display(),
                    destination.display()
                ),
            )
        } else {
            io_error(e, &format!("cannot move {} to", source.display()), destination)
        }
    })?;
    stat(destination, names)
}

/// Remove a file, symlink or directory tree. A path that does not exist is not an error
/// (as envd's `os.RemoveAll`).
pub fn remove(path: &Path) -> Result<(), ConnectError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e, "cannot remove", path)),
    };
    if path == Path::new("/") {
        return Err(ConnectError::invalid_argument("refusing to remove /"));
    }
    let r = if md.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(e, "cannot remove", path)),
        _ => Ok(()),
    }
}

/// The entries under `path` down to `depth` levels (1 = the directory's own entries),
/// depth-first in name order. `path` may be a symlink to a directory; symlinks below it
/// are listed, not followed. Paths in the answer are under `path` as asked.
pub fn list_dir(path: &Path, depth: u32, names: &Names) -> Result<Vec<EntryInfo>, ConnectError> {
    let depth = depth.max(1);
    let md = std::fs::metadata(path).map_err(|e| io_error(e, "cannot list", path))?;
    if !md.is_dir() {
        return Err(ConnectError::invalid_argument(format!("path is not a directory: {}", path.display())));
    }
    let mut out = Vec::new();
    walk(path, 1, depth, names, &mut out, true)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    level: u32,
    depth: u32,
    names: &Names,
    out: &mut Vec<EntryInfo>,
    top: bool,
) -> Result<(), ConnectError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if top => return Err(io_error(e, "cannot list", dir)),
        // A nested directory the user cannot read: list it, not its contents.
        Err(_) => return Ok(()),
    };
    let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let Ok(md) = std::fs::symlink_metadata(&child) else { continue }; // vanished meanwhile
        out.push(entry::from_metadata(&child, &md, names));
        if md.is_dir() && level < depth {
            walk(&child, level + 1, depth, names, out, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stasis_proto::filesystem::FileType;

    fn names() -> Names {
        Names::default()
    }

    #[test]
    fn ensure_dirs_owned_by_hands_over_only_what_it_creates() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        ensure_dirs_owned_by(&t.path().join("a/b"), (65534, 65533)).unwrap();
        let owner = |p: &Path| std::fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
        assert_eq!(owner(&t.path().join("a")), (65534, 65533));
        assert_eq!(owner(&t.path().join("a/b")), (65534, 65533));
        assert_eq!(owner(t.path()), (0, 0), "an existing parent keeps its owner");
        std::fs::write(t.path().join("f"), "").unwrap();
        assert_eq!(ensure_dirs_owned_by(&t.path().join("f/x"), (1, 1)).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn make_dir_creates_parents_and_reports_existing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/c");
        let e = make_dir(&p, &names()).unwrap();
        assert_eq!((e.name.as_str(), e.r#type), ("c", FileType::Directory as i32));
        assert!(p.is_dir());
        assert_eq!(make_dir(&p, &names()).unwrap_err().code, Code::AlreadyExists);
        std::fs::write(t.path().join("f"), b"").unwrap();
        assert_eq!(make_dir(&t.path().join("f"), &names()).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(make_dir(&t.path().join("f/x"), &names()).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn move_creates_destination_parents() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.txt");
        std::fs::write(&src, b"abc").unwrap();
        let dst = t.path().join("x/y/z.txt");
        let e = rename(&src, &dst, &names()).unwrap();
        assert_eq!((e.name.as_str(), e.size, e.path.as_str()), ("z.txt", 3, dst.to_str().unwrap()));
        assert!(!src.exists());
        assert_eq!(rename(&src, &dst, &names()).unwrap_err().code, Code::NotFound);
    }

    #[test]
    fn remove_file_tree_and_missing() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("e/f")).unwrap();
        std::fs::write(d.join("e/f/g"), b"").unwrap();
        let f = t.path().join("file");
        std::fs::write(&f, b"").unwrap();
        remove(&d).unwrap();
        remove(&f).unwrap();
        assert!(!d.exists() && !f.exists());
        remove(&t.path().join("missing")).unwrap();
    }

    #[test]
    fn list_dir_honours_depth() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        std::fs::write(t.path().join("a/b/c/deep.txt"), b"").unwrap();
        std::fs::write(t.path().join("z.txt"), b"zz").unwrap();
        std::os::unix::fs::symlink(t.path().join("a"), t.path().join("link")).unwrap();
        let rel = |es: Vec<EntryInfo>| -> Vec<String> {
            es.iter().map(|e| e.path.strip_prefix(t.path().to_str().unwrap()).unwrap().to_string()).collect()
        };
        assert_eq!(rel(list_dir(t.path(), 0, &names()).unwrap()), ["/a", "/link", "/z.txt"]);
        assert_eq!(rel(list_dir(t.path(), 2, &names()).unwrap()), ["/a", "/a/b", "/link", "/z.txt"]);
        assert_eq!(
            rel(list_dir(t.path(), 9, &names()).unwrap()),
            ["/a", "/a/b", "/a/b/c", "/a/b/c/deep.txt", "/link", "/z.txt"]
        );
        // Listing through a symlink keeps the asked path.
        assert_eq!(rel(list_dir(&t.path().join("link"), 1, &names()).unwrap()), ["/link/b"]);
        assert_eq!(list_dir(&t.path().join("z.txt"), 1, &names()).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(list_dir(&t.path().join("nope"), 1, &names()).unwrap_err().code, Code::NotFound);
    }
}
