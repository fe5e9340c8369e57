//! User metadata of files: `user.e2b.<key>` extended attributes, as envd stores them.
//!
//! The SDKs send metadata with an upload as `X-Metadata-<key>: <value>` headers and read it
//! back in every `EntryInfo` (`metadata`, a string map). envd's rules, kept here so files
//! look the same to a client whichever agent wrote them: keys are lowercased (they travel
//! as header names), keys and values are printable ASCII, a key is at most 255 bytes with
//! the prefix, all of a file's metadata at most 4096 bytes (ext4 keeps an inode's xattrs in
//! one block). An upload *replaces* the file's set: `O_TRUNC` keeps xattrs, so keys the new
//! upload does not name are removed. Reading skips what cannot be a proto string (xattrs
//! set inside the sandbox may hold any bytes) and what the caller may not read.
//!
//! Owns only the xattrs; knows nothing of HTTP beyond the header prefix.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The namespace of user metadata (`user.` is the one unprivileged users may write).
pub const XATTR_PREFIX: &str = "user.e2b.";
/// The upload header prefix the SDKs use (`X-Metadata-<key>`), matched case-insensitively.
pub const HEADER_PREFIX: &str = "x-metadata-";
const MAX_NAME: usize = 255;
const MAX_TOTAL: usize = 4096;

pub type Metadata = HashMap<String, String>;

/// The metadata named by `X-Metadata-*` headers: keys lowercased, the first value of a
/// repeated header. Header values that are not visible ASCII are kept as lossy text so
/// that `validate` names them.
pub fn from_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Metadata {
    let mut m = Metadata::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if let Some(key) = lower.strip_prefix(HEADER_PREFIX).filter(|k| !k.is_empty()) {
            m.entry(key.to_string()).or_insert_with(|| String::from_utf8_lossy(value).into_owned());
        }
    }
    m
}

/// envd's `ValidateMetadata`; the message is what envd answers after "invalid metadata: ".
pub fn validate(m: &Metadata) -> Result<(), String> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort(); // deterministic messages
    let mut total = 0;
    for k in keys {
        let v = &m[k];
        if k.is_empty() {
            return Err("metadata key must not be empty".into());
        }
        let max_key = MAX_NAME - XATTR_PREFIX.len();
        if k.len() > max_key {
            return Err(format!("metadata key {k:?} exceeds {max_key} bytes"));
        }
        printable("key", k)?;
        printable(&format!("value for key {k:?}"), v)?;
        total += XATTR_PREFIX.len() + k.len() + v.len();
    }
    if total > MAX_TOTAL {
        return Err(format!("total metadata size {total} exceeds {MAX_TOTAL} bytes"));
    }
    Ok(())
}

fn printable(label: &str, s: &str) -> Result<(), String> {
    match s.bytes().enumerate().find(|(_, c)| !(0x20..=0x7e).contains(c)) {
        Some((i, c)) => Err(format!("metadata {label} contains non-printable-ASCII byte 0x{c:02x} at offset {i}")),
        None => Ok(()),
    }
}

/// The metadata of `path` (following symlinks, as envd does). Nothing when the filesystem
/// has no xattrs, the file has none, or the caller may not read them.
pub fn read(path: &Path) -> Metadata {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return Metadata::new() };
    let mut m = Metadata::new();
    for name in list(|buf, len| unsafe { libc::listxattr(c.as_ptr(), buf, len) }).unwrap_or_default() {
        let Some(key) = name.strip_prefix(XATTR_PREFIX.as_bytes()) else { continue };
        let Ok(cname) = CString::new(name.clone()) else { continue };
        let value = get(|buf, len| unsafe { libc::getxattr(c.as_ptr(), cname.as_ptr(), buf.cast(), len) });
        if let (Ok(key), Ok(Ok(value))) = (String::from_utf8(key.to_vec()), value.map(String::from_utf8)) {
            m.insert(key, value);
        }
    }
    m
}

