//! `berth save` and `berth load`: images to and from the two tar formats other tools
//! exchange.
//!
//! - docker-archive (`docker save`, the `docker` module): `manifest.json` lists each
//!   image's config file, `RepoTags` and layer files. Berth writes configs as `<hex>.json`
//!   and layers as uncompressed `<diff-id hex>.tar`, as `docker load` and `podman load`
//!   expect, and reads every variant (legacy `<id>/layer.tar`, symlinked layers, gzip
//!   layers, Docker 25's `blobs/sha256/...` paths).
//! - oci-archive (the `oci` module): an OCI image layout in a tar. Blobs are written byte
//!   for byte as stored; `index.json` names images as the store's own index does.
//!
//! Loading stages every file of the archive (`members`) and verifies everything (digests,
//! sizes, diff ids, JSON) before the store sees any of it, so a corrupt archive leaves
//! nothing behind. Both formats are written through one `writer`.

use std::io::{Read, Write};
use std::str::FromStr;

use crate::Error;
use crate::blob;
use crate::reference::Reference;
use crate::store::{Image, ImageStore};

mod docker;
mod members;
mod oci;
mod writer;

use docker::docker_images;
use members::Members;
use oci::oci_images;
use writer::ArchiveWriter;

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

fn bad_json(what: &str, e: serde_json::Error) -> Error {
    Error::bad_input(format!("archive: {what}"), format!("invalid JSON: {e}"))
}

/// Archives for the tests of both formats.
#[cfg(test)]
mod testing {
    use std::fs;
    use std::io::{self, Write};

    use flate2::write::GzEncoder;
    use serde_json::json;

    use crate::ImageStore;

    /// Archive entries: (path, content) or a symlink (path, target).
    pub enum Entry<'a> {
        File(&'a str, Vec<u8>),
        Symlink(&'a str, &'a str),
    }

    pub fn archive(entries: Vec<Entry<'_>>) -> Vec<u8> {
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
    pub fn raw_entry(name: &str) -> Vec<u8> {
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

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    pub fn config_for(diff_ids: &[String]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    pub fn assert_empty(store: &ImageStore) {
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(store.blobs_dir()).unwrap().count(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Entry, archive, assert_empty, config_for, raw_entry};
    use super::*;
    use crate::testing::{store, tarball};
    use serde_json::json;

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
