//! Registry credentials in Docker's `config.json` format: `{"auths": {"HOST": {"auth":
//! base64("USER:PASSWORD")}}}`. Berth writes `$XDG_CONFIG_HOME/berth/auth.json` (default
//! `~/.config/berth/auth.json`), mode 0600, atomically; it also reads Docker's
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), never writing it.
//! Other keys of the file (`credsStore`, `credHelpers`, ...) are kept as they are.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::Error;
use crate::reference::DEFAULT_DOMAIN;
use berth_sys::fs::Lock;

/// Docker Hub's key in `auths`, as `docker login` writes it.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A username and its password. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where credentials are read from and written to.
#[derive(Clone, Debug)]
pub struct AuthFiles {
    /// Berth's own file: read first, and the only one written.
    pub berth: PathBuf,
    /// Docker's, read when berth's has no entry for a registry.
    pub docker: Option<PathBuf>,
}

impl AuthFiles {
    /// The files the environment names (`XDG_CONFIG_HOME`, `DOCKER_CONFIG`, `HOME`).
    pub fn from_env() -> AuthFiles {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let config = var("XDG_CONFIG_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
            .unwrap_or_else(|| PathBuf::from("/root/.config"));
        let docker = var("DOCKER_CONFIG").or_else(|| home.map(|h| h.join(".docker")));
        AuthFiles {
            berth: config.join("berth").join("auth.json"),
            docker: docker.map(|d| d.join("config.json")),
        }
    }

    /// The credentials for `registry` (`localhost:5000`, `docker.io`), if any file has them.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        for path in std::iter::once(&self.berth).chain(&self.docker) {
            let Some(config) = read(path)? else { continue };
            if let Some(entry) = find(&config, registry) {
                return decode(entry).map(Some).map_err(|reason| Error::BadFile {
                    path: path.clone(),
                    reason: format!("the entry for {registry}: {reason}"),
                });
            }
        }
        Ok(None)
    }

    /// Records `credentials` for `registry` in berth's file.
    pub fn store(&self, registry: &str, credentials: &Credentials) -> Result<(), Error> {
        let auth = BASE64.encode(format!("{}:{}", credentials.username, credentials.password));
        self.update(|auths| {
            auths.retain(|key, _| normalize(key) != registry);
            auths.insert(key_for(registry).to_string(), json!({ "auth": auth }));
            true
        })
    }

    /// Removes the credentials for `registry` from berth's file; whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool, Error> {
        let mut removed = false;
        self.update(|auths| {
            let before = auths.len();
            auths.retain(|key, _| normalize(key) != registry);
            removed = auths.len() != before;
            removed
        })?;
        Ok(removed)
    }

    /// Changes the `auths` of berth's file under a lock, then replaces the file (mode 0600)
    /// if `change` says it changed something.
    fn update(&self, change: impl FnOnce(&mut Map<String, Value>) -> bool) -> Result<(), Error> {
        let path = &self.berth;
        let dir = path.parent().unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(crate::Error::io("creating", dir))?;
        let lock_path = dir.join(".auth.json.lock");
        let _lock = Lock::exclusive(&lock_path).map_err(crate::Error::io("locking", &lock_path))?;
        let mut config = read(path)?.unwrap_or_else(|| json!({}));
        let Some(object) = config.as_object_mut() else {
            return Err(bad_file(path, "it is not a JSON object"));
        };
        let auths = object
            .entry("auths")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| bad_file(path, "\"auths\" is not an object"))?;
        if !change(auths) {
            return Ok(());
        }
        let data =
            serde_json::to_vec_pretty(&config).map_err(|e| bad_file(path, &e.to_string()))?;
        Ok(write_private(path, &data).map_err(crate::Error::io("writing", path))?)
    }
}

fn bad_file(path: &Path, reason: &str) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<Option<Value>, Error> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| bad_file(path, &format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::Error::io("reading", path)(e).into()),
    }
}

/// Replaces `path` with `data` atomically; the file is created 0600 and stays so.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// The entry of `config.auths` for `registry`, whatever form its key has.
fn find<'a>(config: &'a Value, registry: &str) -> Option<&'a Value> {
    let auths = config.get("auths")?.as_object()?;
    auths
        .iter()
        .find(|(key, _)| normalize(key) == registry)
        .map(|(_, entry)| entry)
}

