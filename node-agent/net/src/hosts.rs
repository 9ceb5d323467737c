//! A container's `/etc/hosts`: localhost, the peers it may reach by name (links, members
//! of its user-defined networks) and itself. The file is bind-mounted into the running
//! container, so updates rewrite it in place rather than replacing it.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;

/// One line: an address and the names that resolve to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

const HEADER: &str = "127.0.0.1\tlocalhost\n\
    ::1\tlocalhost ip6-localhost ip6-loopback\n\
    fe00::0\tip6-localnet\n\
    ff00::0\tip6-mcastprefix\n\
    ff02::1\tip6-allnodes\n\
    ff02::2\tip6-allrouters\n";

/// The file's content: peers first, then the container's own addresses (as Docker
/// writes it). A name already given to an earlier line is not repeated.
pub fn render(peers: &[Entry], own: &[Entry]) -> String {
    let mut out = String::from(HEADER);
    let mut seen: Vec<&str> = Vec::new();
    for e in peers.iter().chain(own) {
        let names: Vec<&str> = e
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !seen.contains(n))
            .collect();
        if names.is_empty() {
            continue;
        }
        seen.extend(&names);
        out.push_str(&format!("{}\t{}\n", e.ip, names.join(" ")));
    }
    out
}

/// Rewrites `path` keeping its inode, so the container's bind mount sees the change.
pub fn write_in_place(path: &Path, content: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ip: [u8; 4], names: &[&str]) -> Entry {
        Entry {
            ip: ip.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn peers_then_self_without_repeats() {
        let text = render(
            &[
                e([10, 88, 0, 3], &["dbserver", "mysql"]),
                e([10, 88, 0, 4], &["cache"]),
                e([10, 88, 0, 5], &["mysql"]),
            ],
            &[e([10, 88, 0, 2], &["abc123", "web"])],
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            text.ends_with("10.88.0.3\tdbserver mysql\n10.88.0.4\tcache\n10.88.0.2\tabc123 web\n"),
            "{text}"
        );
    }

    #[test]
    fn rewriting_keeps_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_in_place(&p, "a much longer first version\n").unwrap();
        let inode = std::fs::metadata(&p).unwrap().ino();
        write_in_place(&p, "short\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), inode);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "short\n");
    }
}
