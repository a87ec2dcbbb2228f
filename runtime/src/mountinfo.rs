//! `/proc/PID/mountinfo` read as values: the one parser of it (cgroup detection reads the
//! host's, `cp` the procfs mounts of a container's namespace).

use std::path::PathBuf;

/// One mount of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mounted directory of its file system (a bind's source within it).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The super block's options.
    pub options: Vec<String>,
}

/// The mounts of a mountinfo text, in its order (mount order); malformed lines are left
/// out.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let _source = post.next()?;
            let options = post.next().unwrap_or_default();
            Some(MountInfo {
                root: unescape(pre.get(3)?),
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fstype,
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The mounts of the mount namespace process `pid` is in (`"self"` for this one).
pub fn of_process(pid: &str) -> std::io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string(format!(
        "/proc/{pid}/mountinfo"
    ))?))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaped_paths_and_types_are_read() {
        let m = super::parse(
            "22 1 0:5 / /proc rw,nosuid - proc proc rw\n\
             30 22 0:40 /x /a\\040b rw - tmpfs tmpfs rw,size=4k\nbroken line\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "proc");
        assert_eq!(m[1].mount_point, std::path::Path::new("/a b"));
        assert_eq!(m[1].root, "/x");
        assert_eq!(m[1].options, ["rw", "size=4k"]);
    }
}
