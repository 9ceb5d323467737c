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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageManifest, ImageManifestBuilder,
    MediaType,
};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::blob::{self, Hashing, sha256_hex};
use crate::index::Index;
use crate::layer;
use crate::reference::{Reference, is_full_hex_id, is_lower_hex};
use berth_sys::fs::{self as fsutil, Lock};

pub use crate::error::Error;

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

/// What `remove` did, in order, as `docker rmi` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed (familiar form, `base:latest`).
    Untagged(String),
    /// The image is gone (its id).
    Deleted(String),
}

/// A new image for [`ImageStore::commit`]: its manifest and the blobs it references,
/// each in the staging area it is committed with or in the store already.
pub struct NewImage {
    pub manifest: Descriptor,
    pub config_digest: String,
    pub blobs: Vec<String>,
    pub names: Vec<Reference>,
    /// Whether this manifest is the one that names the image elsewhere (a registry's),
    /// and so is kept even when the store has the same config under another manifest.
    pub keep_manifest: bool,
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

/// A container's use of an image, which the caller of `remove` and of garbage
/// collection says: the store knows nothing of containers.
#[derive(Clone, Debug)]
pub struct ImageUse {
    pub image_id: String,
    pub container: String,
    pub running: bool,
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

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let mut images = self.images_in(&self.read_index()?)?;
        images.sort_by_key(|i| std::cmp::Reverse(i.created()));
        Ok(images)
    }

