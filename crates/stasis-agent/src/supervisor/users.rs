//! Sandbox users, read from the sandbox's own /etc/passwd and /etc/group (the agent is
//! static: no NSS).

use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    pub groups: Vec<u32>,
}

impl User {
    /// The user running this process, with `home` as its home (unit tests act as it).
    #[cfg(test)]
    pub fn current_with_home(home: &std::path::Path) -> User {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        User {
            name: "me".into(),
            uid,
            gid,
            home: home.to_string_lossy().into(),
            shell: "/bin/sh".into(),
            groups: vec![gid],
        }
    }

    pub fn lookup(name: &str) -> io::Result<User> {
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Self::parse(name, &passwd, &group)
    }

    fn parse(name: &str, passwd: &str, group: &str) -> io::Result<User> {
        let line = passwd.lines().find(|l| l.split(':').next() == Some(name)).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("user {name:?} does not exist in the sandbox"))
        })?;
        let f: Vec<&str> = line.split(':').collect();
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad /etc/passwd line for {name:?}"));
        if f.len() < 7 {
            return Err(bad());
        }
        let uid = f[2].parse().map_err(|_| bad())?;
        let gid: u32 = f[3].parse().map_err(|_| bad())?;
        let mut groups = vec![gid];
        for g in group.lines() {
            let gf: Vec<&str> = g.split(':').collect();
            if gf.len() >= 4 && gf[3].split(',').any(|m| m == name) {
                if let Ok(id) = gf[2].parse() {
                    if !groups.contains(&id) {
                        groups.push(id);
                    }
                }
            }
        }
        Ok(User { name: name.into(), uid, gid, home: f[5].into(), shell: f[6].into(), groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:user\nuser:x:1000:\n";

    #[test]
    fn finds_user_with_supplementary_groups() {
        let u = User::parse("user", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/user"));
        assert_eq!(u.groups, vec![1000, 27]);
    }

    #[test]
    fn unknown_user_is_not_found() {
        let e = User::parse("nobody2", PASSWD, GROUP).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
