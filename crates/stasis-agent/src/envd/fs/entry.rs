//! `EntryInfo`: what the wire says about one path, built the way envd builds it.
//!
//! envd (Go) conventions kept for compatibility: `mode` holds only the permission bits,
//! `permissions` is Go's `FileMode.String()` (so a symlink reads `Lrwxrwxrwx` and /tmp
//! `dtrwxrwxrwx`), and a symlink reports the type and permission bits of what it finally
//! points to, with `symlinkTarget` the fully resolved path. `metadata` is the user
//! metadata (`metadata.rs`) of the path, read with the caller's rights.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stasis_proto::connect::{Code, ConnectError};
use stasis_proto::filesystem::{EntryInfo, FileType};
use stasis_proto::Timestamp;

use super::path::base_name;

/// Owner and group names of the sandbox, from its /etc/passwd and /etc/group (the agent is
/// static: no NSS). Unknown ids are shown as numbers, as envd does.
#[derive(Default, Clone)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    pub fn load() -> Names {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Names::parse(&passwd, &group)
    }

    pub fn parse(passwd: &str, group: &str) -> Names {
        let table = |text: &str| {
            let mut m = HashMap::new();
            for line in text.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 3 {
                    if let Ok(id) = f[2].parse::<u32>() {
                        m.entry(id).or_insert_with(|| f[0].to_string());
                    }
                }
            }
            m
        };
        Names { users: table(passwd), groups: table(group) }
    }

    fn user(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    fn group(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}

/// The entry for `path`, not following a final symlink.
pub fn stat(path: &Path, names: &Names) -> io::Result<EntryInfo> {
    let md = std::fs::symlink_metadata(path)?;
    Ok(from_metadata(path, &md, names))
}

pub fn from_metadata(path: &Path, md: &Metadata, names: &Names) -> EntryInfo {
    let mut kind = file_type(md.mode());
    let mut perm = md.mode() & 0o777;
    let mut symlink_target = None;
    if md.file_type().is_symlink() {
        match std::fs::canonicalize(path) {
            Ok(target) => {
                if let Ok(tmd) = std::fs::metadata(&target) {
                    kind = file_type(tmd.mode());
                    perm = tmd.mode() & 0o777;
                }
                symlink_target = Some(target.to_string_lossy().into_owned());
            }
            // Broken or cyclic: say where it points, keep type SYMLINK.
            Err(_) => symlink_target = std::fs::read_link(path).ok().map(|t| t.to_string_lossy().into_owned()),
        }
    }
    EntryInfo {
        name: base_name(path),
        r#type: kind as i32,
        path: path.to_string_lossy().into_owned(),
        size: md.size() as i64,
        mode: perm,
        permissions: permissions_string(md.mode()),
        owner: names.user(md.uid()),
        group: names.group(md.gid()),
        modified_time: Some(Timestamp::new(md.mtime(), md.mtime_nsec() as i32)),
        symlink_target,
        metadata: super::metadata::read(path),
    }
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FileType::File,
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        _ => FileType::Unspecified,
    }
}

/// Go's `os.FileMode.String()` for a Linux `st_mode`: type and special-bit letters in Go's
/// order (`dalTLDpSugct?`, `-` when none), then `rwxrwxrwx`.
pub fn permissions_string(mode: u32) -> String {
    let mut s = String::with_capacity(12);
    let fmt = mode & libc::S_IFMT;
    let flags = [
        ('d', fmt == libc::S_IFDIR),
        ('L', fmt == libc::S_IFLNK),
        ('D', fmt == libc::S_IFBLK || fmt == libc::S_IFCHR),
        ('p', fmt == libc::S_IFIFO),
        ('S', fmt == libc::S_IFSOCK),
        ('u', mode & libc::S_ISUID != 0),
        ('g', mode & libc::S_ISGID != 0),
        ('c', fmt == libc::S_IFCHR),
        ('t', mode & libc::S_ISVTX != 0),
    ];
    for (c, on) in flags {
        if on {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// An I/O failure as a Connect error, naming the path.
pub fn io_error(e: io::Error, what: &str, path: &Path) -> ConnectError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::NotFound,
        io::ErrorKind::PermissionDenied => Code::PermissionDenied,
        io::ErrorKind::AlreadyExists => Code::AlreadyExists,
        io::ErrorKind::InvalidInput | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Code::InvalidArgument
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    ConnectError::new(code, format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn permissions_like_go() {
        assert_eq!(permissions_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(permissions_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(permissions_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(permissions_string(libc::S_IFDIR | libc::S_ISVTX | 0o777), "dtrwxrwxrwx");
        assert_eq!(permissions_string(libc::S_IFCHR | 0o666), "Dcrw-rw-rw-");
        assert_eq!(permissions_string(libc::S_IFREG | libc::S_ISUID | 0o755), "urwxr-xr-x");
        assert_eq!(permissions_string(libc::S_IFREG), "----------");
    }

    #[test]
    fn names_fall_back_to_numbers() {
        let n = Names::parse(
            "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/bash\n",
            "root:x:0:\nusers:x:1000:\n",
        );
        assert_eq!(
            (n.user(1000), n.group(1000), n.user(42), n.group(7)),
            ("user".into(), "users".into(), "42".into(), "7".into())
        );
    }

    #[test]
    fn entry_for_file_dir_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, b"hello").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let names = Names::parse(&format!("me:x:{}:0::/:/bin/sh\n", unsafe { libc::geteuid() }), "");
        let e = stat(&f, &names).unwrap();
        assert_eq!(
            (e.name.as_str(), e.r#type, e.size, e.mode, e.permissions.as_str()),
            ("a.txt", FileType::File as i32, 5, 0o640, "-rw-r-----")
        );
        assert_eq!(e.owner, "me");
        assert_eq!(e.path, f.to_string_lossy());
        assert!(e.modified_time.unwrap().seconds > 1_600_000_000);
        assert!(e.symlink_target.is_none());

        let d = stat(dir.path(), &names).unwrap();
        assert_eq!(d.r#type, FileType::Directory as i32);
        assert!(d.permissions.starts_with('d'));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink("a.txt", &link).unwrap();
        let l = stat(&link, &names).unwrap();
        assert_eq!(l.r#type, FileType::File as i32);
        assert_eq!(l.mode, 0o640);
        assert_eq!(l.permissions, "Lrwxrwxrwx");
        assert_eq!(l.symlink_target.as_deref(), Some(std::fs::canonicalize(&f).unwrap().to_str().unwrap()));

        let broken = dir.path().join("broken");
        std::os::unix::fs::symlink("/nonexistent/x", &broken).unwrap();
        let b = stat(&broken, &names).unwrap();
        assert_eq!(b.r#type, FileType::Symlink as i32);
        assert_eq!(b.symlink_target.as_deref(), Some("/nonexistent/x"));

        let missing = stat(&dir.path().join("nope"), &names).unwrap_err();
        assert_eq!(io_error(missing, "stat", Path::new("/x")).code, Code::NotFound);
    }
}
