//! Adding images: blobs are written and verified in a [`Staging`] area outside the lock,
//! then [`ImageStore::commit`] moves them into `blobs/` and names the images in
//! `index.json` in one step under the store lock. `tag` is the other write of the index.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use tempfile::TempDir;

use super::lookup::resolve_in;
use super::{Error, INGEST_PREFIX, Image, ImageStore, descriptor};
use crate::blob::Hashing;
use crate::index::Index;
use crate::reference::Reference;
use berth_sys::fs as fsutil;

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

impl ImageStore {
    /// A fresh staging area for new blobs, removed when dropped.
    pub fn staging(&self) -> Result<Staging, Error> {
        Ok(Staging {
            dir: self.staging_dir(INGEST_PREFIX)?,
            blobs: BTreeMap::new(),
        })
    }

    pub(super) fn staging_dir(&self, prefix: &str) -> Result<TempDir, Error> {
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

    pub(super) fn write_index(&self, index: &Index) -> Result<(), Error> {
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

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

#[cfg(test)]
mod tests {
    use crate::store::Removal;
    use crate::testing::{blob_count, import, names, store};

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
    fn tag_adds_names_and_refuses_digests() {
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
            Err(crate::Error::TagWithDigest(_))
        ));
        assert!(matches!(
            store.tag("base", "Bad"),
            Err(crate::Error::InvalidReference { .. })
        ));
        assert_eq!(store.list().unwrap().len(), 1, "a tag adds no image");
    }
}
