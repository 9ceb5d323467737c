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
    use std::fs;

    use oci_spec::image::MediaType;

    use super::{Image, ImageStore, Reference};
    use crate::store::descriptor;

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

    /// Imports a one-layer image whose `etc/hostname` holds `content`.
    pub fn import(store: &ImageStore, content: &str, name: Option<&str>) -> Image {
        let reference = name.map(|n| Reference::parse(n).unwrap());
        let tar = tarball(&[("etc/hostname", content.as_bytes())]);
        store.import(&tar[..], "test", reference.as_ref()).unwrap()
    }

    pub fn blob_count(store: &ImageStore) -> usize {
        fs::read_dir(store.blobs_dir()).unwrap().count()
    }

    /// The familiar names of the image `id`.
    pub fn names(store: &ImageStore, id: &str) -> Vec<String> {
        let image = store.resolve(id).unwrap();
        image.references().iter().map(Reference::familiar).collect()
    }

    /// An image with the id `sha256:<hex>`, not in any store.
    pub fn fake_image(hex: &str) -> Image {
        let digest = format!("sha256:{hex}");
        let config = descriptor(MediaType::ImageConfig, &digest, 2).unwrap();
        Image {
            id: digest.clone(),
            manifest_digest: digest,
            names: Vec::new(),
            config: serde_json::from_str(
                r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
            )
            .unwrap(),
            manifest: oci_spec::image::ImageManifestBuilder::default()
                .schema_version(2u32)
                .config(config)
                .layers(Vec::new())
                .build()
                .unwrap(),
            size: 0,
        }
    }
}
