//! The image store: an OCI image layout under `$BERTH_ROOT/images`, with each layer
//! unpacked once per diff id under `$BERTH_ROOT/layers`.
//!
//! Blobs are immutable and content-addressed; `index.json` names the images (see
//! [`super::index`]). New content is written and verified in a [`Staging`] area under
//! `$BERTH_ROOT/tmp`, then moved into `blobs/` and named in `index.json` in one step under
//! the store lock ([`ImageStore::commit`]). Garbage collection runs under the same lock, so
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
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageManifest, MediaType,
};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::blob::{self, Hashing, sha256_hex};
use super::index::Index;
use super::layer;
use super::reference::{Reference, is_full_hex_id, is_lower_hex};
use crate::fsutil::{self, Lock};
use crate::paths::Paths;

pub use super::error::Error;

/// The shortest id prefix `resolve` accepts, so that a typo does not pick a random image.
pub const MIN_ID_PREFIX: usize = 3;

pub(crate) const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

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

/// A new image for [`ImageStore::commit`]: its manifest and everything it references,
/// all already in the staging area it is committed with.
pub(crate) struct NewImage {
    pub manifest: Descriptor,
    pub config_digest: String,
    pub blobs: Vec<String>,
    pub names: Vec<Reference>,
}

pub struct ImageStore {
    paths: Paths,
}

