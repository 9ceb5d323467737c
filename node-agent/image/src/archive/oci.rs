//! oci-archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) in a tar.

use std::collections::BTreeSet;
use std::io::Write;

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageManifest, Os};

use super::members::{Member, Members, contents};
use super::writer::ArchiveWriter;
use super::{bad_json, hex};
use crate::Error;
use crate::blob::sha256_hex;
use crate::index::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Index};
use crate::reference::Reference;
use crate::store::{
    Image, ImageStore, NewImage, OCI_LAYOUT, Staging, descriptor, is_index, is_manifest, verify,
};

impl ImageStore {
    pub(super) fn write_oci_archive<W: Write>(
        &self,
        selected: &[(Image, Vec<Reference>)],
        tar: &mut ArchiveWriter<W>,
    ) -> Result<(), Error> {
        tar.file("oci-layout", OCI_LAYOUT.as_bytes())?;
        tar.dir("blobs")?;
        tar.dir("blobs/sha256")?;
        let mut index = Index::empty();
        let mut written = BTreeSet::new();
        for (image, names) in selected {
            let layers = image
                .manifest
                .layers()
                .iter()
                .map(|l| l.digest().to_string());
            for digest in [image.manifest_digest.clone(), image.id.clone()]
                .into_iter()
                .chain(layers)
            {
                if written.insert(digest.clone()) {
                    let file = self.open_blob(&digest)?;
                    let size = file
                        .metadata()
                        .map_err(Error::io("inspecting", self.blob_path(&digest)?))?
                        .len();
                    tar.file_from(&format!("blobs/sha256/{}", hex(&digest)), size, file)?;
                }
            }
            let target = self.manifest_descriptor(image)?;
            index.add_unnamed(&target);
            for name in names {
                index.set_name(&target, name);
            }
        }
        tar.file("index.json", &index.to_json())
    }
}

pub(super) fn oci_images(members: &Members, staging: &mut Staging) -> Result<Vec<NewImage>, Error> {
    let (_, layout) = members.read(staging, "oci-layout")?;
    let layout: serde_json::Value =
        serde_json::from_slice(&layout).map_err(|e| bad_json("oci-layout", e))?;
    if !layout["imageLayoutVersion"].is_string() {
        return Err(Error::bad_input(
            "archive: oci-layout",
            "it has no imageLayoutVersion",
        ));
    }
    let (_, index) = members.read(staging, "index.json")?;
    let index = Index::parse(&index).map_err(|e| bad_json("index.json", e))?;
    if index.descriptors().is_empty() {
        return Err(Error::bad_input(
            "archive: index.json",
            "it lists no images",
        ));
    }
    let mut images = Vec::new();
    for top in index.descriptors() {
        let target = if is_index(top.media_type()) {
            platform_manifest(members, staging, top)?
        } else if is_manifest(top.media_type()) {
            top.clone()
        } else {
            return Err(Error::bad_input(
                format!("archive: index.json: {}", top.digest()),
                format!("unsupported media type {}", top.media_type()),
            ));
        };
        let manifest_json = read_blob(members, staging, &target)?;
        let manifest: ImageManifest = serde_json::from_slice(&manifest_json)
            .map_err(|e| bad_json(&format!("manifest {}", target.digest()), e))?;
        let config_json = read_blob(members, staging, manifest.config())?;
        let config: ImageConfiguration = serde_json::from_slice(&config_json)
            .map_err(|e| bad_json(&format!("config {}", manifest.config().digest()), e))?;
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(Error::bad_input(
                format!("archive: manifest {}", target.digest()),
                "its config and its manifest list different numbers of layers",
            ));
        }
        let mut blobs = vec![
            target.digest().to_string(),
            manifest.config().digest().to_string(),
        ];
        for layer in manifest.layers() {
            blob_member(members, layer)?;
            blobs.push(layer.digest().to_string());
        }
        images.push(NewImage {
            manifest: descriptor(
                target.media_type().clone(),
                target.digest().as_ref(),
                target.size(),
            )?,
            config_digest: manifest.config().digest().to_string(),
            blobs,
            names: oci_names(top),
            keep_manifest: false,
        });
    }
    Ok(images)
}

/// The names an oci-archive gives an image: containerd's annotation, else a ref.name that
/// is a whole reference (`app:v1`; a bare tag like `latest` names no image).
fn oci_names(descriptor: &Descriptor) -> Vec<Reference> {
    let Some(annotations) = descriptor.annotations() else {
        return Vec::new();
    };
    let name = match annotations.get(ANNOTATION_IMAGE_NAME) {
        Some(name) => Some(name),
        None => annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|r| r.contains([':', '/'])),
    };
    name.and_then(|n| Reference::parse(n).ok())
        .into_iter()
        .collect()
}

