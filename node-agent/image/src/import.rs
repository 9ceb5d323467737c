//! `berth import`: a tarball of a root filesystem becomes a one-layer image.

use std::io::{self, Read};
use std::time::SystemTime;

use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, MediaType, Os, RootFsBuilder,
};

use crate::Error;
use crate::blob::{self, Hashing, Tee};
use crate::layer::relative_path;
use crate::reference::Reference;
use crate::store::{Image, ImageStore};

impl ImageStore {
    /// Makes a one-layer image of `tarball` (a root filesystem as a plain or gzip tar
    /// stream; `what` names it in errors) and names it `reference`, if given. The layer is
    /// stored gzip-compressed; its tar is checked entry by entry on the way.
    pub fn import(
        &self,
        tarball: impl Read,
        what: &str,
        reference: Option<&Reference>,
    ) -> Result<Image, Error> {
        let bad = |e: io::Error| Error::bad_input(what, e.to_string());
        let mut staging = self.staging()?;
        let gzip = GzEncoder::new(staging.writer()?, flate2::Compression::default());
        let mut tee = Tee::new(Hashing::new(blob::decompressed(tarball, what)?), gzip);
        let checked = check_tar(&mut tee, what)
            .and_then(|()| io::copy(&mut tee, &mut io::sink()).map(drop).map_err(bad));
        // A failed write also stops the reading: report it rather than what it caused.
        let (tar, gzip) = tee
            .finish()
            .map_err(Error::io("writing a layer in", staging.dir()))?;
        checked?;
        let (_, diff_id, _) = tar.finish();
        let writer = gzip
            .finish()
            .map_err(Error::io("writing a layer in", staging.dir()))?;
        let (layer_digest, layer_size) = staging.add(writer)?;
        let layer = crate::store::descriptor(MediaType::ImageLayerGzip, &layer_digest, layer_size)?;

        let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let config = ImageConfigurationBuilder::default()
            .created(now.clone())
            .architecture(Arch::default())
            .os(Os::default())
            .config(ConfigBuilder::default().build().map_err(spec_bug)?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id])
                    .build()
                    .map_err(spec_bug)?,
            )
            .history(vec![
                HistoryBuilder::default()
                    .created(now)
                    .created_by("berth import")
                    .build()
                    .map_err(spec_bug)?,
            ])
            .build()
            .map_err(spec_bug)?;
        let config_json = serde_json::to_vec(&config).map_err(spec_bug)?;
        let config = staging.add_bytes(MediaType::ImageConfig, &config_json)?;
        let names = reference.into_iter().cloned().collect();
        let image = staging.add_image(config, vec![layer], names)?;
        let mut committed = self.commit(staging, vec![image])?;
        committed
            .pop()
            .ok_or_else(|| Error::Internal("the imported image was not committed".into()))
    }
}

/// Reads `tar` to its end-of-archive marker, refusing entries that would leave the root.
fn check_tar(tar: impl Read, what: &str) -> Result<(), Error> {
    let bad = |e: io::Error| Error::bad_input(what, format!("not a valid tar archive: {e}"));
    let mut archive = tar::Archive::new(tar);
    let mut entries = 0usize;
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?;
        relative_path(&path).map_err(|reason| {
            Error::bad_input(what, format!("entry \"{}\" {reason}", path.display()))
        })?;
        entries += 1;
    }
    if entries == 0 {
        return Err(Error::bad_input(what, "the tar archive is empty"));
    }
    Ok(())
}

/// oci-spec builders fail only when a required field is missing, and serializing them
/// only for maps with non-string keys: neither happens above.
fn spec_bug(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("building an image config: {e}"))
}

#[cfg(test)]
mod tests {
    use crate::testing::{store, tarball};
    use std::fs;

    #[test]
    fn import_refuses_what_is_not_a_rootfs_tarball() {
        let (_dir, store) = store();
        let err = |data: &[u8]| store.import(data, "in.tar", None).unwrap_err().to_string();
        assert!(err(b"").contains("in.tar: the tar archive is empty"));
        assert!(err(&[b'x'; 1024]).contains("not a valid tar archive"));
        let mut evil = tarball(&[("a", b"")]);
        evil[..1].copy_from_slice(b"/");
        let header = tar::Header::from_byte_slice(&evil[..512]).clone();
        let mut fixed = header;
        fixed.set_cksum();
        evil[..512].copy_from_slice(fixed.as_bytes());
        assert!(err(&evil).contains("is an absolute path"), "{}", err(&evil));
        assert!(err(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).contains("zstd"));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(store.paths().tmp()).unwrap().count(), 0);
    }
}
