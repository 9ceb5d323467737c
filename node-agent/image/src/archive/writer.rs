//! Writing an archive's tar stream.

use std::io::{self, Read, Write};

use crate::Error;
use crate::blob::Hashing;

/// A tar archive being written, with the entry metadata every tool accepts.
pub(super) struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> ArchiveWriter<W> {
    pub(super) fn new(out: W) -> Self {
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

    pub(super) fn dir(&mut self, path: &str) -> Result<(), Error> {
        let mut header = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.append(&mut header, &format!("{path}/"), io::empty())
    }

    pub(super) fn file(&mut self, path: &str, data: &[u8]) -> Result<(), Error> {
        self.file_from(path, data.len() as u64, data)
    }

    pub(super) fn file_from(
        &mut self,
        path: &str,
        size: u64,
        data: impl Read,
    ) -> Result<(), Error> {
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

    pub(super) fn finish(self) -> Result<(), Error> {
        self.tar
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(Error::io("writing", "the archive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_owned_by_root_at_time_zero_and_short_sources_are_errors() {
        let mut out = Vec::new();
        let mut tar = ArchiveWriter::new(&mut out);
        tar.dir("blobs").unwrap();
        tar.file("index.json", b"{}").unwrap();
        let err = tar.file_from("short", 10, &b"abc"[..]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("expected 10 bytes, read 3"),
            "{err}"
        );
        drop(tar);

        let mut archive = tar::Archive::new(&out[..]);
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .take(2)
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                let path = e.path().unwrap().display().to_string();
                (path, h.mode().unwrap(), h.mtime().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("blobs/".to_string(), 0o755, 0),
                ("index.json".to_string(), 0o644, 0)
            ]
        );
    }
}