/// The manifest for this host's platform in a multi-platform index.
fn platform_manifest(
    members: &Members,
    staging: &Staging,
    index: &Descriptor,
) -> Result<Descriptor, Error> {
    let json = read_blob(members, staging, index)?;
    let nested =
        Index::parse(&json).map_err(|e| bad_json(&format!("index {}", index.digest()), e))?;
    let (arch, os) = (Arch::default(), Os::default());
    nested
        .descriptors()
        .iter()
        .find(|d| {
            is_manifest(d.media_type())
                && d.platform()
                    .as_ref()
                    .is_some_and(|p| p.architecture() == &arch && p.os() == &os)
        })
        .cloned()
        .ok_or_else(|| {
            Error::bad_input(
                format!("archive: index {}", index.digest()),
                format!("it has no image for {os}/{arch}"),
            )
        })
}

/// The blob `descriptor` names, checked against its digest and size.
fn blob_member<'a>(members: &'a Members, descriptor: &Descriptor) -> Result<&'a Member, Error> {
    let digest = descriptor.digest().to_string();
    let hex = sha256_hex(&digest).ok_or_else(|| {
        Error::bad_input(
            format!("archive: blob {digest}"),
            "only sha256 digests are supported",
        )
    })?;
    let member = members.get(&format!("blobs/sha256/{hex}"))?;
    verify(&format!("archive: blob {digest}"), &digest, &member.digest)?;
    if member.size != descriptor.size() {
        return Err(Error::bad_input(
            format!("archive: blob {digest}"),
            format!(
                "it has {} bytes, its descriptor says {}",
                member.size,
                descriptor.size()
            ),
        ));
    }
    Ok(member)
}

fn read_blob(
    members: &Members,
    staging: &Staging,
    descriptor: &Descriptor,
) -> Result<Vec<u8>, Error> {
    contents(staging, blob_member(members, descriptor)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::{Entry, archive, config_for, gzip};
    use crate::blob;
    use crate::testing::{store, tarball};
    use serde_json::json;

    #[test]
    fn picks_this_platform_from_a_multi_platform_oci_archive() {
        let (_dir, store) = store();
        let layer = gzip(&tarball(&[("f", b"amd64")]));
        let config = config_for(&[blob::sha256(&tarball(&[("f", b"amd64")]))]);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": blob::sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": blob::sha256(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let platform = |arch: &str, digest: &str, size: usize| {
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": digest, "size": size,
                   "platform": {"architecture": arch, "os": "linux"}})
        };
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [
                platform("arm64", &format!("sha256:{}", "1".repeat(64)), 10),
                platform(&Arch::default().to_string(), &blob::sha256(&manifest), manifest.len()),
            ],
        }))
        .unwrap();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": blob::sha256(&nested), "size": nested.len(),
                "annotations": {"io.containerd.image.name": "docker.io/library/multi:1",
                                "org.opencontainers.image.ref.name": "1"},
            }],
        }))
        .unwrap();
        let blob_entry = |data: &[u8]| format!("blobs/sha256/{}", hex(&blob::sha256(data)));
        let (l, c, m, n) = (
            blob_entry(&layer),
            blob_entry(&config),
            blob_entry(&manifest),
            blob_entry(&nested),
        );
        let bytes = archive(vec![
            Entry::File("oci-layout", OCI_LAYOUT.as_bytes().to_vec()),
            Entry::File("index.json", index),
            Entry::File(&n, nested.clone()),
            Entry::File(&m, manifest.clone()),
            Entry::File(&c, config.clone()),
            Entry::File(&l, layer.clone()),
        ]);
        let loaded = store.load(&bytes[..]).unwrap();
        assert_eq!(loaded[0].image.manifest_digest, blob::sha256(&manifest));
        assert_eq!(loaded[0].names, [Reference::parse("multi:1").unwrap()]);
        assert_eq!(store.resolve("multi:1").unwrap().id, blob::sha256(&config));
    }

    #[test]
    fn oci_names_prefer_containerd_and_skip_bare_tags() {
        let with = |annotations: serde_json::Value| {
            let d: Descriptor = serde_json::from_value(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", "a".repeat(64)), "size": 1,
                "annotations": annotations,
            }))
            .unwrap();
            oci_names(&d)
                .iter()
                .map(Reference::familiar)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            with(
                json!({"io.containerd.image.name": "docker.io/x/y:1", "org.opencontainers.image.ref.name": "1"})
            ),
            ["x/y:1"]
        );
        assert_eq!(
            with(json!({"org.opencontainers.image.ref.name": "localhost/app:v1"})),
            ["localhost/app:v1"]
        );
        assert!(with(json!({"org.opencontainers.image.ref.name": "latest"})).is_empty());
        assert!(with(json!({"org.opencontainers.image.ref.name": "Bad:Name"})).is_empty());
    }
}