/// Replaces the metadata of the open `file` with `m` (an empty `m` clears it). Runs with
/// the caller's rights: the kernel checks write permission on the file.
pub fn replace(file: &std::fs::File, m: &Metadata) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let existing = match list(|buf, len| unsafe { libc::flistxattr(fd, buf, len) }) {
        Ok(names) => names,
        // No xattrs on this filesystem (/proc, /sys): nothing to replace, nothing stored.
        Err(e) if unsupported(&e) && m.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in existing {
        let Some(key) = name.strip_prefix(XATTR_PREFIX.as_bytes()) else { continue };
        if std::str::from_utf8(key).is_ok_and(|k| m.contains_key(k)) {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a valid fd and NUL-terminated name.
        if unsafe { libc::fremovexattr(fd, cname.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENODATA) {
                return Err(e);
            }
        }
    }
    for (k, v) in m {
        let cname = CString::new(format!("{XATTR_PREFIX}{k}")).map_err(io::Error::other)?;
        // SAFETY: a valid fd, NUL-terminated name, and a value buffer of the given length.
        if unsafe { libc::fsetxattr(fd, cname.as_ptr(), v.as_ptr().cast(), v.len(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `e` says the filesystem has no extended attributes.
pub fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// The names a `listxattr`-like call returns, NUL-separated in the kernel's buffer.
fn list(call: impl Fn(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<Vec<u8>>> {
    let buf = get(|buf, len| call(buf.cast(), len))?;
    Ok(buf.split(|&b| b == 0).filter(|n| !n.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Calls a size-then-fill xattr call until the buffer fits (a value can grow in between).
fn get(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..4 {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn headers_lowercase_first_value_and_skip_empty_keys() {
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Metadata-Author", b"first"),
            ("x-metadata-author", b"second"),
            ("X-METADATA-Purpose", b"upload"),
            ("X-Metadata-", b"ignored"),
            ("Content-Type", b"application/octet-stream"),
        ];
        assert_eq!(from_headers(h.into_iter()), md(&[("author", "first"), ("purpose", "upload")]));
    }

    #[test]
    fn validation_like_envd() {
        assert!(validate(&md(&[("a", "b c"), ("k.-_~", "")])).is_ok());
        assert!(validate(&md(&[("k", "tab\there")])).unwrap_err().contains("byte 0x09 at offset 3"));
        assert!(validate(&md(&[(&"k".repeat(247), "v")])).unwrap_err().contains("exceeds 246 bytes"));
        let big = md(&[("a", &"x".repeat(2100)), ("b", &"y".repeat(2100))]);
        assert!(validate(&big).unwrap_err().starts_with("total metadata size"));
    }

    #[test]
    fn replace_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        let f = std::fs::File::create(&p).unwrap();
        match replace(&f, &md(&[("a", "1"), ("b", "2")])) {
            Err(e) if unsupported(&e) => return, // test dir on a filesystem without user xattrs
            r => r.unwrap(),
        }
        assert_eq!(read(&p), md(&[("a", "1"), ("b", "2")]));
        // Not ours: kept across a replace, never shown.
        let other = CString::new("user.other").unwrap();
        let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::setxattr(cp.as_ptr(), other.as_ptr(), b"x".as_ptr().cast(), 1, 0) }, 0);
        // A value set inside the sandbox that is not UTF-8 is skipped, the rest shown.
        let bad = CString::new("user.e2b.bin").unwrap();
        assert_eq!(unsafe { libc::setxattr(cp.as_ptr(), bad.as_ptr(), [0xffu8].as_ptr().cast(), 1, 0) }, 0);
        assert_eq!(read(&p), md(&[("a", "1"), ("b", "2")]));
        replace(&f, &md(&[("b", "3")])).unwrap();
        assert_eq!(read(&p), md(&[("b", "3")]));
        replace(&f, &Metadata::new()).unwrap();
        assert!(read(&p).is_empty());
        let names = list(|buf, len| unsafe { libc::listxattr(cp.as_ptr(), buf, len) }).unwrap();
        assert_eq!(names, vec![b"user.other".to_vec()]);
        assert!(read(&t.path().join("missing")).is_empty());
    }
}
