//! Layers: tar streams of filesystem diffs, unpacked into directories that overlayfs
//! stacks as lowerdirs (`unpack`), and read back through that stack (`read`).
//!
//! OCI whiteouts in a layer tar and their overlayfs form on disk:
//!
//! - `DIR/.wh.NAME` (NAME deleted) is a character device 0:0 `DIR/NAME`;
//! - `DIR/.wh..wh..opq` (DIR's lower content hidden) is `trusted.overlay.opaque=y` on DIR.

use std::path::{Component, Path, PathBuf};

mod read;
mod unpack;

pub use read::{read_file, without_repeats};
pub use unpack::unpack;

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
pub(crate) const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// How a tar's PAX records carry extended attributes.
pub(crate) const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// A path from an archive, made relative and checked not to climb out.
pub(crate) fn relative_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut rel = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(c) => rel.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains \"..\""),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let ok = |raw: &str, want: &str| {
            assert_eq!(relative_path(Path::new(raw)).unwrap(), Path::new(want))
        };
        ok("./a/b", "a/b");
        ok("a//b/", "a/b");
        ok("./", "");
        ok("a/./b", "a/b");
        assert!(relative_path(Path::new("a/../b")).is_err());
        assert!(relative_path(Path::new("/a")).is_err());
    }
}
