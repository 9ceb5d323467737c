//! Images: references, the OCI image-layout store, layers, archive import/export and
//! registries. Knows nothing of containers: callers say which images are in use.

mod archive;
pub mod blob;
pub mod cache;
mod error;
mod import;
mod index;
mod layer;
mod pack;
pub mod reference;
pub mod registry;
pub mod store;

pub use archive::{ArchiveFormat, Loaded};
pub use layer::{read_file, without_repeats};
pub use reference::Reference;
pub use store::{Dirs, Error, Image, ImageStore, ImageUse, Removal};

/// Helpers the image module's unit tests share.
#[cfg(test)]
mod testing {
    use super::ImageStore;

    /// An empty store in a temporary directory (keep the directory alive).
    pub fn store() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("root")).unwrap();
        (dir, store)
    }

    /// A tar of regular files, owned by root, mode 0644.
    pub fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            tar.append_data(&mut header, path, *data).unwrap();
        }
        tar.into_inner().unwrap()
    }
}
