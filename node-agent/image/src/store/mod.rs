//! The image store: an OCI image layout under `$BERTH_ROOT/images`, with each layer
//! unpacked once per diff id under `$BERTH_ROOT/layers`.
//!
//! Blobs are immutable and content-addressed; `index.json` names the images (see the
//! `index` module). New content is written and verified in a staging area under
//! `$BERTH_ROOT/tmp`, then moved into `blobs/` and named in `index.json` in one step under
//! the store lock (`ImageStore::commit`). Garbage collection runs under the same lock, so
//! it never sees blobs that are in the store but not yet named. Readers take no lock:
//! `index.json` is replaced atomically, and blobs appear by rename.
//!
//! Manifests and configs are kept byte for byte as they were written or loaded; they are
//! parsed to be read, never re-serialized, so their digests stay valid.
//!
//! One module per concern, each adding methods to [`ImageStore`]: `lookup` (names, ids
//! and digests to images; reading blobs), `ingest` (staging and committing; the index
//! writes), `unpack` (layers on disk) and `gc` (removal and collection).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageManifest, MediaType,
};

use crate::blob::sha256_hex;
use crate::index::Index;
use crate::reference::Reference;
use berth_sys::fs::{self as fsutil, Lock};

mod gc;
mod ingest;
mod lookup;
mod unpack;

pub use crate::error::Error;
pub use gc::{ImageUse, Removal};
pub use ingest::{BlobWriter, NewImage, Staging};
pub(crate) use unpack::{move_into_place, sync_filesystem};

/// The shortest id prefix `resolve` accepts, so that a typo does not pick a random image.
pub const MIN_ID_PREFIX: usize = 3;

pub(crate) const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Names in `$BERTH_ROOT/tmp`: layers being unpacked, blobs being staged, layers being
/// deleted.
const LAYER_PREFIX: &str = "layer-";
const INGEST_PREFIX: &str = "ingest-";
const GC_PREFIX: &str = "gc-";

/// One image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// The config digest (`sha256:...`): what Docker calls the image id.
    pub id: String,
    pub manifest_digest: String,
    /// Normalized references (`docker.io/library/base:latest`) that name this image.
    pub names: Vec<String>,
    pub config: ImageConfiguration,
    pub manifest: ImageManifest,
    /// The size of the image's blobs in the store (config and layers, as stored).
    pub size: u64,
}

impl Image {
    /// The first 12 hex digits of the id, as `berth images` shows it.
    pub fn short_id(&self) -> &str {
        let hex = self.id.strip_prefix("sha256:").unwrap_or(&self.id);
        &hex[..hex.len().min(12)]
    }

    /// The names, parsed (they were validated when written).
    pub fn references(&self) -> Vec<Reference> {
        self.names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .collect()
    }

    /// When the image was made, from its config.
    pub fn created(&self) -> Option<SystemTime> {
        parse_time(self.config.created().as_deref()?)
    }

    /// The layers' uncompressed digests, lowest first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// Each layer's descriptor with its diff id, lowest first.
    pub fn layers(&self) -> Result<Vec<(&Descriptor, &str)>, Error> {
        let (layers, diff_ids) = (self.manifest.layers(), self.diff_ids());
        if layers.len() != diff_ids.len() {
            return Err(Error::corrupt(
                format!("image {}", self.id),
                format!(
                    "the manifest lists {} layers but the config {}",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        Ok(layers
            .iter()
            .zip(diff_ids.iter().map(String::as_str))
            .collect())
    }
}

/// Where the store keeps its files under berth's state root: the OCI layout in
/// `images/`, unpacked layers in `layers/`, staging in `tmp/`, step records in
/// `build-cache/`.
#[derive(Clone, Debug)]
pub struct Dirs {
    pub root: PathBuf,
}

impl Dirs {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Temporary files that must land on the same filesystem as the store (for rename).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn build_cache(&self) -> PathBuf {
        self.root.join("build-cache")
    }
}

pub struct ImageStore {
    paths: Dirs,
}

impl ImageStore {
    /// Opens the store at `paths.root`, creating an empty one if there is none.
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        let paths = Dirs::new(root);
        let store = ImageStore {
            paths: paths.clone(),
        };
        for dir in [store.blobs_dir(), paths.layers(), paths.tmp()] {
            fs::create_dir_all(&dir).map_err(Error::io("creating", dir))?;
        }
        let layout = paths.images().join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&layout, OCI_LAYOUT.as_bytes(), true)
                .map_err(Error::io("writing", layout))?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock()?;
            if !store.index_path().exists() {
                store.write_index(&Index::empty())?;
            }
        }
        Ok(store)
    }

    pub(crate) fn paths(&self) -> &Dirs {
        &self.paths
    }

    /// The store's exclusive lock. Besides the store's own updates, whoever makes a
    /// container from an image holds it from resolving the image until the container is
    /// recorded, so a concurrent `rmi` cannot collect the image's layers in between.
    pub fn lock(&self) -> Result<Lock, Error> {
        let path = self.paths.images().join("index.lock");
        Lock::exclusive(&path).map_err(Error::io("locking", path))
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        let hex = sha256_hex(digest).ok_or_else(|| {
            Error::bad_input(
                format!("digest \"{digest}\""),
                "only sha256 digests are supported",
            )
        })?;
        Ok(self.blobs_dir().join(hex))
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.paths.images().join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.paths.images().join("index.json")
    }
}

pub(crate) fn descriptor(
    media_type: MediaType,
    digest: &str,
    size: u64,
) -> Result<Descriptor, Error> {
    let parsed: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| Error::bad_input(format!("digest \"{digest}\""), format!("{e}")))?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(parsed)
        .size(size)
        .build()
        .map_err(|e| Error::bad_input(format!("descriptor of {digest}"), e.to_string()))
}

pub(crate) fn verify(what: &str, expected: &str, actual: &str) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

pub(crate) fn is_manifest(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageManifest) || media_type.to_string() == DOCKER_MANIFEST
}

pub(crate) fn is_index(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageIndex) || media_type.to_string() == DOCKER_MANIFEST_LIST
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// RFC 3339 time as image configs carry it (`2024-05-01T12:34:56.123456789Z`, or with an
/// offset such as `+02:00`).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339(s) {
        return Some(t);
    }
    // humantime reads UTC only: apply a `±hh:mm` offset here.
    let split = s.len().checked_sub(6)?;
    let (local, offset) = (s.get(..split)?, s.get(split..)?);
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let shift =
        Duration::from_secs(hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60);
    let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    match offset.as_bytes()[0] {
        b'+' => local.checked_sub(shift),
        b'-' => local.checked_add(shift),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[test]
    fn opening_creates_an_oci_layout() {
        let (_dir, store) = store();
        let images = store.paths.images();
        assert_eq!(
            fs::read_to_string(images.join("oci-layout")).unwrap(),
            OCI_LAYOUT
        );
        assert!(store.list().unwrap().is_empty());
        ImageStore::open(&store.paths.root).unwrap();
    }

    #[test]
    fn times_with_offsets() {
        let utc = parse_time("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_time("2024-05-01T14:00:00+02:00"), Some(utc));
        assert_eq!(parse_time("2024-05-01T09:30:00-02:30"), Some(utc));
        assert_eq!(
            parse_time("2024-05-01T12:00:00.5Z"),
            Some(utc + Duration::from_millis(500))
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
