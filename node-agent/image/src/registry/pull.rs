//! `berth pull`: a manifest (picked from an image index for linux/amd64), its config and
//! layers fetched from a registry into a staging area, every digest and size verified,
//! then moved into the store and named in one commit. Blobs the store has are not
//! fetched; a failure at any point leaves the store as it was.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use futures::{StreamExt, TryStreamExt, stream};
use oci_client::errors::OciDistributionError;
use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde_json::Value;

use super::client::{Failure, Registry};
use super::progress::Progress;
use super::sources::Sources;
use super::{CONCURRENCY, Error, Options};
use crate::blob::sha256;
use crate::reference::Reference;
use crate::store::{Image, ImageStore, NewImage, Staging, descriptor};

/// The media types berth asks registries for, in order of preference.
pub(super) const ACCEPTED: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub image: Image,
    /// The name the image got: the reference, or `repo@<manifest digest>` for a digest.
    pub name: Reference,
    /// The digest of what the reference named (an image index's, for a multi-platform
    /// image).
    pub digest: String,
    /// False when the name already pointed at this image.
    pub changed: bool,
}

pub(super) async fn pull(
    root: &Path,
    reference: &Reference,
    options: &Options,
    progress: &Progress,
) -> Result<Pulled, Error> {
    let store = ImageStore::open(root)?;
    let registry = Registry::new(reference.domain(), options, None, progress)?;
    let shown = reference.familiar();
    progress.line(&format!(
        "{}: Pulling from {}",
        reference.tag().or(reference.digest()).unwrap_or_default(),
        reference.path()
    ));
    let (bytes, digest) = fetch_manifest(&registry, reference, &shown).await?;
    let (manifest_bytes, manifest_digest) = match kind(&bytes, &shown)? {
        Kind::Manifest => (bytes, digest.clone()),
        Kind::Index => {
            let chosen = choose(&bytes, &shown)?;
            let by_digest = Reference::parse(&format!("{}@{chosen}", reference.name()))?;
            let (bytes, _) = fetch_manifest(&registry, &by_digest, &shown).await?;
            if kind(&bytes, &shown)? != Kind::Manifest {
                return Err(Error::unsupported(
                    &shown,
                    "its image index lists another index",
                ));
            }
            (bytes, chosen)
        }
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        Error::unsupported(
            format!("{shown}: manifest {manifest_digest}"),
            format!("invalid: {e}"),
        )
    })?;
    check_media_types(&manifest, &shown)?;

    let name = match reference.digest() {
        Some(_) => Reference::parse(&format!("{}@{manifest_digest}", reference.name()))?,
        None => reference.clone(),
    };
    let before = store.resolve(&name.to_string()).ok();

    let mut wanted: Vec<&Descriptor> = vec![manifest.config()];
    for layer in manifest.layers() {
        if !wanted.iter().any(|d| d.digest() == layer.digest()) {
            wanted.push(layer);
        }
    }
    let mut missing = Vec::new();
    for blob in &wanted {
        if store.blob_path(blob.digest().as_ref())?.exists() {
            if blob.digest() != manifest.config().digest() {
                progress
                    .bar(blob.digest().as_ref(), 0, "")
                    .finish("Already exists");
            }
        } else {
            missing.push(*blob);
        }
    }
    let staging = RefCell::new(store.staging()?);
    let oci = registry.oci(reference);
    stream::iter(missing)
        .map(|blob| download(&registry, &oci, blob, &staging, progress))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut staging = staging.into_inner();

    let media_type = manifest
        .media_type()
        .clone()
        .unwrap_or(MediaType::ImageManifest);
    let staged = staging.add_bytes(media_type, &manifest_bytes)?;
    check_config(&store, &staging, &manifest, &shown)?;
    let blobs: Vec<String> = std::iter::once(manifest_digest.clone())
        .chain(wanted.iter().map(|d| d.digest().to_string()))
        .collect();
    let new = NewImage {
        manifest: descriptor(staged.media_type().clone(), &manifest_digest, staged.size())?,
        config_digest: manifest.config().digest().to_string(),
        blobs: blobs.clone(),
        names: vec![name.clone()],
        keep_manifest: true,
    };
    let image = store
        .commit(staging, vec![new])?
        .pop()
        .ok_or_else(|| crate::Error::Internal("a committed image vanished".into()))?;
    if let Err(e) = Sources::record(root, &store, &reference.name(), &blobs) {
        progress.note(&format!("remembering where the blobs came from: {e}"));
    }
    let changed = before.is_none_or(|b| b.manifest_digest != image.manifest_digest);
    Ok(Pulled {
        image,
        name,
        digest,
        changed,
    })
}