    /// Finds an image by reference (`base`, `base:v1`, `localhost:5000/a/b@sha256:..`),
    /// by id (`sha256:<hex>` or `<hex>`) or by a unique id prefix of at least
    /// [`MIN_ID_PREFIX`] hex digits. A name wins over an id prefix that looks the same.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, Error> {
        self.resolve_named(name_or_id).map(|(image, _)| image)
    }

    /// Like [`Self::resolve`], also returning the reference when `name_or_id` is a name
    /// of the image rather than its id.
    pub(crate) fn resolve_named(
        &self,
        name_or_id: &str,
    ) -> Result<(Image, Option<Reference>), Error> {
        resolve_in(self.list()?, name_or_id)
    }

    /// The image's layers unpacked on disk, lowest first, unpacking any not yet there.
    /// Safe to call concurrently for the same layers: each is unpacked into a temporary
    /// directory and renamed into place; a loser of the race discards its copy.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, Error> {
        image
            .layers()?
            .into_iter()
            .map(|(layer, diff_id)| {
                let hex = sha256_hex(diff_id).ok_or_else(|| {
                    Error::corrupt(
                        format!("image {}", image.id),
                        format!("invalid diff id {diff_id}"),
                    )
                })?;
                let dir = self.paths.layers().join(hex);
                if !dir.exists() {
                    self.unpack_layer(layer, diff_id, &dir)?;
                }
                Ok(dir)
            })
            .collect()
    }

    /// What `berth inspect IMAGE` prints, shaped like `docker image inspect`.
    pub fn inspect_json(&self, image: &Image) -> Value {
        let references = image.references();
        let repo_digests: BTreeSet<String> = references
            .iter()
            .map(|r| format!("{}@{}", r.familiar_name(), image.manifest_digest))
            .collect();
        json!({
            "Id": image.id,
            "RepoTags": references.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "RepoDigests": repo_digests,
            "Created": image.config.created(),
            "Author": image.config.author(),
            "Architecture": image.config.architecture().to_string(),
            "Variant": image.config.variant(),
            "Os": image.config.os().to_string(),
            "Config": self.runtime_config(image),
            "RootFS": {
                "Type": image.config.rootfs().typ(),
                "Layers": image.diff_ids(),
            },
            "History": image.config.history(),
            "Size": image.size,
            "ManifestDigest": image.manifest_digest,
        })
    }

    /// The runtime part of `image`'s config as stored, Docker's fields beyond the OCI ones
    /// (Healthcheck, OnBuild, Shell) included: parsing into the OCI type drops them.
    pub fn runtime_config(&self, image: &Image) -> Value {
        self.read_blob(&image.id)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or_else(|| json!(image.config.config()), |raw| raw["config"].clone())
    }

    /// Gives the image `source` the name `target` (moving the name if another image had it).
    pub fn tag(&self, source: &str, target: &str) -> Result<Image, Error> {
        let reference = Reference::parse(target)?;
        if reference.digest().is_some() {
            return Err(Error::TagWithDigest(target.to_string()));
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (image, _) = resolve_in(self.images_in(&index)?, source)?;
        index.set_name(&self.manifest_descriptor(&image)?, &reference);
        self.write_index(&index)?;
        self.resolve(&image.id)
    }

    /// `berth rmi`: removes the name `name_or_id`, and the image with it when that was its
    /// last name or when it is given by id. Refuses to remove an image a container uses
    /// (with `force`, only a running one), and to remove by id an image with several names
    /// unless `force`. Then collects the blobs and layers nothing uses any more.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        uses: &[ImageUse],
    ) -> Result<Vec<Removal>, Error> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (image, by_name) = resolve_in(self.images_in(&index)?, name_or_id)?;
        let references = image.references();
        let mut removals = Vec::new();
        if let Some(name) = by_name.as_ref().filter(|_| references.len() > 1) {
            index.take_name(name);
            removals.push(Removal::Untagged(name.familiar()));
        } else {
            if by_name.is_none() && references.len() > 1 && !force {
                return Err(Error::SeveralNames {
                    id: image.short_id().to_string(),
                    names: references.iter().map(Reference::familiar).collect(),
                });
            }
            check_unused(&image, uses, force)?;
            removals.extend(references.iter().map(|r| Removal::Untagged(r.familiar())));
            index.remove_image(&image.manifest_digest);
            removals.push(Removal::Deleted(image.id.clone()));
        }
        self.write_index(&index)?;
        self.collect_garbage(&index, uses)?;
        Ok(removals)
    }

    /// Collects what nothing uses any more (after the build cache let go of it).
    pub(crate) fn collect(&self, uses: &[ImageUse]) -> Result<(), Error> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        self.collect_garbage(&index, uses)
    }

    pub(crate) fn paths(&self) -> &Dirs {
        &self.paths
    }

    /// Deletes the blobs no image in `index` references and the unpacked layers no image
    /// uses. Images that containers were made from keep their config blob and layers even
    /// when removed from the index (`rmi -f`), so the containers go on working. Called with
    /// the store lock held.
    fn collect_garbage(&self, index: &Index, uses: &[ImageUse]) -> Result<(), Error> {
        let mut blobs = BTreeSet::new();
        for descriptor in index.descriptors() {
            self.reachable(descriptor, &mut blobs)?;
        }
        let mut layers: BTreeSet<String> = self
            .images_in(index)?
            .iter()
            .flat_map(|image| image.diff_ids().iter().cloned())
            .collect();
        let (cache_blobs, cache_layers) = self.cache_roots();
        blobs.extend(cache_blobs);
        layers.extend(cache_layers);
        for used in uses {
            if let Ok(config) = self.read_config(&used.image_id) {
                blobs.insert(used.image_id.clone());
                layers.extend(config.rootfs().diff_ids().iter().cloned());
            }
        }
        let keep_hex = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.iter()
                .filter_map(|d| sha256_hex(d))
                .map(str::to_string)
                .collect()
        };
        self.remove_unlisted(&self.blobs_dir(), &keep_hex(&blobs))?;
        self.remove_unlisted(&self.paths.layers(), &keep_hex(&layers))?;
        self.sweep_tmp()
    }

    /// Removes what berth processes that died left in `tmp/`: collected layers at once
    /// (collection holds the lock, so no other is running), staging areas after a day.
    fn sweep_tmp(&self) -> Result<(), Error> {
        const STALE: Duration = Duration::from_secs(24 * 3600);
        let tmp = self.paths.tmp();
        for entry in fs::read_dir(&tmp).map_err(Error::io("listing", &tmp))? {
            let entry = entry.map_err(Error::io("listing", &tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = || {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                modified.and_then(|m| m.elapsed().ok()).unwrap_or_default()
            };
            let stale = name.starts_with(GC_PREFIX)
                || ([INGEST_PREFIX, LAYER_PREFIX]
                    .iter()
                    .any(|p| name.starts_with(p))
                    && age() > STALE);
            if stale {
                match fs::remove_dir_all(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::io("removing", entry.path())(e));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Adds the digests of everything `descriptor` reaches to `blobs`.
    fn reachable(
        &self,
        descriptor: &Descriptor,
        blobs: &mut BTreeSet<String>,
    ) -> Result<(), Error> {
        let digest = descriptor.digest().to_string();
        if !blobs.insert(digest.clone()) {
            return Ok(());
        }
        if is_index(descriptor.media_type()) {
            let bytes = self.read_blob(&digest)?;
            let nested: Index = Index::parse(&bytes)
                .map_err(|e| Error::corrupt(format!("index {digest}"), e.to_string()))?;
            for d in nested.descriptors() {
                self.reachable(d, blobs)?;
            }
        } else if is_manifest(descriptor.media_type()) {
            let manifest = self.read_manifest(&digest)?;
            blobs.insert(manifest.config().digest().to_string());
            blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        }
        Ok(())
    }

    /// Removes the entries of `dir` named by a 64-hex digest that is not in `keep`.
    /// Directories are renamed away first, so none is ever seen half-deleted.
    fn remove_unlisted(&self, dir: &Path, keep: &BTreeSet<String>) -> Result<(), Error> {
        let entries = fs::read_dir(dir).map_err(Error::io("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("listing", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_full_hex_id(&name) || keep.contains(&name) {
                continue;
            }
            let path = entry.path();
            let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let doomed = self
                    .paths
                    .tmp()
                    .join(format!("{GC_PREFIX}{name}-{}", fsutil::random_hex(4)));
                fs::rename(&path, &doomed).and_then(|()| fs::remove_dir_all(&doomed))
            } else {
                fs::remove_file(&path)
            };
            match result {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io("removing", path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn unpack_layer(&self, layer: &Descriptor, diff_id: &str, dir: &Path) -> Result<(), Error> {
        let digest = layer.digest().to_string();
        let what = format!("layer {digest}");
        let mut compressed = Hashing::new(BufReader::new(self.open_blob(&digest)?));
        let tmp = self.staging_dir(LAYER_PREFIX)?;
        // The layer's own `./` entry, if it has one, sets the mode of its root.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(Error::io("changing mode of", tmp.path()))?;
        let unpacked = (|| {
            let mut tar = Hashing::new(blob::decompressed(&mut compressed, &what)?);
            layer::unpack(&mut tar, tmp.path(), diff_id)?;
            // The diff id covers the whole stream, including what follows the tar's end.
            io::copy(&mut tar, &mut io::sink())
                .map_err(|e| Error::bad_input(&what, e.to_string()))?;
            Ok::<_, Error>(tar.finish().1)
        })();
        // Whether or not it unpacked, a blob whose bytes changed is a corrupt store, not a
        // bad image.
        let path = self.blob_path(&digest)?;
        io::copy(&mut compressed, &mut io::sink()).map_err(Error::io("reading", &path))?;
        let (_, actual_digest, _) = compressed.finish();
        if actual_digest != digest {
            return Err(Error::corrupt(
                what,
                format!("{} no longer matches its digest", path.display()),
            ));
        }
        verify(&format!("{what} (uncompressed)"), diff_id, &unpacked?)?;
        // One syncfs rather than an fsync per file: after a crash, a layer directory in
        // place is a complete one.
        File::open(tmp.path())
            .and_then(|dir| nix::unistd::syncfs(&dir).map_err(io::Error::from))
            .map_err(Error::io("syncing", tmp.path()))?;
        match renameat2(
            AT_FDCWD,
            tmp.path(),
            AT_FDCWD,
            dir,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                let _in_place = tmp.keep();
                Ok(())
            }
            // Another unpacker got there first; its copy is as good as ours.
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(Error::io("moving into place", dir)(e.into())),
        }
    }

    /// A fresh staging area for new blobs, removed when dropped.
    pub fn staging(&self) -> Result<Staging, Error> {
        Ok(Staging {
            dir: self.staging_dir(INGEST_PREFIX)?,
            blobs: BTreeMap::new(),
        })
    }

    fn staging_dir(&self, prefix: &str) -> Result<TempDir, Error> {
        let tmp = self.paths.tmp();
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(Error::io("creating a directory in", tmp))
    }

    /// Moves the staged blobs of `images` into the store and names the images in
    /// `index.json`, all under the store lock. An image whose config is already in the
    /// store under another manifest is not added twice: the existing one gets the names
    /// (unless it is to keep its manifest).
    /// Returns the committed images, in order.
    pub fn commit(&self, staging: Staging, images: Vec<NewImage>) -> Result<Vec<Image>, Error> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let existing: BTreeMap<String, Image> = self
            .images_in(&index)?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        let mut targets = Vec::new();
        for image in &images {
            let present = existing
                .get(&image.config_digest)
                .filter(|_| !image.keep_manifest);
            let target = match present {
                Some(present) => self.manifest_descriptor(present)?,
                None => {
                    for digest in &image.blobs {
                        staging.commit_blob(self, digest)?;
                    }
                    image.manifest.clone()
                }
            };
            if image.names.is_empty() {
                index.add_unnamed(&target);
            }
            for name in &image.names {
                index.set_name(&target, name);
            }
            targets.push(target.digest().to_string());
        }
        sync_dir(&self.blobs_dir())?;
        self.write_index(&index)?;
        let committed = self.images_in(&index)?;
        targets
            .iter()
            .map(|digest| {
                committed
                    .iter()
                    .find(|i| &i.manifest_digest == digest)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("manifest {digest} vanished")))
            })
            .collect()
    }

    /// The images `index` names, in index order.
    fn images_in(&self, index: &Index) -> Result<Vec<Image>, Error> {
        let mut images: Vec<Image> = Vec::new();
        for descriptor in index.descriptors() {
            if !is_manifest(descriptor.media_type()) {
                continue;
            }
            let digest = descriptor.digest().to_string();
            let name = Index::name_of(descriptor).map(|r| r.to_string());
            if let Some(image) = images.iter_mut().find(|i| i.manifest_digest == digest) {
                image.names.extend(name);
                continue;
            }
            images.push(self.load_image(&digest, name)?);
        }
        for image in &mut images {
            image.names.sort();
            image.names.dedup();
        }
        Ok(images)
    }

    fn load_image(&self, manifest_digest: &str, name: Option<String>) -> Result<Image, Error> {
        let manifest = self.read_manifest(manifest_digest)?;
        let id = manifest.config().digest().to_string();
        let config = self.read_config(&id)?;
        let size =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(Image {
            id,
            manifest_digest: manifest_digest.to_string(),
            names: name.into_iter().collect(),
            config,
            manifest,
            size,
        })
    }

    fn read_manifest(&self, digest: &str) -> Result<ImageManifest, Error> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("manifest {digest}"), e.to_string()))
    }

    pub(crate) fn read_config(&self, digest: &str) -> Result<ImageConfiguration, Error> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("config {digest}"), e.to_string()))
    }

    /// Opens the blob `digest` for reading.
    pub(crate) fn open_blob(&self, digest: &str) -> Result<File, Error> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::corrupt(format!("blob {digest}"), "it is missing"),
            _ => Error::io("opening", &path)(e),
        })
    }

    /// A small blob (manifest, config), checked against its digest.
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::corrupt(format!("blob {digest}"), "it is missing"),
            _ => Error::io("reading", &path)(e),
        })?;
        verify(&format!("blob {digest}"), digest, &blob::sha256(&bytes))
            .map_err(|e| Error::corrupt(format!("blob {digest}"), e.to_string()))?;
        Ok(bytes)
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

    /// The descriptor `index.json` uses for `image`'s manifest.
    pub(crate) fn manifest_descriptor(&self, image: &Image) -> Result<Descriptor, Error> {
        let path = self.blob_path(&image.manifest_digest)?;
        let size = fs::metadata(&path)
            .map_err(Error::io("inspecting", path))?
            .len();
        let media_type = image
            .manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        descriptor(media_type, &image.manifest_digest, size)
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.paths.images().join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.paths.images().join("index.json")
    }

    /// The store's exclusive lock. Besides the store's own updates, whoever makes a
    /// container from an image holds it from resolving the image until the container is
    /// recorded, so a concurrent `rmi` cannot collect the image's layers in between.
    pub fn lock(&self) -> Result<Lock, Error> {
        let path = self.paths.images().join("index.lock");
        Lock::exclusive(&path).map_err(Error::io("locking", path))
    }

    fn read_index(&self) -> Result<Index, Error> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
        Index::parse(&bytes).map_err(|e| Error::corrupt(path.display().to_string(), e.to_string()))
    }

    fn write_index(&self, index: &Index) -> Result<(), Error> {
        let path = self.index_path();
        fsutil::write_atomic(&path, &index.to_json(), true).map_err(Error::io("writing", path))
    }
}

