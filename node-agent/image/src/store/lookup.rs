//! Finding images: names, ids, id prefixes and digests resolved against `index.json`,
//! and the manifests and configs read from their blobs, each checked against its digest.
//! Takes no lock: `index.json` is replaced atomically and blobs appear by rename.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use serde_json::{Value, json};

use super::{Error, Image, ImageStore, MIN_ID_PREFIX, descriptor, is_manifest, verify};
use crate::blob;
use crate::index::Index;
use crate::reference::{Reference, is_full_hex_id, is_lower_hex};

impl ImageStore {
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

    /// The images `index` names, in index order.
    pub(super) fn images_in(&self, index: &Index) -> Result<Vec<Image>, Error> {
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

    pub(super) fn read_manifest(&self, digest: &str) -> Result<ImageManifest, Error> {
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

    pub(super) fn read_index(&self) -> Result<Index, Error> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
        Index::parse(&bytes).map_err(|e| Error::corrupt(path.display().to_string(), e.to_string()))
    }
}

/// Finds `name_or_id` among `images`; also returns the reference when it was found by name.
pub(super) fn resolve_in(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fake_image, import, store};

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
    fn a_changed_config_is_reported_as_corrupt() {
        let (_dir, store) = store();
        let image = import(&store, "x", Some("x"));
        fs::write(store.blob_path(&image.id).unwrap(), b"{}").unwrap();
        let err = store.list().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("blob {}", image.id)),
            "{err}"
        );
    }

    #[test]
    fn ambiguous_id_prefixes_are_errors_whatever_their_form() {
        let (a, b) = (
            fake_image(&format!("abc1{}", "0".repeat(60))),
            fake_image(&format!("abc2{}", "0".repeat(60))),
        );
        let named = Image {
            names: vec!["docker.io/library/abc:v1".into()],
            ..fake_image(&"f".repeat(64))
        };
        let images = || vec![a.clone(), b.clone(), named.clone()];
        for input in ["abc", "sha256:abc"] {
            let err = resolve_in(images(), input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "image id prefix \"{input}\" matches 2 images (abc100000000, abc200000000); \
                     give more of the id"
                )
            );
        }
        let (found, by_name) = resolve_in(images(), "abc2").unwrap();
        assert_eq!((found.id, by_name), (b.id.clone(), None));
        // Names are looked up first: `abc` above was no name (it means abc:latest).
        let (found, by_name) = resolve_in(images(), "abc:v1").unwrap();
        assert_eq!(found.id, named.id);
        assert_eq!(by_name, Some(Reference::parse("abc:v1").unwrap()));
        // A full id is an id, never a name, even when no image has it.
        let missing = "abc3".to_string() + &"0".repeat(60);
        assert!(matches!(
            resolve_in(images(), &missing),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            resolve_in(images(), "ab"),
            Err(Error::NotFound(_))
        ));
    }
}
