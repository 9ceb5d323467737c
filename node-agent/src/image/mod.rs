//! Images: references, the OCI image-layout store, layers, and archive import/export.

mod archive;
pub(crate) mod blob;
pub mod builder;
pub mod cache;
pub mod context;
pub mod dockerfile;
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
pub use store::{Error, Image, ImageStore, Removal};

/// Helpers the image module's unit tests share.
#[cfg(test)]
mod testing {
    use super::ImageStore;
    use crate::paths::Paths;

    /// An empty store in a temporary directory (keep the directory alive).
    pub fn store() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().join("root"), dir.path().join("run"));
        let store = ImageStore::open(&paths).unwrap();
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
