//! Content plumbing shared by the store, layers and archives: sha256 digests computed while
//! data streams through, and compression recognized by its magic bytes.

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use crate::Error;
use berth_sys::fs::hex;

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// The hex part of a `sha256:<64 lowercase hex>` digest; `None` for anything else,
/// including other algorithms (the store only holds sha256 content).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| crate::reference::is_full_hex_id(hex))
}

/// Counts and hashes what passes through it, in either direction.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    len: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest (`sha256:<hex>`) and length of everything read or written so far.
    pub fn finish(self) -> (T, String, u64) {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (self.inner, digest, self.len)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Which side of a [`copy`] failed.
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` that tells a failing source (a broken archive) from a failing sink (a
/// full disk).
pub fn copy(from: &mut impl Read, to: &mut impl Write) -> Result<u64, CopyError> {
    let mut buf = vec![0; 128 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// A reader that copies what it reads into a writer. A failed write ends the reading
/// and is kept, so that callers can tell a broken input from a failing output.
pub struct Tee<R, W> {
    reader: R,
    writer: W,
    write_error: Option<io::Error>,
}

impl<R: Read, W: Write> Tee<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        Tee {
            reader,
            writer,
            write_error: None,
        }
    }

    /// The reader and writer back, or the error writing hit.
    pub fn finish(self) -> Result<(R, W), io::Error> {
        match self.write_error {
            Some(e) => Err(e),
            None => Ok((self.reader, self.writer)),
        }
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if let Err(e) = self.writer.write_all(&buf[..n]) {
            self.write_error = Some(e);
            return Err(io::Error::other("the copy could not be written"));
        }
        Ok(n)
    }
}

/// How a stream is compressed, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// What [`Compression::sniff`] hands back: the bytes it looked at, then the rest.
pub type Sniffed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

impl Compression {
    /// Reads the first bytes of `reader` and returns them with the rest of the stream.
    /// Compressions berth cannot read are errors that name them, so the user knows what
    /// to convert.
    pub fn sniff<R: Read>(mut reader: R, what: &str) -> Result<(Compression, Sniffed<R>), Error> {
        let mut head = Vec::with_capacity(6);
        (&mut reader)
            .take(6)
            .read_to_end(&mut head)
            .map_err(|e| Error::bad_input(what, e.to_string()))?;
        const UNSUPPORTED: [(&[u8], &str); 3] = [
            (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
            (b"BZh", "bzip2"),
        ];
        if let Some((_, format)) = UNSUPPORTED
            .iter()
            .find(|(magic, _)| head.starts_with(magic))
        {
            return Err(Error::bad_input(
                what,
                format!(
                    "compressed with {format}, which berth cannot read yet; decompress it or \
                     recompress it with gzip"
                ),
            ));
        }
        let compression = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else {
            Compression::None
        };
        Ok((compression, io::Cursor::new(head).chain(reader)))
    }
}

/// `reader` decompressed according to its magic bytes (plain data passes through).
pub fn decompressed<'a>(reader: impl Read + 'a, what: &str) -> Result<Box<dyn Read + 'a>, Error> {
    Ok(match Compression::sniff(reader, what)? {
        (Compression::Gzip, r) => Box::new(MultiGzDecoder::new(r)),
        (Compression::None, r) => Box::new(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    #[test]
    fn hashing_matches_one_shot_digest() {
        let mut w = Hashing::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (buf, digest, len) = w.finish();
        assert_eq!(digest, sha256(b"hello world"));
        assert_eq!(len, 11);
        assert_eq!(buf, b"hello world");
        assert_eq!(
            digest,
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn sha256_hex_accepts_only_sha256() {
        let d = sha256(b"");
        assert_eq!(sha256_hex(&d), Some(&d[7..]));
        assert_eq!(sha256_hex(&d[7..]), None);
        assert_eq!(sha256_hex("sha512:abc"), None);
        assert_eq!(sha256_hex(&d.to_uppercase()), None);
    }

    #[test]
    fn sniffs_compression() {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"payload").unwrap();
        let gz = gz.finish().unwrap();
        let mut out = String::new();
        decompressed(&gz[..], "x")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "payload");

        let mut out = String::new();
        decompressed(&b"plain"[..], "x")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "plain");

        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
        let err = decompressed(&zstd[..], "layer.tar").err().unwrap();
        assert!(err.to_string().contains("zstd"), "{err}");
        assert!(decompressed(&b""[..], "x").is_ok(), "empty input is plain");
    }
}