impl ImageStore {
    /// Opens the store at `paths.root`, creating an empty one if there is none.
    pub fn open(paths: &Paths) -> Result<ImageStore, Error> {
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
            "Config": image.config.config(),
            "RootFS": {
                "Type": image.config.rootfs().typ(),
                "Layers": image.diff_ids(),
            },
            "History": image.config.history(),
            "Size": image.size,
            "ManifestDigest": image.manifest_digest,
        })
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
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<Vec<Removal>, Error> {
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
            self.check_unused(&image, force)?;
            removals.extend(references.iter().map(|r| Removal::Untagged(r.familiar())));
            index.remove_image(&image.manifest_digest);
            removals.push(Removal::Deleted(image.id.clone()));
        }
        self.write_index(&index)?;
        self.collect_garbage(&index)?;
        Ok(removals)
    }

    fn check_unused(&self, image: &Image, force: bool) -> Result<(), Error> {
        let uses = self.images_in_use()?;
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

    fn images_in_use(&self) -> Result<Vec<crate::runtime::ImageUse>, Error> {
        crate::runtime::images_in_use(&self.paths).map_err(Error::io(
            "listing the containers in",
            self.paths.containers(),
        ))
    }

    /// Deletes the blobs no image in `index` references and the unpacked layers no image
    /// uses. Images that containers were made from keep their config blob and layers even
    /// when removed from the index (`rmi -f`), so the containers go on working. Called with
    /// the store lock held.
    fn collect_garbage(&self, index: &Index) -> Result<(), Error> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for image in self.images_in(index)? {
            blobs.insert(image.manifest_digest.clone());
            blobs.insert(image.id.clone());
            blobs.extend(
                image
                    .manifest
                    .layers()
                    .iter()
                    .map(|l| l.digest().to_string()),
            );
            layers.extend(image.diff_ids().iter().cloned());
        }
        // Descriptors the store does not list as images (indexes written by other tools)
        // keep what they reach.
        for descriptor in index.descriptors() {
            self.reachable(descriptor, &mut blobs)?;
        }
        for used in self.images_in_use()? {
            if let Ok(config) = self.read_config(&used.image_id) {
                blobs.insert(used.image_id);
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
        self.remove_unlisted(&self.paths.layers(), &keep_hex(&layers))
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
                    .join(format!("gc-{name}-{}", fsutil::random_hex(4)));
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
        let path = self.blob_path(&digest)?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::corrupt(format!("layer {digest}"), "the blob is missing")
            }
            _ => Error::io("opening", &path)(e),
        })?;
        let tmp = self.staging_dir("layer-")?;
        // The layer's own `./` entry, if it has one, sets the mode of its root.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(Error::io("changing mode of", tmp.path()))?;
        let mut compressed = Hashing::new(BufReader::new(file));
        let mut tar = Hashing::new(blob::decompressed(
            &mut compressed,
            &format!("layer {digest}"),
        )?);
        layer::unpack(&mut tar, tmp.path(), diff_id)?;
        // The digests cover the whole stream, including what follows the end of the tar.
        let drain_error = |e: io::Error| Error::bad_input(format!("layer {digest}"), e.to_string());
        io::copy(&mut tar, &mut io::sink()).map_err(drain_error)?;
        let (_, actual_diff_id, _) = tar.finish();
        io::copy(&mut compressed, &mut io::sink()).map_err(drain_error)?;
        let (_, actual_digest, _) = compressed.finish();
        verify(&format!("layer {digest}"), &digest, &actual_digest)?;
        verify(
            &format!("layer {digest} (uncompressed)"),
            diff_id,
            &actual_diff_id,
        )?;
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
    pub(crate) fn staging(&self) -> Result<Staging, Error> {
        Ok(Staging {
            dir: self.staging_dir("ingest-")?,
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
    /// store under another manifest is not added twice: the existing one gets the names.
    /// Returns the committed images, in order.
    pub(crate) fn commit(
        &self,
        staging: Staging,
        images: Vec<NewImage>,
    ) -> Result<Vec<Image>, Error> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let existing: BTreeMap<String, Image> = self
            .images_in(&index)?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        let mut targets = Vec::new();
        for image in &images {
            let target = match existing.get(&image.config_digest) {
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
                    .ok_or_else(|| {
                        Error::corrupt(format!("manifest {digest}"), "vanished while committing")
                    })
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

    fn blobs_dir(&self) -> PathBuf {
        self.paths.images().join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.paths.images().join("index.json")
    }

    fn lock(&self) -> Result<Lock, Error> {
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
pub(crate) struct Staging {
    dir: TempDir,
    /// Digest -> staged file.
    blobs: BTreeMap<String, PathBuf>,
}

/// A blob being written into a [`Staging`] area; [`Staging::add`] finishes it.
pub(crate) struct BlobWriter {
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
        buffered
            .into_inner()
            .map_err(|e| Error::io("writing", &path)(e.into_error()))?;
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

    /// Where the staged blob `digest` is.
    pub fn path(&self, digest: &str) -> Option<&Path> {
        self.blobs.get(digest).map(PathBuf::as_path)
    }

    /// Moves one staged blob into the store, durably, unless the store has it already.
    fn commit_blob(&self, store: &ImageStore, digest: &str) -> Result<(), Error> {
        let target = store.blob_path(digest)?;
        if target.exists() {
            return Ok(());
        }
        let staged = self.path(digest).ok_or_else(|| {
            Error::corrupt(
                format!("blob {digest}"),
                "it was never staged (a berth bug)",
            )
        })?;
        File::open(staged)
            .and_then(|f| f.sync_all())
            .map_err(Error::io("syncing", staged))?;
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

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

/// Finds `name_or_id` among `images`; also returns the reference when it was found by name.
fn resolve_in(images: Vec<Image>, name_or_id: &str) -> Result<(Image, Option<Reference>), Error> {
    let not_found = || Error::NotFound(name_or_id.to_string());
    if let Some(hex) = name_or_id.strip_prefix("sha256:") {
        return by_id_prefix(images, hex, name_or_id)?
            .map(|i| (i, None))
            .ok_or_else(not_found);
    }
    if is_full_hex_id(name_or_id) {
        return by_id_prefix(images, name_or_id, name_or_id)?
            .map(|i| (i, None))
            .ok_or_else(not_found);
    }
    let reference = Reference::parse(name_or_id)?;
    let by_name = images.iter().position(|image| match reference.digest() {
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
            let image = images.into_iter().nth(i).ok_or_else(not_found)?;
            Ok((image, Some(reference).filter(|r| r.digest().is_none())))
        }
        None => by_id_prefix(images, name_or_id, name_or_id)?
            .map(|i| (i, None))
            .ok_or_else(not_found),
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
    if matches.len() > 1 {
        return Err(Error::AmbiguousId {
            prefix: input.to_string(),
            ids: matches.iter().map(|i| i.short_id().to_string()).collect(),
        });
    }
    Ok(matches.pop())
}

/// RFC 3339 time as image configs carry it (`2024-05-01T12:34:56.123456789Z`, or with an
/// offset such as `+02:00`).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
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
