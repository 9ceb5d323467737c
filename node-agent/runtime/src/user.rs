//! Resolving `-u`/`USER` against the image's `/etc/passwd` and `/etc/group`, as Docker
//! does (moby/sys/user `GetExecUser`). Pure: the files' contents come in as strings.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user \"{0}\": expected name, uid, name:group or uid:gid")]
    Invalid(String),
}

/// Who the container's process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from the group file's member lists).
    pub additional_gids: Vec<u32>,
    /// The home directory from the passwd entry, for `$HOME`.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) against the image's
/// passwd and group files (absent files behave as empty). An empty spec means root.
/// A numeric uid absent from passwd is allowed (with gid 0), as in Docker; a name must exist.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_part == Some("") || (user_part.is_empty() && group_part.is_some()) {
        return Err(Error::Invalid(spec.to_string()));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let (uid, mut gid, name, home) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_string()),
        (None, Some(uid)) => (uid, 0, None, "/".to_string()),
        (None, None) => return Err(Error::NoUser(user_part.to_string())),
    };

    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| Error::NoGroup(g.to_string()))?,
            };
        }
        None => {
            if let Some(name) = name {
                for e in group_entries(group) {
                    if e.members.contains(&name) && !additional_gids.contains(&e.gid) {
                        additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    if !additional_gids.contains(&gid) {
        additional_gids.insert(0, gid);
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        app:x:1000:1000:app:/home/app:/bin/sh\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:1001:app,other\nwheel:x:10:root\n";

    fn user(spec: &str) -> Result<ExecUser, Error> {
        resolve(spec, PASSWD, GROUP)
    }

    #[test]
    fn empty_is_root_with_its_groups() {
        let u = user("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.additional_gids, vec![0, 10]);
    }

    #[test]
    fn by_name_gets_primary_and_supplementary_groups() {
        let u = user("app").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 1001]);
        assert_eq!(u.home, "/home/app");
    }

    #[test]
    fn by_uid_finds_the_entry() {
        assert_eq!(user("1000").unwrap(), user("app").unwrap());
    }

    #[test]
    fn unknown_numeric_uid_is_allowed_with_gid_zero() {
        let u = user("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert_eq!(u.additional_gids, vec![0]);
    }

    #[test]
    fn explicit_group_replaces_the_primary_and_drops_supplementary() {
        let u = user("app:extra").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
        assert_eq!(u.additional_gids, vec![1001]);
        let u = user("1000:1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = user("5:77").unwrap();
        assert_eq!((u.uid, u.gid), (5, 77));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(user("ghost"), Err(Error::NoUser("ghost".into())));
        assert_eq!(user("app:ghosts"), Err(Error::NoGroup("ghosts".into())));
        assert_eq!(
            user("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
    }

    #[test]
    fn malformed_specs_are_rejected() {
        for bad in [":", "app:", ":1000"] {
            assert_eq!(user(bad), Err(Error::Invalid(bad.into())), "{bad}");
        }
    }

    #[test]
    fn missing_files_behave_as_empty() {
        let u = resolve("0", "", "").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert!(resolve("root", "", "").is_err());
    }
}
