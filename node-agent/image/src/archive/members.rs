//! The files of an archive being loaded, each staged as a blob as the tar stream is read,
//! and found again by path through the symlinks and hard links the archive has.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::Error;
use crate::blob::{self, CopyError};
use crate::layer::relative_path;
use crate::store::Staging;

/// A file of the archive, staged.
#[derive(Clone, Debug)]
pub(super) struct Member {
    pub(super) digest: String,
    pub(super) size: u64,
}

/// The files of an archive, staged as blobs, by their path in the archive.
pub(super) struct Members {
    files: BTreeMap<PathBuf, Member>,
    /// Symlinks and hard links: path -> the path they point to (both archive-relative).
    links: BTreeMap<PathBuf, PathBuf>,
}

impl Members {
    pub(super) fn extract(reader: impl Read, staging: &mut Staging) -> Result<Members, Error> {
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

    pub(super) fn has(&self, path: &str) -> bool {
        self.get(path).is_ok()
    }

    /// The file at `path`, following links.
    pub(super) fn get(&self, path: &str) -> Result<&Member, Error> {
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
    pub(super) fn read(&self, staging: &Staging, path: &str) -> Result<(Member, Vec<u8>), Error> {
        let member = self.get(path)?;
        Ok((member.clone(), contents(staging, member)?))
    }
}

pub(super) fn contents(staging: &Staging, member: &Member) -> Result<Vec<u8>, Error> {
    let staged = staged_path(staging, member)?;
    fs::read(staged).map_err(Error::io("reading", staged))
}

pub(super) fn staged_path<'a>(staging: &'a Staging, member: &Member) -> Result<&'a Path, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
