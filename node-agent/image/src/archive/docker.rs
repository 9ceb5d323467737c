//! docker-archive: `manifest.json` and the config and layer files it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use serde::{Deserialize, Serialize};

use super::members::{Member, Members, staged_path};
use super::writer::ArchiveWriter;
use super::{bad_json, hex};
use crate::Error;
use crate::blob::{self, Compression, Hashing};
use crate::reference::Reference;
use crate::store::{Image, ImageStore, NewImage, Staging, descriptor, verify};

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    pub(super) fn write_docker_archive<W: Write>(
        &self,
        selected: &[(Image, Vec<Reference>)],
        tar: &mut ArchiveWriter<W>,
    ) -> Result<(), Error> {
        let mut written = BTreeSet::new();
        let mut manifest = Vec::new();
        for (image, names) in selected {
            let config = format!("{}.json", hex(&image.id));
            if written.insert(config.clone()) {
                tar.file(&config, &self.read_blob(&image.id)?)?;
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in image.layers()? {
                let path = format!("{}.tar", hex(diff_id));
                if written.insert(path.clone()) {
                    self.write_uncompressed_layer(tar, &path, layer, diff_id)?;
                }
                layers.push(path);
            }
            manifest.push(DockerManifest {
                config,
                // Full names: Docker shows them short anyway, and Podman would otherwise
                // read `base:latest` as `localhost/base:latest`.
                repo_tags: Some(names.iter().map(Reference::to_string).collect()),
                layers,
            });
        }
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("serializing manifest.json: {e}")))?;
        tar.file("manifest.json", &json)
    }

    /// docker-archive layers are uncompressed tars, and a tar entry's size comes before
    /// its data: a first pass measures the layer (and checks its diff id), a second copies.
    fn write_uncompressed_layer<W: Write>(
        &self,
        tar: &mut ArchiveWriter<W>,
        path: &str,
        layer: &Descriptor,
        diff_id: &str,
    ) -> Result<(), Error> {
        let digest = layer.digest().to_string();
        let what = format!("layer {digest}");
        let open = || -> Result<Box<dyn Read>, Error> {
            blob::decompressed(BufReader::new(self.open_blob(&digest)?), &what)
        };
        let mut measured = Hashing::new(open()?);
        io::copy(&mut measured, &mut io::sink())
            .map_err(|e| Error::corrupt(&what, e.to_string()))?;
        let (_, actual, size) = measured.finish();
        verify(&format!("{what} (uncompressed)"), diff_id, &actual)?;
        tar.file_from(path, size, open()?)
    }
}

pub(super) fn docker_images(
    members: &Members,
    staging: &mut Staging,
) -> Result<Vec<NewImage>, Error> {
    let (_, json) = members.read(staging, "manifest.json")?;
    let entries: Vec<DockerManifest> =
        serde_json::from_slice(&json).map_err(|e| bad_json("manifest.json", e))?;
    if entries.is_empty() {
        return Err(Error::bad_input(
            "archive: manifest.json",
            "it lists no images",
        ));
    }
    // Layers shared by several images are decompressed once.
    let mut layer_info: BTreeMap<String, (String, MediaType)> = BTreeMap::new();
    let mut images = Vec::new();
    for entry in entries {
        let (config_member, config_json) = members.read(staging, &entry.config)?;
        check_content_name(&entry.config, &config_member)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_json).map_err(|e| bad_json(&entry.config, e))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::bad_input(
                format!("archive: {}", entry.config),
                format!(
                    "the config lists {} layers, manifest.json {}",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, expected) in entry.layers.iter().zip(diff_ids) {
            let member = members.get(path)?;
            check_content_name(path, member)?;
            let (diff_id, media_type) = match layer_info.get(&member.digest) {
                Some(known) => known.clone(),
                None => {
                    let info = layer_diff_id(staged_path(staging, member)?, member, path)?;
                    layer_info.insert(member.digest.clone(), info.clone());
                    info
                }
            };
            verify(
                &format!("archive: layer {path} (uncompressed)"),
                expected,
                &diff_id,
            )?;
            layers.push(descriptor(media_type, &member.digest, member.size)?);
        }
        let config = descriptor(
            MediaType::ImageConfig,
            &config_member.digest,
            config_member.size,
        )?;
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|tag| Reference::parse(tag))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::bad_input("archive: manifest.json", e.to_string()))?;
        images.push(staging.add_image(config, layers, names)?);
    }
    Ok(images)
}

