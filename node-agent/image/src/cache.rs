//! The build cache: the state of an image after each build step that ran, by the step's
//! chain key (see the `builder` module), in `$BERTH_ROOT/build-cache/<key>.json`. A record is a
//! whole state (config and layers), so a hit needs nothing else; its layers stay in the
//! store as long as it does (garbage collection counts them as used), and
//! `berth builder prune` drops the records.
//!
//! A step's layer enters the store here: its upper directory is packed into a gzip blob
//! (outside the lock), then blob, unpacked layer and record are put in place under the
//! store lock, so a concurrent `rmi` never collects a layer between the two.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::path::Path;

use flate2::write::GzEncoder;
use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::blob::{Hashing, sha256_hex};
use crate::pack::pack;
use crate::store::{ImageStore, ImageUse, Staging, descriptor, move_into_place, sync_filesystem};
use berth_sys::fs as fsutil;

/// One layer of an image being built: its blob and its diff id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

impl LayerRef {
    pub fn descriptor(&self) -> Result<Descriptor, Error> {
        descriptor(MediaType::ImageLayerGzip, &self.digest, self.size)
    }
}

/// An image as a build has it between steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildState {
    pub config: ImageConfiguration,
    /// Lowest first; `config.rootfs.diff_ids` lists the same layers.
    pub layers: Vec<LayerRef>,
}

/// A packed layer waiting for [`ImageStore::commit_step`].
pub struct StagedLayer {
    staging: Staging,
    pub layer: LayerRef,
}

impl ImageStore {
    /// Packs the overlayfs upper directory `upper` into a gzip layer blob, leaving out
    /// what `skip` says. `None` when nothing is left: the step changed no file.
    pub fn pack_layer(
        &self,
        upper: &Path,
        skip: &dyn Fn(&Path, &Metadata) -> bool,
    ) -> Result<Option<StagedLayer>, Error> {
        let mut staging = self.staging()?;
        let gzip = GzEncoder::new(staging.writer()?, flate2::Compression::default());
        let mut tar = Hashing::new(gzip);
        let entries = pack(upper, &mut tar, skip)?;
        if entries == 0 {
            return Ok(None);
        }
        let (gzip, diff_id, _) = tar.finish();
        let writer = gzip
            .finish()
            .map_err(Error::io("writing a layer in", staging.dir()))?;
        let (digest, size) = staging.add(writer)?;
        Ok(Some(StagedLayer {
            staging,
            layer: LayerRef {
                digest,
                diff_id,
                size,
            },
        }))
    }

    /// Puts a step's result in the store: the staged layer's blob, `upper` (moved) as its
    /// unpacked form, and `state` as the cache record `key`.
    pub fn commit_step(
        &self,
        layer: Option<(StagedLayer, &Path)>,
        key: &str,
        state: &BuildState,
    ) -> Result<(), Error> {
        if let Some((_, upper)) = &layer {
            // After a crash, a layer directory in place is a complete one.
            sync_filesystem(upper)?;
        }
        let _lock = self.lock()?;
        if let Some((staged, upper)) = layer {
            staged.staging.commit_blob(self, &staged.layer.digest)?;
            let hex = sha256_hex(&staged.layer.diff_id)
                .ok_or_else(|| Error::Internal(format!("bad diff id {}", staged.layer.diff_id)))?;
            let dir = self.paths().layers().join(hex);
            // Not moved when the same content is there already (a no-cache rebuild).
            if !move_into_place(upper, &dir)? {
                fs::remove_dir_all(upper).map_err(Error::io("removing", upper))?;
            }
        }
        let json = serde_json::to_vec(state)
            .map_err(|e| Error::Internal(format!("serializing a build state: {e}")))?;
        let path = self.cache_dir().join(format!("{key}.json"));
        fs::create_dir_all(self.cache_dir()).map_err(Error::io("creating", self.cache_dir()))?;
        fsutil::write_atomic(&path, &json, false).map_err(Error::io("writing", path))
    }

    /// The state recorded under `key`, if there is one whose layers are all still here.
    pub fn cached_step(&self, key: &str) -> Option<BuildState> {
        let bytes = fs::read(self.cache_dir().join(format!("{key}.json"))).ok()?;
        let state: BuildState = serde_json::from_slice(&bytes).ok()?;
        let present = state.layers.iter().all(|l| {
            let unpacked = sha256_hex(&l.diff_id).map(|hex| self.paths().layers().join(hex));
            self.blob_path(&l.digest).is_ok_and(|p| p.exists())
                && unpacked.is_some_and(|d| d.exists())
        });
        present.then_some(state)
    }

    /// `berth builder prune`: forgets every cached step, then collects the layers only
    /// the cache kept. Returns how many records were removed.
    pub fn prune_build_cache(&self, uses: &[ImageUse]) -> Result<usize, Error> {
        let dir = self.cache_dir();
        let mut removed = 0;
        {
            let _lock = self.lock()?;
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                fs::remove_file(entry.path()).map_err(Error::io("removing", entry.path()))?;
                removed += 1;
            }
        }
        self.collect(uses)?;
        Ok(removed)
    }

    /// The blobs and diff ids that cache records use, for garbage collection.
    pub(crate) fn cache_roots(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut blobs = BTreeSet::new();
        let mut diff_ids = BTreeSet::new();
        for entry in fs::read_dir(self.cache_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(bytes) = fs::read(entry.path()) else {
                continue;
            };
            let Ok(state) = serde_json::from_slice::<BuildState>(&bytes) else {
                continue;
            };
            for layer in state.layers {
                blobs.insert(layer.digest);
                diff_ids.insert(layer.diff_id);
            }
        }
        (blobs, diff_ids)
    }

    fn cache_dir(&self) -> std::path::PathBuf {
        self.paths().build_cache()
    }
}
