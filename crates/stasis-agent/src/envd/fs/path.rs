//! Where a requested path points: `~` and relative paths are the calling user's home.

use std::path::{Component, Path, PathBuf};

use stasis_proto::connect::ConnectError;

use crate::supervisor::User;

/// The absolute, lexically cleaned path `requested` names for `user`, as envd resolves it:
/// empty is the home directory, `~` and `~/x` expand to it, relative paths are joined to it.
/// Symlinks are not resolved.
pub fn resolve(requested: &str, user: &User) -> Result<PathBuf, ConnectError> {
    if requested.contains('\0') {
        return Err(ConnectError::invalid_argument(format!("path {requested:?} contains a NUL byte")));
    }
    let home = Path::new(&user.home);
    let joined = if let Some(rest) = requested.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(ConnectError::invalid_argument(format!(
                "cannot expand {requested:?}: only ~ (the home of user {:?}) is supported",
                user.name
            )));
        }
        home.join(rest.trim_start_matches('/'))
    } else if requested.starts_with('/') {
        PathBuf::from(requested)
    } else {
        home.join(requested)
    };
    Ok(clean(&joined))
}

/// Remove `.`, empty and trailing components and apply `..` lexically (like Go's filepath.Clean).
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The last component, or `/` for the root.
pub fn base_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "user".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/user".into(),
            shell: "/bin/bash".into(),
            groups: vec![],
        }
    }

    #[test]
    fn resolves_like_envd() {
        let u = user();
        let r = |p: &str| resolve(p, &u).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(r("").unwrap(), "/home/user");
        assert_eq!(r("~").unwrap(), "/home/user");
        assert_eq!(r("~/a/b").unwrap(), "/home/user/a/b");
        assert_eq!(r("a.txt").unwrap(), "/home/user/a.txt");
        assert_eq!(r("../x").unwrap(), "/home/x");
        assert_eq!(r("/tmp/./a//b/").unwrap(), "/tmp/a/b");
        assert_eq!(r("/../..").unwrap(), "/");
        assert!(r("~root/x").is_err());
        assert!(r("a\0b").is_err());
        assert_eq!(base_name(Path::new("/")), "/");
        assert_eq!(base_name(Path::new("/a/b.txt")), "b.txt");
    }
}
