//! ADD of a URL: the file is fetched into a directory of the build's, and checked against
//! `--checksum=sha256:...` when given.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::context::FileKind;
use crate::copy::{self, Source};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fetching {url}: {source}")]
    Name {
        url: String,
        #[source]
        source: copy::Error,
    },
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("fetching {url}: the server answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("fetching {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: the content's digest is {actual}, but --checksum says {expected}")]
    Checksum {
        url: String,
        actual: String,
        expected: String,
    },
}

/// The name a URL's file gets: its last path component.
fn file_name(url: &str) -> &str {
    url.split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("download")
}

/// Fetches `url` into `dir` (mode 0600, as Docker leaves it).
pub fn download(url: &str, checksum: Option<&str>, dir: &Path) -> Result<Source, Error> {
    let name = file_name(url).to_string();
    copy::plain_name(&name).map_err(|source| Error::Name {
        url: url.into(),
        source,
    })?;
    let io = |source| Error::Io {
        url: url.into(),
        source,
    };
    let http = |source| Error::Http {
        url: url.into(),
        source,
    };
    // A second installation (by the registry client) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let body = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(http)?;
        let response = client.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(Error::Status {
                url: url.into(),
                status: response.status(),
            });
        }
        response.bytes().await.map_err(http)
    })?;
    if let Some(expected) = checksum {
        let actual = berth_image::blob::sha256(&body);
        if actual != expected {
            return Err(Error::Checksum {
                url: url.into(),
                actual,
                expected: expected.into(),
            });
        }
    }
    let path = dir.join(&name);
    fs::write(&path, &body).map_err(io)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(Source {
        path,
        name,
        kind: FileKind::File,
        children: Vec::new(),
        extract: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_named_after_the_url_path() {
        assert_eq!(
            file_name("https://example.com/a/f.tar.gz?x=1#y"),
            "f.tar.gz"
        );
        assert_eq!(file_name("https://example.com/"), "download");
        let dir = tempfile::tempdir().unwrap();
        let err = download("https://example.com/..", None, dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("fetching https://example.com/..: \"..\" cannot name a file"),
            "{err}"
        );
    }
}