/// Files named after their content (`<hex>.json`, `<hex>.tar`, `blobs/sha256/<hex>`)
/// must have that digest: the one check a docker-archive config can get.
fn check_content_name(path: &str, member: &Member) -> Result<(), Error> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".tar"))
        .or_else(|| path.strip_prefix("blobs/sha256/"))
        .filter(|stem| crate::reference::is_full_hex_id(stem));
    match stem {
        Some(hex) => verify(
            &format!("archive: {path}"),
            &format!("sha256:{hex}"),
            &member.digest,
        ),
        None => Ok(()),
    }
}

/// A docker-archive layer's diff id and the media type it is stored with.
fn layer_diff_id(staged: &Path, member: &Member, path: &str) -> Result<(String, MediaType), Error> {
    let what = format!("archive: layer {path}");
    let file = File::open(staged).map_err(Error::io("opening", staged))?;
    match Compression::sniff(BufReader::new(file), &what)? {
        (Compression::None, _) => Ok((member.digest.clone(), MediaType::ImageLayer)),
        (Compression::Gzip, reader) => {
            let mut tar = Hashing::new(MultiGzDecoder::new(reader));
            io::copy(&mut tar, &mut io::sink())
                .map_err(|e| Error::bad_input(&what, e.to_string()))?;
            let (_, diff_id, _) = tar.finish();
            Ok((diff_id, MediaType::ImageLayerGzip))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::{Entry, archive, config_for, gzip};
    use crate::testing::{store, tarball};
    use serde_json::json;
    use std::fs;

    #[test]
    fn loads_legacy_docker_archives_with_symlinks_and_gzip_layers() {
        let (_dir, store) = store();
        let layer = tarball(&[("hello", b"world")]);
        let diff_id = blob::sha256(&layer);
        let config = config_for(&[diff_id.clone(), diff_id.clone()]);
        let config_name = format!("{}.json", hex(&blob::sha256(&config)));
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": ["legacy:1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]);
        let bytes = archive(vec![
            Entry::File("aaa/layer.tar", gzip(&layer)),
            Entry::File("aaa/VERSION", b"1.0".to_vec()),
            Entry::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
            Entry::File(&config_name, config.clone()),
            Entry::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            Entry::File("repositories", b"{}".to_vec()),
        ]);
        let loaded = store.load(&gzip(&bytes)[..]).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].names, [Reference::parse("legacy:1").unwrap()]);
        let image = &loaded[0].image;
        assert_eq!(image.id, blob::sha256(&config));
        assert_eq!(image.manifest.layers().len(), 2);
        assert_eq!(
            image.manifest.layers()[0].media_type(),
            &MediaType::ImageLayerGzip
        );
        let dirs = store.layer_dirs(image).unwrap();
        assert_eq!(fs::read(dirs[0].join("hello")).unwrap(), b"world");
    }

    #[test]
    fn content_named_files_must_match_their_names() {
        let member = |data: &[u8]| Member {
            digest: blob::sha256(data),
            size: data.len() as u64,
        };
        let good = member(b"config");
        let hex = hex(&good.digest).to_string();
        for path in [
            format!("{hex}.json"),
            format!("{hex}.tar"),
            format!("blobs/sha256/{hex}"),
        ] {
            assert!(check_content_name(&path, &good).is_ok(), "{path}");
            assert!(
                check_content_name(&path, &member(b"other")).is_err(),
                "{path}"
            );
        }
        // Legacy layer ids and other names say nothing about the content.
        for path in ["abc/layer.tar", "config.json", &format!("{hex}/layer.tar")] {
            assert!(
                check_content_name(path, &member(b"other")).is_ok(),
                "{path}"
            );
        }
    }
}
