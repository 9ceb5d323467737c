//! Named volumes: directories under `$BERTH_ROOT/volumes/<name>/_data` whose content
//! outlives the containers that mount them.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid volume name \"{0}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by container {container}; remove the container first")]
    InUse { name: String, container: String },
    #[error("volume {name}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    #[serde(with = "berth_sys::record::rfc3339")]
    pub created_at: SystemTime,
}

pub fn validate_name(name: &str) -> Result<(), Error> {
    crate::container::validate_name(name).map_err(|_| Error::InvalidName(name.to_string()))
}

const META: &str = "volume.json";

/// Creates the volume, or returns it if it already exists (as `docker volume create`).
pub fn create(paths: &Paths, name: &str) -> Result<Volume, Error> {
    validate_name(name)?;
    if let Ok(v) = inspect(paths, name) {
        return Ok(v);
    }
    let dir = paths.volumes().join(name);
    let io = |path: PathBuf| {
        move |source| Error::Io {
            name: name.to_string(),
            path,
            source,
        }
    };
    let volume = Volume {
        name: name.to_string(),
        driver: "local".to_string(),
        mountpoint: dir.join("_data"),
        created_at: SystemTime::now(),
    };
    fs::create_dir_all(&volume.mountpoint).map_err(io(volume.mountpoint.clone()))?;
    let meta = dir.join(META);
    berth_sys::fs::write_atomic(
        &meta,
        &serde_json::to_vec_pretty(&volume).expect("volume serializes"),
        true,
    )
    .map_err(io(meta))?;
    Ok(volume)
}

pub fn inspect(paths: &Paths, name: &str) -> Result<Volume, Error> {
    validate_name(name)?;
    let meta = paths.volumes().join(name).join(META);
    match fs::read(&meta) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Io {
            name: name.to_string(),
            path: meta,
            source: io::Error::new(ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(name.to_string())),
        Err(source) => Err(Error::Io {
            name: name.to_string(),
            path: meta,
            source,
        }),
    }
}

pub fn list(paths: &Paths) -> Result<Vec<Volume>, Error> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(paths.volumes()) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(Error::Io {
                name: String::new(),
                path: paths.volumes(),
                source,
            });
        }
    };
    for e in entries.flatten() {
        if let Ok(v) = inspect(paths, &e.file_name().to_string_lossy()) {
            out.push(v);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the volume and its data. `users` are the containers (by name) that mount it.
pub fn remove(paths: &Paths, name: &str, users: &[String]) -> Result<(), Error> {
    inspect(paths, name)?;
    if let Some(container) = users.first() {
        return Err(Error::InUse {
            name: name.to_string(),
            container: container.clone(),
        });
    }
    let dir = paths.volumes().join(name);
    fs::remove_dir_all(&dir).map_err(|source| Error::Io {
        name: name.to_string(),
        path: dir,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::at(dir.path().into(), dir.path().join("run"));
        (dir, p)
    }

    #[test]
    fn create_is_idempotent_and_keeps_data() {
        let (_d, p) = paths();
        let v = create(&p, "data").unwrap();
        fs::write(v.mountpoint.join("f"), "x").unwrap();
        let again = create(&p, "data").unwrap();
        assert_eq!(again.created_at, v.created_at);
        assert_eq!(fs::read_to_string(again.mountpoint.join("f")).unwrap(), "x");
        assert_eq!(list(&p).unwrap().len(), 1);
    }

    #[test]
    fn remove_refuses_while_in_use() {
        let (_d, p) = paths();
        create(&p, "data").unwrap();
        let err = remove(&p, "data", &["web".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume data is in use by container web; remove the container first"
        );
        remove(&p, "data", &[]).unwrap();
        assert!(matches!(inspect(&p, "data"), Err(Error::NotFound(_))));
        assert!(matches!(remove(&p, "data", &[]), Err(Error::NotFound(_))));
    }

    #[test]
    fn bad_names() {
        let (_d, p) = paths();
        assert!(matches!(create(&p, "../x"), Err(Error::InvalidName(_))));
        assert!(matches!(inspect(&p, ""), Err(Error::InvalidName(_))));
    }
}
