//! `--user` / `USER` resolution as docker does it (runc's `GetExecUser`): `name`, `uid`,
//! `name:group`, `uid:gid`, names looked up in the container's own `/etc/passwd` and
//! `/etc/group`, supplementary groups from the group file. Pure functions over the files'
//! text, so the rules are testable without a container.

/// Why a user spec does not resolve, in runc's words (docker's messages, byte for byte).
/// The names are as the spec or the files give them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum UserError {
    /// A user name (or a uid outside the numeric range) that no passwd entry has.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    /// A group name that no group entry has.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    /// The passwd entry of this user has a uid that is not a number.
    #[error("bad uid in /etc/passwd for {0}")]
    BadUid(String),
    /// The passwd entry of this user has a gid that is not a number.
    #[error("bad gid in /etc/passwd for {0}")]
    BadGid(String),
    /// The group entry of this name has a gid that is not a number.
    #[error("bad gid in /etc/group for {0}")]
    BadGroupGid(String),
    /// A `--group-add` name no group entry has (docker's own capitalised message).
    #[error("Unable to find group {0}: no matching entries in group file")]
    NoSuchAdditionalGroup(String),
}

/// Who the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `spec` (empty means root) against the contents of the rootfs's passwd and
/// group files (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let users: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    let numeric_user = user_arg.parse::<u32>().ok();
    let found = users
        .iter()
        .find(|f| f[0] == user_arg || numeric_user.is_some_and(|n| f[2].parse::<u32>() == Ok(n)));
    let (name, mut uid, mut gid, home) = match (found, numeric_user) {
        (Some(f), _) => (
            Some(f[0]),
            f[2].parse::<u32>()
                .map_err(|_| UserError::BadUid(f[0].to_string()))?,
            f[3].parse::<u32>()
                .map_err(|_| UserError::BadGid(f[0].to_string()))?,
            f.get(5)
                .copied()
                .filter(|h| !h.is_empty())
                .unwrap_or("/")
                .to_string(),
        ),
        (None, Some(n)) => (None, n, 0, "/".to_string()),
        (None, None) => return Err(UserError::NoSuchUser(user_arg.to_string())),
    };
    if let Some(n) = numeric_user {
        uid = n;
    }
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    let mut additional = Vec::new();
    match group_arg {
        Some(g) if !g.is_empty() => {
            let numeric = g.parse::<u32>().ok();
            let hit = groups
                .iter()
                .find(|f| f[0] == g || numeric.is_some_and(|n| f[2].parse::<u32>() == Ok(n)));
            gid = match (hit, numeric) {
                (_, Some(n)) => n,
                (Some(f), None) => f[2]
                    .parse()
                    .map_err(|_| UserError::BadGroupGid(f[0].to_string()))?,
                (None, None) => return Err(UserError::NoSuchGroup(g.to_string())),
            };
        }
        _ => {
            if let Some(name) = name {
                for f in &groups {
                    let members = f.get(3).copied().unwrap_or("");
                    if members.split(',').any(|m| m.trim() == name)
                        && let Ok(id) = f[2].parse::<u32>()
                        && !additional.contains(&id)
                    {
                        additional.push(id);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// `--group-add` values as runc's `GetAdditionalGroups` resolves them: a group file
/// entry matched by name or gid (each gid once), else a number taken as it is.
pub fn additional_groups(wanted: &[String], group: &str) -> Result<Vec<u32>, UserError> {
    let entries: Vec<(&str, u32)> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((*f.first()?, f.get(2)?.parse().ok()?))
        })
        .collect();
    let mut out: Vec<u32> = Vec::new();
    for w in wanted {
        let hit = entries
            .iter()
            .find(|(name, gid)| (name == w || gid.to_string() == *w) && !out.contains(gid));
        match hit {
            Some((_, gid)) => out.push(*gid),
            None => {
                let gid = w
                    .parse::<u32>()
                    .ok()
                    .filter(|g| *g <= i32::MAX as u32)
                    .ok_or_else(|| UserError::NoSuchAdditionalGroup(w.clone()))?;
                if !out.contains(&gid) {
                    out.push(gid);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\naudio:x:29:app\napp:x:1000:\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, PASSWD, GROUP)
    }

    #[test]
    fn group_add_by_name_or_number() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            additional_groups(&names(&["audio", "1234", "10"]), GROUP),
            Ok(vec![29, 1234, 10])
        );
        assert_eq!(
            additional_groups(&names(&["nosuch"]), GROUP)
                .unwrap_err()
                .to_string(),
            "Unable to find group nosuch: no matching entries in group file"
        );
        assert_eq!(additional_groups(&names(&["7"]), ""), Ok(vec![7]));
    }

    #[test]
    fn docker_user_forms() {
        assert_eq!(
            r("").unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/root".into()
            }
        );
        let app = r("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![10, 29]);
        assert_eq!(r("1000").unwrap(), app);
        let g = r("app:audio").unwrap();
        assert_eq!((g.uid, g.gid), (1000, 29));
        assert!(g.additional_gids.is_empty());
        assert_eq!(r("app:4242").unwrap().gid, 4242);
        let n = r("4242:4243").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 4243, "/"));
        let n = r("4242").unwrap();
        assert_eq!((n.uid, n.gid), (4242, 0));
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nogroup").unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        // No passwd at all (scratch images): numeric ids still work.
        assert_eq!(resolve("7:8", "", "").unwrap().uid, 7);
    }

    #[test]
    fn unreadable_ids_are_named_as_runc_names_them() {
        let bad = |spec: &str, passwd: &str, group: &str| {
            resolve(spec, passwd, group).unwrap_err().to_string()
        };
        assert_eq!(
            bad("u", "u:x:one:0::/:/bin/sh\n", ""),
            "bad uid in /etc/passwd for u"
        );
        assert_eq!(
            bad("u", "u:x:1:zero::/:/bin/sh\n", ""),
            "bad gid in /etc/passwd for u"
        );
        assert_eq!(bad("0:g", "", "g:x:ten:\n"), "bad gid in /etc/group for g");
    }
}