fn decode(entry: &Value) -> Result<Credentials, String> {
    let text = |field: &str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(auth) = text("auth") {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|_| "\"auth\" is not valid base64".to_string())?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| "\"auth\" is not base64 of USER:PASSWORD".to_string())?;
        return Ok(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    match (text("username"), text("password")) {
        (Some(username), Some(password)) => Ok(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }),
        _ => Err("it has no \"auth\" (credential helpers are not supported)".to_string()),
    }
}

/// The registry a key of `auths` is for, as Docker reads keys: any scheme and path are
/// dropped, and Docker Hub's names are `docker.io`.
pub fn normalize(key: &str) -> String {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DEFAULT_DOMAIN,
        other => other,
    }
    .to_string()
}

fn key_for(registry: &str) -> &str {
    if registry == DEFAULT_DOMAIN {
        DOCKER_HUB_KEY
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn files(dir: &Path) -> AuthFiles {
        AuthFiles {
            berth: dir.join("berth/auth.json"),
            docker: Some(dir.join("docker/config.json")),
        }
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn keys_normalize_as_docker_reads_them() {
        for (key, host) in [
            ("localhost:5000", "localhost:5000"),
            ("https://localhost:5000/v2/", "localhost:5000"),
            ("http://r.example.com", "r.example.com"),
            (DOCKER_HUB_KEY, "docker.io"),
            ("registry-1.docker.io", "docker.io"),
        ] {
            assert_eq!(normalize(key), host, "{key}");
        }
        assert_eq!(key_for("docker.io"), DOCKER_HUB_KEY);
    }

    #[test]
    fn store_get_remove_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        assert_eq!(files.get("localhost:5000").unwrap(), None);
        files.store("localhost:5000", &creds("me", "p:ss")).unwrap();
        files.store("docker.io", &creds("hub", "x")).unwrap();
        assert_eq!(
            files.get("localhost:5000").unwrap(),
            Some(creds("me", "p:ss"))
        );
        let meta = fs::metadata(&files.berth).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let text = fs::read_to_string(&files.berth).unwrap();
        assert!(
            !text.contains("p:ss"),
            "the password is only stored encoded"
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["auths"]["localhost:5000"]["auth"],
            BASE64.encode("me:p:ss")
        );
        assert!(json["auths"][DOCKER_HUB_KEY].is_object());

        files.store("localhost:5000", &creds("me", "new")).unwrap();
        assert_eq!(
            files.get("localhost:5000").unwrap(),
            Some(creds("me", "new"))
        );
        assert!(files.remove("localhost:5000").unwrap());
        assert!(!files.remove("localhost:5000").unwrap());
        assert_eq!(files.get("localhost:5000").unwrap(), None);
        assert_eq!(files.get("docker.io").unwrap(), Some(creds("hub", "x")));
        let leftovers: Vec<_> = fs::read_dir(files.berth.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".auth.json.lock"))
            .collect();
        assert_eq!(leftovers, ["auth.json"], "no temporary file left");
    }

    #[test]
    fn docker_config_is_read_and_other_keys_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        fs::create_dir_all(dir.path().join("docker")).unwrap();
        let docker = json!({
            "auths": {
                "https://r.example.com/v1/": {"auth": BASE64.encode("d:pw")},
                "other:1": {"username": "u", "password": "v"},
                "broken:1": {"auth": "%%%"},
            },
            "credsStore": "desktop",
        });
        fs::write(files.docker.as_ref().unwrap(), docker.to_string()).unwrap();
        assert_eq!(files.get("r.example.com").unwrap(), Some(creds("d", "pw")));
        assert_eq!(files.get("other:1").unwrap(), Some(creds("u", "v")));
        let err = files.get("broken:1").unwrap_err().to_string();
        assert!(
            err.contains("not valid base64") && err.contains("config.json"),
            "{err}"
        );

        fs::create_dir_all(dir.path().join("berth")).unwrap();
        fs::write(&files.berth, r#"{"credHelpers":{"x":"y"}}"#).unwrap();
        files.store("r.example.com", &creds("b", "pw2")).unwrap();
        assert_eq!(
            files.get("r.example.com").unwrap(),
            Some(creds("b", "pw2")),
            "berth's first"
        );
        let json: Value = serde_json::from_slice(&fs::read(&files.berth).unwrap()).unwrap();
        assert_eq!(json["credHelpers"]["x"], "y");

        fs::write(&files.berth, "[]").unwrap();
        let err = files.store("a", &creds("b", "c")).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", creds("me", "hunter2"));
        assert!(
            shown.contains("me") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
