//! Where blobs are known to be: for each blob digest, the repositories (`host/path`) it
//! was pulled from or pushed to, as Docker's distribution metadata keeps them. A push
//! mounts a blob the registry has in another repository instead of uploading it again.
//! Kept in `$BERTH_ROOT/distribution.json`; it is only a hint, so an unreadable file is
//! treated as empty.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::Error;
use crate::ImageStore;
use berth_sys::fs::{self as fsutil, Lock};

/// Repositories remembered per blob (the most recent ones).
const KEEP: usize = 5;

pub(crate) struct Sources {
    path: PathBuf,
    map: BTreeMap<String, Vec<String>>,
}

impl Sources {
    pub fn load(root: &Path) -> Sources {
        let path = root.join("distribution.json");
        let map = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Sources { path, map }
    }

    /// The repository paths of `registry` known to hold `digest`, most recent first.
    pub fn repositories(&self, digest: &str, registry: &str) -> Vec<String> {
        let prefix = format!("{registry}/");
        self.map
            .get(digest)
            .into_iter()
            .flatten()
            .rev()
            .filter_map(|repo| repo.strip_prefix(&prefix).map(String::from))
            .collect()
    }

    /// Records that `repository` (`host/path`) holds `digests`. Entries of blobs the store
    /// no longer has are dropped on the way.
    pub fn record(
        root: &Path,
        store: &ImageStore,
        repository: &str,
        digests: &[String],
    ) -> Result<(), Error> {
        let lock_path = root.join("distribution.lock");
        let _lock = Lock::exclusive(&lock_path).map_err(crate::Error::io("locking", &lock_path))?;
        let mut sources = Sources::load(root);
        for digest in digests {
            let repos = sources.map.entry(digest.clone()).or_default();
            repos.retain(|r| r != repository);
            repos.push(repository.to_string());
            let excess = repos.len().saturating_sub(KEEP);
            repos.drain(..excess);
        }
        sources
            .map
            .retain(|digest, _| store.blob_path(digest).is_ok_and(|p| p.exists()));
        let json = serde_json::to_vec(&sources.map).unwrap_or_default();
        fsutil::write_atomic(&sources.path, &json, false)
            .map_err(crate::Error::io("writing", &sources.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[test]
    fn remembers_recent_repositories_of_blobs_still_stored() {
        let (dir, store) = store();
        let root = dir.path().join("root");
        let kept = crate::blob::sha256(b"{}");
        fs::write(store.blob_path(&kept).unwrap(), b"{}").unwrap();
        let gone = format!("sha256:{}", "0".repeat(64));

        for n in 0..7 {
            let repo = format!("r:5000/repo{n}");
            Sources::record(&root, &store, &repo, &[kept.clone(), gone.clone()]).unwrap();
        }
        Sources::record(&root, &store, "other:1/x", std::slice::from_ref(&kept)).unwrap();
        let sources = Sources::load(&root);
        assert_eq!(
            sources.repositories(&kept, "r:5000"),
            ["repo6", "repo5", "repo4", "repo3"],
            "the most recent first, five in all"
        );
        assert_eq!(sources.repositories(&kept, "other:1"), ["x"]);
        assert!(
            sources.repositories(&gone, "r:5000").is_empty(),
            "not in the store"
        );

        fs::write(root.join("distribution.json"), "garbage").unwrap();
        assert!(
            Sources::load(&root)
                .repositories(&kept, "r:5000")
                .is_empty()
        );
    }
}