/// The manifest or index `reference` names, with its digest, verified against the digest
/// the reference gives.
async fn fetch_manifest(
    registry: &Registry,
    reference: &Reference,
    shown: &str,
) -> Result<(bytes::Bytes, String), Error> {
    let oci = registry.oci(reference);
    let (bytes, _) = registry
        .call(shown, async |c| {
            Ok(c.pull_manifest_raw(&oci, registry.auth(), &ACCEPTED)
                .await?)
        })
        .await?;
    let actual = sha256(&bytes);
    if let Some(expected) = reference.digest().filter(|d| *d != actual) {
        return Err(Error::DigestMismatch {
            what: format!("{shown}: manifest"),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok((bytes, actual))
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// Whether `bytes` is an image manifest or an index (OCI or Docker), by its media type or,
/// for OCI documents without one, by its fields.
fn kind(bytes: &[u8], shown: &str) -> Result<Kind, Error> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::unsupported(shown, format!("the registry sent an invalid manifest: {e}"))
    })?;
    if json["schemaVersion"] == 1 {
        return Err(Error::unsupported(
            shown,
            "it has a Docker schema 1 manifest, which is deprecated and not supported; push it \
             again with a current tool",
        ));
    }
    match json["mediaType"].as_str() {
        Some(t) if t == ACCEPTED[0] || t == ACCEPTED[1] => Ok(Kind::Manifest),
        Some(t) if t == ACCEPTED[2] || t == ACCEPTED[3] => Ok(Kind::Index),
        Some(other) => Err(Error::unsupported(
            shown,
            format!("it is a {other}, not a container image"),
        )),
        None if json.get("manifests").is_some() => Ok(Kind::Index),
        None if json.get("layers").is_some() => Ok(Kind::Manifest),
        None => Err(Error::unsupported(
            shown,
            "the registry sent something that is not a manifest",
        )),
    }
}

/// The digest of the linux/amd64 image of an index (without a variant, or `v1`, first).
fn choose(bytes: &[u8], shown: &str) -> Result<String, Error> {
    let index: ImageIndex = serde_json::from_slice(bytes)
        .map_err(|e| Error::unsupported(shown, format!("invalid image index: {e}")))?;
    let platform = |d: &Descriptor| {
        d.platform().as_ref().map(|p| {
            (
                p.os().clone(),
                p.architecture().clone(),
                p.variant().clone(),
            )
        })
    };
    let amd64 = index
        .manifests()
        .iter()
        .filter(|d| platform(d).is_some_and(|(os, arch, _)| os == Os::Linux && arch == Arch::Amd64))
        .min_by_key(|d| {
            let variant = platform(d).and_then(|(_, _, v)| v);
            !matches!(variant.as_deref(), None | Some("v1"))
        });
    match amd64 {
        Some(d) => Ok(d.digest().to_string()),
        None => {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(platform)
                .map(|(os, arch, _)| format!("{os}/{arch}"))
                .collect();
            Err(Error::unsupported(
                shown,
                format!(
                    "it has no linux/amd64 image (it has: {})",
                    if available.is_empty() {
                        "none with a platform".to_string()
                    } else {
                        available.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Refuses what berth cannot run: configs that are not image configs, layers that are
/// not tar or gzip-compressed tar (zstd), foreign layers.
fn check_media_types(manifest: &ImageManifest, shown: &str) -> Result<(), Error> {
    let config = manifest.config().media_type().to_string();
    if config != MediaType::ImageConfig.to_string()
        && config != "application/vnd.docker.container.image.v1+json"
    {
        return Err(Error::unsupported(
            shown,
            format!("its config is a {config}, so it is not a container image"),
        ));
    }
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        let reason = if media_type.contains("zstd") {
            "is compressed with zstd, which berth cannot read yet"
        } else if media_type.contains("foreign") || media_type.contains("nondistributable") {
            "is a foreign (non-distributable) layer, which berth does not fetch"
        } else if media_type.starts_with("application/vnd.oci.image.layer.v1.tar")
            || media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        {
            continue;
        } else {
            "has a media type berth does not know"
        };
        return Err(Error::unsupported(
            format!("{shown}: layer {} ({media_type})", layer.digest()),
            reason,
        ));
    }
    Ok(())
}

/// The config parses and lists as many layers as the manifest.
fn check_config(
    store: &ImageStore,
    staging: &Staging,
    manifest: &ImageManifest,
    shown: &str,
) -> Result<(), Error> {
    let digest = manifest.config().digest().to_string();
    let bytes = match staging.path(&digest) {
        Some(path) => std::fs::read(path).map_err(crate::Error::io("reading", path))?,
        None => store.read_blob(&digest)?,
    };
    let config: ImageConfiguration = serde_json::from_slice(&bytes).map_err(|e| {
        Error::unsupported(format!("{shown}: config {digest}"), format!("invalid: {e}"))
    })?;
    let (diff_ids, layers) = (config.rootfs().diff_ids().len(), manifest.layers().len());
    if diff_ids != layers {
        return Err(Error::unsupported(
            format!("{shown}: config {digest}"),
            format!("it lists {diff_ids} layers, but the manifest {layers}"),
        ));
    }
    Ok(())
}

/// Fetches one blob into the staging area, checking its size and digest.
async fn download(
    registry: &Registry,
    oci: &oci_client::Reference,
    blob: &Descriptor,
    staging: &RefCell<Staging>,
    progress: &Progress,
) -> Result<(), Error> {
    let digest = blob.digest().to_string();
    let is_layer = blob.media_type() != &MediaType::ImageConfig
        && !blob.media_type().to_string().contains("container.image");
    let bar = progress.bar(&digest, blob.size(), "Downloading");
    let what = format!("blob {digest}");
    let writer = registry
        .call(&what, async |c| {
            bar.set(0);
            let mut writer = staging.borrow().writer()?;
            let mut stream = c.pull_blob_stream(oci, digest.as_str()).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(OciDistributionError::IoError)?;
                writer.write_all(&chunk).map_err(|e| {
                    Failure::from(crate::Error::io("writing in", staging.borrow().dir())(e))
                })?;
                bar.inc(chunk.len() as u64);
            }
            Ok(writer)
        })
        .await?;
    let (actual, size) = staging.borrow_mut().add(writer)?;
    if actual != digest || size != blob.size() {
        return Err(Error::DigestMismatch {
            what: format!("{what} ({size} bytes, {} expected)", blob.size()),
            expected: digest,
            actual,
        });
    }
    if is_layer {
        bar.finish("Pull complete");
    } else {
        bar.finish_quietly();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> Vec<u8> {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(os, arch, variant, digit)| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": ACCEPTED[0],
                    "digest": format!("sha256:{}", digit.to_string().repeat(64)),
                    "size": 1,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": ACCEPTED[2], "manifests": manifests})).unwrap()
    }

    #[test]
    fn an_index_gives_its_linux_amd64_image() {
        let bytes = index(&[
            ("linux", "arm64", Some("v8"), '1'),
            ("linux", "amd64", Some("v3"), '2'),
            ("linux", "amd64", None, '3'),
            ("windows", "amd64", None, '4'),
        ]);
        assert_eq!(kind(&bytes, "x").unwrap(), Kind::Index);
        assert_eq!(
            choose(&bytes, "x").unwrap(),
            format!("sha256:{}", "3".repeat(64))
        );
        let only_v3 = index(&[("linux", "amd64", Some("v3"), '2')]);
        assert_eq!(
            choose(&only_v3, "x").unwrap(),
            format!("sha256:{}", "2".repeat(64))
        );
        let err = choose(&index(&[("linux", "arm64", None, '1')]), "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("no linux/amd64 image (it has: linux/arm64)"),
            "{err}"
        );
    }

    #[test]
    fn manifests_are_told_apart() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(kind(docker, "x").unwrap(), Kind::Manifest);
        assert_eq!(
            kind(br#"{"schemaVersion":2,"layers":[]}"#, "x").unwrap(),
            Kind::Manifest
        );
        assert_eq!(
            kind(br#"{"schemaVersion":2,"manifests":[]}"#, "x").unwrap(),
            Kind::Index
        );
        let err = kind(br#"{"schemaVersion":1,"fsLayers":[]}"#, "x").unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let err = kind(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart"}"#,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a container image"), "{err}");
        assert!(kind(b"<html>", "x").is_err());
    }

    #[test]
    fn unreadable_layers_are_refused() {
        let manifest = |layer_type: &str| -> ImageManifest {
            serde_json::from_value(serde_json::json!({
                "schemaVersion": 2,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
                "layers": [{"mediaType": layer_type, "digest": format!("sha256:{}", "b".repeat(64)), "size": 2}],
            }))
            .unwrap()
        };
        assert!(
            check_media_types(
                &manifest("application/vnd.oci.image.layer.v1.tar+gzip"),
                "x"
            )
            .is_ok()
        );
        assert!(
            check_media_types(
                &manifest("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                "x"
            )
            .is_ok()
        );
        let err = check_media_types(
            &manifest("application/vnd.oci.image.layer.v1.tar+zstd"),
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        let err = check_media_types(
            &manifest("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("foreign"), "{err}");
    }
}
