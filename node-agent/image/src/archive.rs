//! `berth save` and `berth load`: images to and from the two tar formats other tools
//! exchange.
//!
//! - docker-archive (`docker save`): `manifest.json` lists each image's config file,
//!   `RepoTags` and layer files. Berth writes configs as `<hex>.json` and layers as
//!   uncompressed `<diff-id hex>.tar`, as `docker load` and `podman load` expect, and reads
//!   every variant (legacy `<id>/layer.tar`, symlinked layers, gzip layers, Docker 25's
//!   `blobs/sha256/...` paths).
//! - oci-archive: an OCI image layout in a tar. Blobs are written byte for byte as stored;
//!   `index.json` names images as the store's own index does.
//!
//! Loading stages and verifies everything (digests, sizes, diff ids, JSON) before the store
//! sees any of it, so a corrupt archive leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use flate2::read::MultiGzDecoder;
use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageManifest, MediaType, Os};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::blob::{self, Compression, CopyError, Hashing, sha256_hex};
use crate::index::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Index};
use crate::layer::relative_path;
use crate::reference::Reference;
use crate::store::{
    Image, ImageStore, NewImage, OCI_LAYOUT, Staging, descriptor, is_index, is_manifest, verify,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s format (the default, as in Docker and Podman).
    Docker,
    /// An OCI image layout in a tar.
    Oci,
}

impl FromStr for ArchiveFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "docker-archive" => Ok(ArchiveFormat::Docker),
            "oci-archive" => Ok(ArchiveFormat::Oci),
            other => Err(Error::bad_input(
                format!("archive format \"{other}\""),
                "unknown; use docker-archive or oci-archive",
            )),
        }
    }
}

