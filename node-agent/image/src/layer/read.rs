//! Reading an image's root filesystem through its unpacked layers, as overlayfs would
//! show it.

use std::fs;
use std::path::{Path, PathBuf};

use super::OVERLAY_OPAQUE_XATTR;

/// Reads a file of an image's root filesystem from its unpacked layers (lowest first),
/// looking from the topmost down and honouring whiteouts and opaque directories. `None`
/// when absent.
pub fn read_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rel = Path::new(rel.trim_start_matches('/'));
    for layer in layers.iter().rev() {
        // A whiteout of the file or of any directory above it hides everything below.
        let mut p = layer.clone();
        for part in rel.iter() {
            p.push(part);
            if fs::symlink_metadata(&p)
                .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
            {
                return None;
            }
        }
        if let Ok(content) = fs::read_to_string(layer.join(rel)) {
            return Some(content);
        }
        let opaque = rel.parent().and_then(|d| {
            xattr::get(layer.join(d), OVERLAY_OPAQUE_XATTR)
                .ok()
                .flatten()
        });
        if opaque.as_deref() == Some(b"y") {
            return None;
        }
    }
    None
}

/// `layers` (lowest first) with each directory kept only at its topmost place:
/// overlayfs refuses a lower directory given twice, and a lower copy of a layer adds
/// nothing its upper copy does not hide.
pub fn without_repeats(layers: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<PathBuf> = layers
        .iter()
        .rev()
        .filter(|l| seen.insert(*l))
        .cloned()
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{Mode, SFlag, mknod};

    #[test]
    fn image_files_come_from_the_topmost_layer_and_respect_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let l1 = dir.path().join("l1");
        let l2 = dir.path().join("l2");
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l1.join("etc/passwd"), "old").unwrap();
        fs::write(l1.join("etc/group"), "g").unwrap();
        fs::write(l2.join("etc/passwd"), "new").unwrap();
        let layers = vec![l1.clone(), l2.clone()];
        assert_eq!(read_file(&layers, "etc/passwd").as_deref(), Some("new"));
        assert_eq!(read_file(&layers, "/etc/group").as_deref(), Some("g"));
        assert_eq!(read_file(&layers, "etc/shadow"), None);
        // A whiteout in the top layer hides the lower file.
        mknod(
            &l2.join("etc/group"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        assert_eq!(read_file(&layers, "etc/group"), None);
    }
}
