//! Layers on disk: each unpacked once per diff id into `layers/<hex>`, read-only from then
//! on, for overlayfs to stack. Unpacking goes to a staging directory that is synced and
//! renamed into place, so a layer directory that exists is a complete one.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use oci_spec::image::Descriptor;

use super::{Error, Image, ImageStore, LAYER_PREFIX, verify};
use crate::blob::{self, Hashing, sha256_hex};
use crate::layer;

impl ImageStore {
    /// The image's layers unpacked on disk, lowest first, unpacking any not yet there.
    /// Safe to call concurrently for the same layers: each is unpacked into a temporary
    /// directory and renamed into place; a loser of the race discards its copy.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, Error> {
        image
            .layers()?
            .into_iter()
            .map(|(layer, diff_id)| {
                let hex = sha256_hex(diff_id).ok_or_else(|| {
                    Error::corrupt(
                        format!("image {}", image.id),
                        format!("invalid diff id {diff_id}"),
                    )
                })?;
                let dir = self.paths.layers().join(hex);
                if !dir.exists() {
                    self.unpack_layer(layer, diff_id, &dir)?;
                }
                Ok(dir)
            })
            .collect()
    }

    fn unpack_layer(&self, layer: &Descriptor, diff_id: &str, dir: &Path) -> Result<(), Error> {
        let digest = layer.digest().to_string();
        let what = format!("layer {digest}");
        let mut compressed = Hashing::new(BufReader::new(self.open_blob(&digest)?));
        let tmp = self.staging_dir(LAYER_PREFIX)?;
        // The layer's own `./` entry, if it has one, sets the mode of its root.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(Error::io("changing mode of", tmp.path()))?;
        let unpacked = (|| {
            let mut tar = Hashing::new(blob::decompressed(&mut compressed, &what)?);
            layer::unpack(&mut tar, tmp.path(), diff_id)?;
            // The diff id covers the whole stream, including what follows the tar's end.
            io::copy(&mut tar, &mut io::sink())
                .map_err(|e| Error::bad_input(&what, e.to_string()))?;
            Ok::<_, Error>(tar.finish().1)
        })();
        // Whether or not it unpacked, a blob whose bytes changed is a corrupt store, not a
        // bad image.
        let path = self.blob_path(&digest)?;
        io::copy(&mut compressed, &mut io::sink()).map_err(Error::io("reading", &path))?;
        let (_, actual_digest, _) = compressed.finish();
        if actual_digest != digest {
            return Err(Error::corrupt(
                what,
                format!("{} no longer matches its digest", path.display()),
            ));
        }
        verify(&format!("{what} (uncompressed)"), diff_id, &unpacked?)?;
        // One syncfs rather than an fsync per file: after a crash, a layer directory in
        // place is a complete one.
        sync_filesystem(tmp.path())?;
        // When another unpacker got there first, its copy is as good as ours.
        if move_into_place(tmp.path(), dir)? {
            let _in_place = tmp.keep();
        }
        Ok(())
    }
}

/// Flushes the filesystem holding `dir` to disk.
pub(crate) fn sync_filesystem(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|dir| nix::unistd::syncfs(&dir).map_err(io::Error::from))
        .map_err(Error::io("syncing", dir))
}

/// Renames the directory `from` to `to` unless `to` exists; returns whether it did.
/// Layer directories are named by content, so an existing one holds the same files.
pub(crate) fn move_into_place(from: &Path, to: &Path) -> Result<bool, Error> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(Error::io("moving into place", to)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{import, store};
    use std::sync::Arc;

    #[test]
    fn layers_unpack_once_even_when_raced() {
        let (_dir, store) = store();
        let image = import(&store, "raced", Some("raced"));
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, image) = (Arc::clone(&store), image.clone());
                std::thread::spawn(move || store.layer_dirs(&image).unwrap())
            })
            .collect();
        let results: Vec<Vec<PathBuf>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(results.iter().all(|dirs| dirs == &results[0]));
        let dir = &results[0][0];
        assert_eq!(dir, &store.paths.layers().join(&image.diff_ids()[0][7..]));
        assert_eq!(
            fs::read_to_string(dir.join("etc/hostname")).unwrap(),
            "raced"
        );
        assert_eq!(fs::read_dir(store.paths.layers()).unwrap().count(), 1);
        assert_eq!(
            fs::read_dir(store.paths.tmp()).unwrap().count(),
            0,
            "losers clean up"
        );
    }

    #[test]
    fn a_changed_layer_blob_is_reported_as_corrupt() {
        let (_dir, store) = store();
        let image = import(&store, "x", Some("x"));
        let layer = store
            .blob_path(image.manifest.layers()[0].digest().as_ref())
            .unwrap();
        let mut bytes = fs::read(&layer).unwrap();
        let last = bytes.len() - 9; // inside the gzip trailer's CRC
        bytes[last] ^= 0xff;
        fs::write(&layer, bytes).unwrap();
        let err = store.layer_dirs(&image).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("no longer matches its digest"),
            "{err}"
        );
        assert_eq!(fs::read_dir(store.paths.layers()).unwrap().count(), 0);
    }
}
