//! Removal and garbage collection. The store knows nothing of containers: callers say
//! which images are in use ([`ImageUse`]). What is kept is what `index.json` reaches, what
//! build cache records name, and the configs and layers of the images in use; every other
//! blob and unpacked layer is deleted, under the store lock.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use oci_spec::image::Descriptor;

use super::lookup::resolve_in;
use super::{
    Error, GC_PREFIX, INGEST_PREFIX, Image, ImageStore, LAYER_PREFIX, is_index, is_manifest,
};
use crate::blob::sha256_hex;
use crate::index::Index;
use crate::reference::{Reference, is_full_hex_id};
use berth_sys::fs as fsutil;

/// A container's use of an image, which the caller of `remove` and of garbage
/// collection says: the store knows nothing of containers.
#[derive(Clone, Debug)]
pub struct ImageUse {
    pub image_id: String,
    pub container: String,
    pub running: bool,
}

/// What `remove` did, in order, as `docker rmi` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed (familiar form, `base:latest`).
    Untagged(String),
    /// The image is gone (its id).
    Deleted(String),
}

impl ImageStore {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{BuildState, LayerRef};
    use crate::testing::{blob_count, fake_image, import, store};
    use std::fs::File;
    use std::time::SystemTime;

    #[test]
    fn remove_untags_a_name_and_deletes_by_id_only_with_force() {
        let (_dir, store) = store();
        let image = import(&store, "a", Some("base"));
        store.tag("base", "me/app:v1").unwrap();
        store.tag("base", "localhost:5000/x").unwrap();
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
    fn collection_keeps_the_layers_build_cache_records_name() {
        let (_dir, store) = store();
        let image = import(&store, "cached", Some("cached"));
        let layer_dir = store.layer_dirs(&image).unwrap().remove(0);
        let layers: Vec<LayerRef> = image
            .layers()
            .unwrap()
            .into_iter()
            .map(|(layer, diff_id)| LayerRef {
                digest: layer.digest().to_string(),
                diff_id: diff_id.to_string(),
                size: layer.size(),
            })
            .collect();
        let state = BuildState {
            config: image.config.clone(),
            layers: layers.clone(),
        };
        store.commit_step(None, "step", &state).unwrap();

        store.remove("cached", false, &[]).unwrap();
        let blob = |digest: &str| store.blob_path(digest).unwrap();
        assert!(blob(&layers[0].digest).exists() && layer_dir.is_dir());
        assert!(!blob(&image.id).exists() && !blob(&image.manifest_digest).exists());
        let hit = store
            .cached_step("step")
            .expect("the record's layers are all here");
        assert_eq!(hit.layers, layers);

        assert_eq!(store.prune_build_cache(&[]).unwrap(), 1);
        assert!(!layer_dir.exists());
        assert_eq!(blob_count(&store), 0);
        assert!(store.cached_step("step").is_none());
    }
}