/// An image `load` added, with the names the archive gave it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub image: Image,
    pub names: Vec<Reference>,
}

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
    /// Writes `images` (names or ids) to `out` as one archive. Images given by name carry
    /// that name in the archive; images given by id carry none, as with `docker save`.
    pub fn save(
        &self,
        images: &[String],
        format: ArchiveFormat,
        out: impl Write,
    ) -> Result<(), Error> {
        let mut selected: Vec<(Image, Vec<Reference>)> = Vec::new();
        for name_or_id in images {
            let (image, name) = self.resolve_named(name_or_id)?;
            match selected.iter_mut().find(|(i, _)| i.id == image.id) {
                Some((_, names)) => names.extend(name),
                None => selected.push((image, name.into_iter().collect())),
            }
        }
        let mut tar = ArchiveWriter::new(out);
        match format {
            ArchiveFormat::Docker => self.write_docker_archive(&selected, &mut tar)?,
            ArchiveFormat::Oci => self.write_oci_archive(&selected, &mut tar)?,
        }
        tar.finish()
    }

    fn write_docker_archive<W: Write>(
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

    fn write_oci_archive<W: Write>(
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

    /// Reads a docker-archive or an oci-archive (plain or gzip-compressed, told apart by
    /// their content) and adds its images to the store, with their names.
    pub fn load(&self, input: impl Read) -> Result<Vec<Loaded>, Error> {
        let mut staging = self.staging()?;
        let members = Members::extract(blob::decompressed(input, "archive")?, &mut staging)?;
        let images = if members.has("manifest.json") {
            docker_images(&members, &mut staging)?
        } else if members.has("index.json") && members.has("oci-layout") {
            oci_images(&members, &mut staging)?
        } else {
            return Err(Error::bad_input(
                "archive",
                "not a docker-archive (no manifest.json) nor an oci-archive (no index.json and \
                 oci-layout)",
            ));
        };
        let names: Vec<Vec<Reference>> = images.iter().map(|i| i.names.clone()).collect();
        let committed = self.commit(staging, images)?;
        Ok(committed
            .into_iter()
            .zip(names)
            .map(|(image, names)| Loaded { image, names })
            .collect())
    }
}

fn hex(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

/// A file of the archive, staged.
#[derive(Clone, Debug)]
struct Member {
    digest: String,
    size: u64,
}

/// The files of an archive, staged as blobs, by their path in the archive.
struct Members {
    files: BTreeMap<PathBuf, Member>,
    /// Symlinks and hard links: path -> the path they point to (both archive-relative).
    links: BTreeMap<PathBuf, PathBuf>,
}

impl Members {
    fn extract(reader: impl Read, staging: &mut Staging) -> Result<Members, Error> {
        let bad =
            |e: io::Error| Error::bad_input("archive", format!("not a valid tar archive: {e}"));
        let mut members = Members {
            files: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let unsafe_path = |reason: &str| {
                Error::bad_input("archive", format!("entry \"{}\" {reason}", raw.display()))
            };
            let path = relative_path(&raw).map_err(unsafe_path)?;
            let link = || -> Result<PathBuf, Error> {
                entry
                    .link_name()
                    .map_err(bad)?
                    .map(|target| target.into_owned())
                    .ok_or_else(|| unsafe_path("is a link to nothing"))
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let mut writer = staging.writer()?;
                    blob::copy(&mut entry, &mut writer).map_err(|e| match e {
                        CopyError::Read(e) => bad(e),
                        CopyError::Write(e) => Error::io("writing in", staging.dir())(e),
                    })?;
                    let (digest, size) = staging.add(writer)?;
                    members.files.insert(path, Member { digest, size });
                }
                tar::EntryType::Symlink => {
                    let target = link()?;
                    let resolved = resolve_symlink(&path, &target)
                        .ok_or_else(|| unsafe_path("is a symlink out of the archive"))?;
                    members.links.insert(path, resolved);
                }
                tar::EntryType::Link => {
                    let target = relative_path(&link()?).map_err(unsafe_path)?;
                    members.links.insert(path, target);
                }
                _ => {} // directories and the like carry nothing an image needs
            }
        }
        Ok(members)
    }

    fn has(&self, path: &str) -> bool {
        self.get(path).is_ok()
    }

    /// The file at `path`, following links.
    fn get(&self, path: &str) -> Result<&Member, Error> {
        let missing = || Error::bad_input("archive", format!("it has no file \"{path}\""));
        let mut current = relative_path(Path::new(path)).map_err(|_| missing())?;
        for _ in 0..16 {
            if let Some(member) = self.files.get(&current) {
                return Ok(member);
            }
            current = self.links.get(&current).ok_or_else(missing)?.clone();
        }
        Err(missing())
    }

    /// The content of a small file (JSON), with its member.
    fn read(&self, staging: &Staging, path: &str) -> Result<(Member, Vec<u8>), Error> {
        let member = self.get(path)?;
        Ok((member.clone(), contents(staging, member)?))
    }
}

fn contents(staging: &Staging, member: &Member) -> Result<Vec<u8>, Error> {
    let staged = staged_path(staging, member)?;
    fs::read(staged).map_err(Error::io("reading", staged))
}

fn staged_path<'a>(staging: &'a Staging, member: &Member) -> Result<&'a Path, Error> {
    staging
        .path(&member.digest)
        .ok_or_else(|| Error::Internal(format!("blob {} was never staged", member.digest)))
}