/// Blobs written and verified but not yet in the store. Dropping it removes them.
pub struct Staging {
    dir: TempDir,
    /// Digest -> staged file.
    blobs: BTreeMap<String, PathBuf>,
}

/// A blob being written into a [`Staging`] area; [`Staging::add`] finishes it.
pub struct BlobWriter {
    path: PathBuf,
    inner: Hashing<BufWriter<File>>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Staging {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new blob to write; hand it to [`Self::add`] when it is complete.
    pub fn writer(&self) -> Result<BlobWriter, Error> {
        let path = self
            .dir
            .path()
            .join(format!("blob-{}", fsutil::random_hex(8)));
        let file = File::create_new(&path).map_err(Error::io("creating", &path))?;
        Ok(BlobWriter {
            path,
            inner: Hashing::new(BufWriter::new(file)),
        })
    }

    /// Stages a written blob; returns its digest and size.
    pub fn add(&mut self, writer: BlobWriter) -> Result<(String, u64), Error> {
        let BlobWriter { path, inner } = writer;
        let (buffered, digest, size) = inner.finish();
        // Synced here, outside the store lock that committing takes.
        buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .map_err(Error::io("writing", &path))?;
        self.blobs.entry(digest.clone()).or_insert(path);
        Ok((digest, size))
    }

    /// Stages `data`, returning its descriptor.
    pub fn add_bytes(&mut self, media_type: MediaType, data: &[u8]) -> Result<Descriptor, Error> {
        let mut writer = self.writer()?;
        writer
            .write_all(data)
            .map_err(Error::io("writing", &writer.path))?;
        let (digest, size) = self.add(writer)?;
        descriptor(media_type, &digest, size)
    }

    /// Stages an OCI manifest for `config` and `layers` (staged or in the store already)
    /// and returns the image to commit.
    pub fn add_image(
        &mut self,
        config: Descriptor,
        layers: Vec<Descriptor>,
        names: Vec<Reference>,
    ) -> Result<NewImage, Error> {
        let mut blobs = vec![config.digest().to_string()];
        blobs.extend(layers.iter().map(|l| l.digest().to_string()));
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(layers)
            .build()
            .map_err(|e| Error::Internal(format!("building a manifest: {e}")))?;
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("serializing a manifest: {e}")))?;
        let manifest = self.add_bytes(MediaType::ImageManifest, &json)?;
        blobs.insert(0, manifest.digest().to_string());
        Ok(NewImage {
            config_digest: blobs[1].clone(),
            manifest,
            blobs,
            names,
            keep_manifest: false,
        })
    }

    /// Where the staged blob `digest` is.
    pub fn path(&self, digest: &str) -> Option<&Path> {
        self.blobs.get(digest).map(PathBuf::as_path)
    }

    /// Moves one staged (and synced) blob into the store, unless the store has it already.
    pub(crate) fn commit_blob(&self, store: &ImageStore, digest: &str) -> Result<(), Error> {
        let target = store.blob_path(digest)?;
        if target.exists() {
            return Ok(());
        }
        let staged = self
            .path(digest)
            .ok_or_else(|| Error::Internal(format!("blob {digest} was never staged")))?;
        fs::rename(staged, &target).map_err(Error::io("moving into the store", target))
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

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

/// Whether `rmi` may remove `image`, given which containers use which images.
fn check_unused(image: &Image, uses: &[ImageUse], force: bool) -> Result<(), Error> {
    let users: Vec<_> = uses.iter().filter(|u| u.image_id == image.id).collect();
    let name = image
        .references()
        .first()
        .map_or_else(|| image.short_id().to_string(), Reference::familiar);
    if let Some(user) = users.iter().find(|u| u.running) {
        return Err(Error::UsedByRunning {
            image: name,
            container: user.container.clone(),
        });
    }
    match users.first() {
        Some(user) if !force => Err(Error::UsedByStopped {
            image: name,
            container: user.container.clone(),
        }),
        _ => Ok(()),
    }
}

/// Finds `name_or_id` among `images`; also returns the reference when it was found by name.
fn resolve_in(
    mut images: Vec<Image>,
    name_or_id: &str,
) -> Result<(Image, Option<Reference>), Error> {
    let by_id = |images, hex| match by_id_prefix(images, hex, name_or_id)? {
        Some(image) => Ok((image, None)),
        None => Err(Error::NotFound(name_or_id.to_string())),
    };
    if let Some(hex) = name_or_id.strip_prefix("sha256:") {
        return by_id(images, hex);
    }
    if is_full_hex_id(name_or_id) {
        return by_id(images, name_or_id);
    }
    let reference = Reference::parse(name_or_id)?;
    let by_name = images.iter().position(|image| match reference.digest() {
        // A digest names an image within a repository, as a pulled image's RepoDigests.
        Some(digest) => {
            image.manifest_digest == digest
                && image
                    .references()
                    .iter()
                    .any(|r| r.name() == reference.name())
        }
        None => image.names.contains(&reference.to_string()),
    });
    match by_name {
        Some(i) => {
            let name = Some(reference).filter(|r| r.digest().is_none());
            Ok((images.swap_remove(i), name))
        }
        None => by_id(images, name_or_id),
    }
}

fn by_id_prefix(images: Vec<Image>, hex: &str, input: &str) -> Result<Option<Image>, Error> {
    if hex.len() < MIN_ID_PREFIX || !is_lower_hex(hex) {
        return Ok(None);
    }
    let mut matches: Vec<Image> = images
        .into_iter()
        .filter(|i| {
            i.id.strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex))
        })
        .collect();
    let mut ids: Vec<String> = matches.iter().map(|i| i.short_id().to_string()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() > 1 {
        return Err(Error::AmbiguousId {
            prefix: input.to_string(),
            ids,
        });
    }
    Ok((!matches.is_empty()).then(|| matches.swap_remove(0)))
}

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
    use crate::testing::{store, tarball};
    use std::sync::Arc;

    fn import(store: &ImageStore, content: &str, name: Option<&str>) -> Image {
        let reference = name.map(|n| Reference::parse(n).unwrap());
        let tar = tarball(&[("etc/hostname", content.as_bytes())]);
        store.import(&tar[..], "test", reference.as_ref()).unwrap()
    }

    fn blob_count(store: &ImageStore) -> usize {
        fs::read_dir(store.blobs_dir()).unwrap().count()
    }

    fn names(store: &ImageStore, id: &str) -> Vec<String> {
        let image = store.resolve(id).unwrap();
        image.references().iter().map(Reference::familiar).collect()
    }

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
    fn resolves_names_ids_and_prefixes() {
        let (_dir, store) = store();
        let image = import(&store, "a", Some("base"));
        let hex = &image.id[7..];
        for name in [
            "base",
            "base:latest",
            "docker.io/library/base:latest",
            &image.id,
            hex,
            &hex[..3],
            &format!("sha256:{}", &hex[..5]),
        ] {
            assert_eq!(store.resolve(name).unwrap().id, image.id, "{name}");
        }
        let err = store.resolve("base:v2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "image \"base:v2\" not found locally; `berth images` lists what is here"
        );
        assert!(
            matches!(store.resolve(&hex[..2]), Err(Error::NotFound(_))),
            "too short a prefix"
        );
        assert!(matches!(
            store.resolve("Base"),
            Err(Error::InvalidReference { .. })
        ));

        let digest_ref = format!("base@{}", image.manifest_digest);
        assert_eq!(store.resolve(&digest_ref).unwrap().id, image.id);
        let other_repo = format!("other@{}", image.manifest_digest);
        assert!(
            store.resolve(&other_repo).is_err(),
            "a digest resolves within its repository"
        );
    }

    #[test]
    fn a_name_wins_over_an_id_prefix_and_ambiguous_prefixes_are_errors() {
        let (_dir, store) = store();
        let first = import(&store, "first", None);
        let prefix = &first.id[7..10];
        let named = import(&store, "named", Some(prefix));
        assert_eq!(store.resolve(prefix).unwrap().id, named.id);

        let (a, b) = (
            fake_image(&"ab".repeat(32)),
            fake_image(&format!("aba{}", "d".repeat(61))),
        );
        let err = by_id_prefix(vec![a.clone(), b.clone(), a.clone()], "aba", "aba").unwrap_err();
        assert!(matches!(err, Error::AmbiguousId { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("matches 2 images (abababababab, abaddddddddd)"),
            "{err}"
        );
        let found = by_id_prefix(vec![a.clone(), b, a.clone()], "abab", "abab").unwrap();
        assert_eq!(found.map(|i| i.id), Some(a.id.clone()));
        let twice = by_id_prefix(vec![a.clone(), a.clone()], "aba", "aba").unwrap();
        assert_eq!(
            twice.map(|i| i.id),
            Some(a.id),
            "one id under two manifests is one image"
        );
    }

    #[test]
    fn tag_untag_and_remove() {
        let (_dir, store) = store();
        let image = import(&store, "a", Some("base"));
        store.tag("base", "me/app:v1").unwrap();
        store.tag(&image.id[7..19], "localhost:5000/x").unwrap();
        // Sorted by full name: docker.io/library/base, docker.io/me/app, localhost:5000/x.
        assert_eq!(
            names(&store, &image.id),
            ["base:latest", "me/app:v1", "localhost:5000/x:latest"]
        );
        assert!(matches!(
            store.tag("base", &format!("x@{}", image.manifest_digest)),
            Err(Error::TagWithDigest(_))
        ));
        assert!(matches!(
            store.tag("base", "Bad"),
            Err(Error::InvalidReference { .. })
        ));

        assert_eq!(
            store.remove("me/app:v1", false, &[]).unwrap(),
            [Removal::Untagged("me/app:v1".into())]
        );
        let err = store.remove(&image.id, false, &[]).unwrap_err();
        assert!(matches!(err, Error::SeveralNames { .. }), "{err}");
        let blobs = blob_count(&store);
        assert_eq!(blobs, 3);
        assert_eq!(
            store.remove(&image.id, true, &[]).unwrap(),
            [
                Removal::Untagged("base:latest".into()),
                Removal::Untagged("localhost:5000/x:latest".into()),
                Removal::Deleted(image.id.clone()),
            ]
        );
        assert!(store.list().unwrap().is_empty());
        assert_eq!(blob_count(&store), 0, "unreferenced blobs are collected");
    }

    #[test]
    fn moving_a_name_leaves_the_old_image_dangling() {
        let (_dir, store) = store();
        let old = import(&store, "old", Some("app"));
        let new = import(&store, "new", Some("app"));
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(store.resolve(&old.id).unwrap().names.is_empty());
        assert_eq!(store.resolve("app").unwrap().id, new.id);
        // Removing the last name removes the image; the dangling one stays.
        assert_eq!(
            store.remove("app", false, &[]).unwrap(),
            [
                Removal::Untagged("app:latest".into()),
                Removal::Deleted(new.id.clone())
            ]
        );
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(blob_count(&store), 3);
    }

    #[test]
    fn containers_protect_their_images() {
        let image = Image {
            names: vec!["docker.io/library/base:latest".into()],
            ..fake_image(&"ab".repeat(32))
        };
        let used = |running| ImageUse {
            image_id: image.id.clone(),
            container: "c1".into(),
            running,
        };
        let other = ImageUse {
            image_id: fake_image(&"cd".repeat(32)).id,
            container: "c2".into(),
            running: true,
        };
        assert!(check_unused(&image, std::slice::from_ref(&other), false).is_ok());
        let err = check_unused(&image, &[other.clone(), used(false)], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image base:latest is used by stopped container c1; remove the container first, or use -f"
        );
        assert!(check_unused(&image, &[used(false)], true).is_ok());
        let err = check_unused(&image, &[used(false), used(true)], true).unwrap_err();
        assert!(matches!(err, Error::UsedByRunning { .. }), "{err}");
        assert!(err.to_string().contains("running container c1"));
    }

    #[test]
    fn garbage_collection_spares_what_containers_use() {
        let (_dir, store) = store();
        let kept = import(&store, "kept", Some("kept"));
        let used = import(&store, "used", Some("used"));
        let gone = import(&store, "gone", Some("gone"));
        let dirs = |image: &Image| store.layer_dirs(image).unwrap();
        let (used_dirs, gone_dirs, kept_dirs) = (dirs(&used), dirs(&gone), dirs(&kept));

        let _lock = store.lock().unwrap();
        let mut index = store.read_index().unwrap();
        index.remove_image(&used.manifest_digest);
        index.remove_image(&gone.manifest_digest);
        store.write_index(&index).unwrap();
        let uses = [ImageUse {
            image_id: used.id.clone(),
            container: "c".into(),
            running: false,
        }];
        store.collect_garbage(&index, &uses).unwrap();

        assert!(used_dirs[0].is_dir() && kept_dirs[0].is_dir());
        assert!(!gone_dirs[0].exists());
        assert!(
            store.blob_path(&used.id).unwrap().exists(),
            "its config tells which layers to keep"
        );
        assert!(!store.blob_path(&used.manifest_digest).unwrap().exists());
        assert!(!store.blob_path(&gone.id).unwrap().exists());
        // The next collection still knows the removed image's layers from its config.
        store.collect_garbage(&index, &uses).unwrap();
        assert!(used_dirs[0].is_dir());
        store.collect_garbage(&index, &[]).unwrap();
        assert!(!used_dirs[0].exists());
        assert_eq!(fs::read_dir(store.paths.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn collection_sweeps_what_dead_processes_left() {
        let (_dir, store) = store();
        let tmp = store.paths.tmp();
        for name in [
            "gc-abc-1234",
            "ingest-old",
            "layer-old",
            "ingest-fresh",
            "unknown",
        ] {
            fs::create_dir(tmp.join(name)).unwrap();
        }
        let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
        for name in ["ingest-old", "layer-old"] {
            File::open(tmp.join(name))
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        let _lock = store.lock().unwrap();
        store
            .collect_garbage(&store.read_index().unwrap(), &[])
            .unwrap();
        let mut left: Vec<String> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["ingest-fresh", "unknown"]);
    }

    #[test]
    fn layers_unpack_once_even_when_raced() {
        let (_dir, store) = store();
        let image = import(&store, "raced", Some("raced"));
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, image) = (Arc::clone(&store), image.clone());
                std::thread::spawn(move || store.layer_dirs(&image).unwrap())
            })
            .collect();
        let results: Vec<Vec<PathBuf>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(results.iter().all(|dirs| dirs == &results[0]));
        let dir = &results[0][0];
        assert_eq!(dir, &store.paths.layers().join(&image.diff_ids()[0][7..]));
        assert_eq!(
            fs::read_to_string(dir.join("etc/hostname")).unwrap(),
            "raced"
        );
        assert_eq!(fs::read_dir(store.paths.layers()).unwrap().count(), 1);
        assert_eq!(
            fs::read_dir(store.paths.tmp()).unwrap().count(),
            0,
            "losers clean up"
        );
    }

    #[test]
    fn corrupt_blobs_are_reported() {
        let (_dir, store) = store();
        let image = import(&store, "x", Some("x"));
        let layer = store
            .blob_path(image.manifest.layers()[0].digest().as_ref())
            .unwrap();
        let mut bytes = fs::read(&layer).unwrap();
        let last = bytes.len() - 9; // inside the gzip trailer's CRC
        bytes[last] ^= 0xff;
        fs::write(&layer, bytes).unwrap();
        let err = store.layer_dirs(&image).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("no longer matches its digest"),
            "{err}"
        );
        assert_eq!(fs::read_dir(store.paths.layers()).unwrap().count(), 0);

        fs::write(store.blob_path(&image.id).unwrap(), b"{}").unwrap();
        let err = store.list().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn committing_an_image_already_stored_adds_only_names() {
        let (_dir, store) = store();
        let image = import(&store, "x", Some("x"));
        let mut archive = Vec::new();
        store
            .save(&["x".into()], crate::ArchiveFormat::Docker, &mut archive)
            .unwrap();
        store.tag("x", "y").unwrap();
        store.remove("x", false, &[]).unwrap();
        let loaded = store.load(&archive[..]).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].image.manifest_digest, image.manifest_digest,
            "no second manifest"
        );
        assert_eq!(names(&store, &image.id), ["x:latest", "y:latest"]);
    }

    #[test]
    fn import_refuses_what_is_not_a_rootfs_tarball() {
        let (_dir, store) = store();
        let err = |data: &[u8]| store.import(data, "in.tar", None).unwrap_err().to_string();
        assert!(err(b"").contains("in.tar: the tar archive is empty"));
        assert!(err(&[b'x'; 1024]).contains("not a valid tar archive"));
        let mut evil = tarball(&[("a", b"")]);
        evil[..1].copy_from_slice(b"/");
        let header = tar::Header::from_byte_slice(&evil[..512]).clone();
        let mut fixed = header;
        fixed.set_cksum();
        evil[..512].copy_from_slice(fixed.as_bytes());
        assert!(err(&evil).contains("is an absolute path"), "{}", err(&evil));
        assert!(err(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).contains("zstd"));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(store.paths.tmp()).unwrap().count(), 0);
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

    fn fake_image(hex: &str) -> Image {
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