/// Where the symlink at `link` pointing to `target` leads, if it stays in the archive.
fn resolve_symlink(link: &Path, target: &Path) -> Option<PathBuf> {
    let mut resolved = link.parent()?.to_path_buf();
    for component in target.components() {
        match component {
            Component::Normal(c) => resolved.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved)
}

fn bad_json(what: &str, e: serde_json::Error) -> Error {
    Error::bad_input(format!("archive: {what}"), format!("invalid JSON: {e}"))
}

fn docker_images(members: &Members, staging: &mut Staging) -> Result<Vec<NewImage>, Error> {
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

fn oci_images(members: &Members, staging: &mut Staging) -> Result<Vec<NewImage>, Error> {
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

/// A tar archive being written, with the entry metadata every tool accepts.
struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> ArchiveWriter<W> {
    fn new(out: W) -> Self {
        ArchiveWriter {
            tar: tar::Builder::new(out),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn dir(&mut self, path: &str) -> Result<(), Error> {
        let mut header = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.append(&mut header, &format!("{path}/"), io::empty())
    }

    fn file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        self.file_from(path, data.len() as u64, data)
    }

    fn file_from(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), Error> {
        let mut header = Self::header(tar::EntryType::Regular, 0o644, size);
        // A source that came up short would shift every entry after it.
        let mut data = Hashing::new(data.take(size));
        self.append(&mut header, path, &mut data)?;
        let (_, _, copied) = data.finish();
        if copied != size {
            return Err(Error::corrupt(
                path,
                format!("expected {size} bytes, read {copied}"),
            ));
        }
        Ok(())
    }

    fn append(
        &mut self,
        header: &mut tar::Header,
        path: &str,
        data: impl Read,
    ) -> Result<(), Error> {
        self.tar
            .append_data(header, path, data)
            .map_err(Error::io("writing", "the archive"))
    }

    fn finish(self) -> Result<(), Error> {
        self.tar
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(Error::io("writing", "the archive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{store, tarball};
    use flate2::write::GzEncoder;
    use serde_json::json;

    /// Archive entries: (path, content) or a symlink (path, target).
    enum Entry<'a> {
        File(&'a str, Vec<u8>),
        Symlink(&'a str, &'a str),
    }

    fn archive(entries: Vec<Entry<'_>>) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match entry {
                Entry::File(path, data) => {
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, &data[..]).unwrap();
                }
                Entry::Symlink(path, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target).unwrap();
                }
            }
        }
        tar.into_inner().unwrap()
    }

    /// A raw tar entry whose name the tar crate would refuse to write.
    fn raw_entry(name: &str) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        let mut tar = tar::Builder::new(Vec::new());
        tar.append(&header, io::empty()).unwrap();
        tar.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn config_for(diff_ids: &[String]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    fn assert_empty(store: &ImageStore) {
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(store.blobs_dir()).unwrap().count(), 0);
    }

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
    fn refuses_archives_that_do_not_add_up() {
        let (_dir, store) = store();
        let layer = tarball(&[("hello", b"world")]);
        let wrong = config_for(&[blob::sha256(b"something else")]);
        let manifest = |config: &str| {
            serde_json::to_vec(&json!([{"Config": config, "RepoTags": null, "Layers": ["l.tar"]}]))
                .unwrap()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                archive(vec![
                    Entry::File("l.tar", layer.clone()),
                    Entry::File("c.json", wrong),
                    Entry::File("manifest.json", manifest("c.json")),
                ]),
                "digest is",
            ),
            (
                archive(vec![
                    Entry::File("l.tar", layer.clone()),
                    Entry::File(
                        &format!("{}.json", "0".repeat(64)),
                        config_for(&[blob::sha256(&layer)]),
                    ),
                    Entry::File(
                        "manifest.json",
                        manifest(&format!("{}.json", "0".repeat(64))),
                    ),
                ]),
                "digest is",
            ),
            (
                archive(vec![Entry::File("manifest.json", manifest("missing.json"))]),
                "it has no file \"missing.json\"",
            ),
            (
                archive(vec![Entry::File("manifest.json", b"{".to_vec())]),
                "invalid JSON",
            ),
            (
                archive(vec![Entry::Symlink("manifest.json", "../../etc/passwd")]),
                "symlink out of the archive",
            ),
            (raw_entry("../manifest.json"), "contains \"..\""),
            (raw_entry("/manifest.json"), "absolute path"),
            (
                archive(vec![Entry::File("hello", b"x".to_vec())]),
                "not a docker-archive",
            ),
        ];
        for (bytes, want) in cases {
            let err = store.load(&bytes[..]).unwrap_err();
            assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
            assert_empty(&store);
        }
    }

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

    #[test]
    fn symlinks_resolve_within_the_archive() {
        let r = |link: &str, target: &str| resolve_symlink(Path::new(link), Path::new(target));
        assert_eq!(
            r("a/b/layer.tar", "../c.tar"),
            Some(PathBuf::from("a/c.tar"))
        );
        assert_eq!(r("a/layer.tar", "./x/../y"), Some(PathBuf::from("a/y")));
        assert_eq!(r("a/layer.tar", "../../x"), None);
        assert_eq!(r("layer.tar", "/etc/passwd"), None);
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

    #[test]
    fn formats_parse() {
        assert_eq!(
            "docker-archive".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::Docker
        );
        assert_eq!(
            "oci-archive".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::Oci
        );
        assert!("tar".parse::<ArchiveFormat>().is_err());
    }
}
