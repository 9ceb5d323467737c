//! A connection to one registry: an oci-client `Client` set up for the registry's TLS
//! settings and credentials, with retries and backoff for transient failures, the
//! fallback Docker allows insecure registries (HTTPS without verification, then plain
//! HTTP), and oci-client's errors turned into berth's.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::auth::AuthFiles;
use super::progress::Progress;
use super::{Error, Reference};

/// Attempts per request before a transient failure is reported, and the first backoff
/// (doubled after each attempt).
const ATTEMPTS: u32 = 4;
const BACKOFF: Duration = Duration::from_millis(250);

/// How berth reaches registries: TLS settings and where credentials are.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--tls-verify`: `Some(true)` requires verified HTTPS even for loopback registries,
    /// `Some(false)` allows unverified HTTPS and plain HTTP; `None` allows them only for
    /// loopback registries and those in `insecure`.
    pub tls_verify: Option<bool>,
    pub auth: AuthFiles,
    /// Directories holding `<host:port>/*.crt` CA certificates, in the order tried.
    pub cert_dirs: Vec<PathBuf>,
    /// Registries (`host:port`) that may be reached insecurely (`BERTH_INSECURE_REGISTRIES`).
    pub insecure: Vec<String>,
}

impl Options {
    /// Berth's settings from the environment: `$XDG_CONFIG_HOME/berth/certs.d` (default
    /// `~/.config/berth/certs.d`), then Docker's `/etc/docker/certs.d` and Podman's
    /// `/etc/containers/certs.d`; `BERTH_INSECURE_REGISTRIES`, comma-separated.
    pub fn from_env(tls_verify: Option<bool>) -> Options {
        let auth = AuthFiles::from_env();
        let berth_config = auth.berth.parent().unwrap_or(Path::new("/")).to_path_buf();
        let insecure = std::env::var("BERTH_INSECURE_REGISTRIES").unwrap_or_default();
        Options {
            tls_verify,
            auth,
            cert_dirs: vec![
                berth_config.join("certs.d"),
                "/etc/docker/certs.d".into(),
                "/etc/containers/certs.d".into(),
            ],
            insecure: insecure
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
    }

    fn allows_insecure(&self, registry: &str) -> bool {
        match self.tls_verify {
            Some(verify) => !verify,
            None => is_loopback(registry) || self.insecure.iter().any(|r| r == registry),
        }
    }

    /// The PEM certificates in `<dir>/<registry>/*.crt` of each certificate directory.
    fn certificates(&self, registry: &str) -> Result<Vec<Certificate>, Error> {
        let mut certificates = Vec::new();
        for dir in &self.cert_dirs {
            let dir = dir.join(registry);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(crate::Error::io("listing", dir)(e).into()),
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            paths.sort();
            for path in paths {
                let data = fs::read(&path).map_err(crate::Error::io("reading", &path))?;
                certificates.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
        Ok(certificates)
    }
}

/// Whether `registry` (`host[:port]`) is on the loopback interface, which Docker always
/// lets be reached insecurely.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Verified,
    Unverified,
    Plain,
}

/// What a request attempt ends with, when not with its value.
pub(crate) enum Failure {
    /// The registry or the network: classified, maybe retried.
    Registry(OciDistributionError),
    /// Anything else (a full disk): reported at once.
    Fatal(Error),
}

impl From<OciDistributionError> for Failure {
    fn from(e: OciDistributionError) -> Failure {
        Failure::Registry(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Fatal(e)
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        Failure::Fatal(e.into())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Tls,
    Transient,
    Unauthorized,
    NotFound,
    Digest,
    Other,
}

/// One registry, reached with one set of credentials.
pub(crate) struct Registry {
    host: String,
    auth: RegistryAuth,
    transports: Vec<Transport>,
    current: AtomicUsize,
    clients: Mutex<HashMap<usize, Client>>,
    certificates: Vec<Certificate>,
    ca_dir: PathBuf,
    progress: Progress,
}

impl Registry {
    /// `host` with the credentials the auth files have for it (or `credentials`).
    pub fn new(
        host: &str,
        options: &Options,
        credentials: Option<super::Credentials>,
        progress: &Progress,
    ) -> Result<Registry, Error> {
        // A second installation (in another thread) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = match credentials {
            Some(c) => Some(c),
            None => options.auth.get(host)?,
        };
        let auth = credentials.map_or(RegistryAuth::Anonymous, |c| {
            RegistryAuth::Basic(c.username, c.password)
        });
        let transports = if options.allows_insecure(host) {
            vec![Transport::Verified, Transport::Unverified, Transport::Plain]
        } else {
            vec![Transport::Verified]
        };
        Ok(Registry {
            host: host.to_string(),
            auth,
            transports,
            current: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            certificates: options.certificates(host)?,
            ca_dir: options
                .cert_dirs
                .first()
                .cloned()
                .unwrap_or_default()
                .join(host),
            progress: progress.clone(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// `reference` as oci-client names it (its registry must be this one).
    pub fn oci(&self, reference: &Reference) -> oci_client::Reference {
        let (host, path) = (self.host.clone(), reference.path().to_string());
        match (reference.tag(), reference.digest()) {
            (Some(tag), Some(digest)) => {
                oci_client::Reference::with_tag_and_digest(host, path, tag.into(), digest.into())
            }
            (None, Some(digest)) => oci_client::Reference::with_digest(host, path, digest.into()),
            (tag, None) => oci_client::Reference::with_tag(
                host,
                path,
                tag.unwrap_or(crate::reference::DEFAULT_TAG).into(),
            ),
        }
    }

    /// The client for the transport in use, made on first use.
    async fn client(&self, index: usize) -> Result<Client, Error> {
        let existing = self.lock_clients().get(&index).cloned();
        let client = match existing {
            Some(client) => client,
            None => {
                let transport = self.transports[index];
                let config = ClientConfig {
                    protocol: match transport {
                        Transport::Plain => ClientProtocol::Http,
                        _ => ClientProtocol::Https,
                    },
                    accept_invalid_certificates: transport == Transport::Unverified,
                    extra_root_certificates: self.certificates.clone(),
                    use_monolithic_push: true,
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(60)),
                    user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
                    ..ClientConfig::default()
                };
                let client = Client::try_from(config).map_err(|e| Error::Registry {
                    registry: self.host.clone(),
                    what: "setting up the connection".into(),
                    reason: describe(&e),
                })?;
                self.lock_clients().insert(index, client.clone());
                client
            }
        };
        // oci-client keys credentials by the host it talks to (Docker Hub's differs).
        let probe = oci_client::Reference::with_tag(self.host.clone(), "x".into(), "x".into());
        client
            .store_auth_if_needed(probe.resolve_registry(), &self.auth)
            .await;
        Ok(client)
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `attempt` until it succeeds, retrying transient failures with backoff and
    /// moving to the next transport after a TLS failure (insecure registries only).
    /// `what` names the object in errors and notes.
    pub async fn call<T>(
        &self,
        what: &str,
        attempt: impl AsyncFn(&Client) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        let mut tries = 0;
        loop {
            let index = self.current.load(Ordering::SeqCst);
            let client = self.client(index).await?;
            let err = match attempt(&client).await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Registry(e)) => e,
            };
            match classify(&err) {
                Class::Tls if index + 1 < self.transports.len() => {
                    let _ = self.current.compare_exchange(
                        index,
                        index + 1,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
                Class::Transient if tries + 1 < ATTEMPTS => {
                    let delay = BACKOFF * 2u32.pow(tries);
                    self.progress.note(&format!(
                        "{what}: {}; retrying in {} ms",
                        describe(&err),
                        delay.as_millis()
                    ));
                    tokio::time::sleep(delay).await;
                    tries += 1;
                }
                _ => return Err(self.error(what, err)),
            }
        }
    }

    /// Checks that the registry accepts the credentials (`berth login`): a token from its
    /// token service, or, for registries with HTTP basic auth, an authenticated request.
    pub async fn check_login(&self) -> Result<(), Error> {
        let probe = self.oci(&Reference::parse(&format!("{}/berth/login", self.host))?);
        let what = "logging in";
        let token = self
            .call(what, async |c| {
                Ok(c.auth(&probe, &self.auth, RegistryOperation::Pull).await?)
            })
            .await?;
        if token.is_some() {
            return Ok(());
        }
        match self
            .call(what, async |c| {
                Ok(c.catalog(&probe, &self.auth, Some(1), None).await?)
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ (Error::Refused { .. } | Error::LoginRequired { .. })) => Err(e),
            Err(e @ (Error::Unreachable { .. } | Error::Tls { .. })) => Err(e),
            // A registry without the catalog API, but it let us in.
            Err(_) => Ok(()),
        }
    }

    fn error(&self, what: &str, err: OciDistributionError) -> Error {
        let registry = self.host.clone();
        match classify(&err) {
            Class::Tls => Error::Tls {
                registry,
                reason: describe(&err),
                ca_dir: self.ca_dir.display().to_string(),
            },
            Class::Unauthorized if matches!(self.auth, RegistryAuth::Anonymous) => {
                Error::LoginRequired { registry }
            }
            Class::Unauthorized => Error::Refused { registry },
            Class::NotFound => Error::NotFound {
                reference: what.to_string(),
                reason: describe(&err),
            },
            Class::Digest => match find::<DigestError>(&err) {
                Some(DigestError::VerificationError { expected, actual }) => {
                    Error::DigestMismatch {
                        what: what.to_string(),
                        expected: expected.clone(),
                        actual: actual.clone(),
                    }
                }
                _ => Error::Registry {
                    registry,
                    what: what.to_string(),
                    reason: describe(&err),
                },
            },
            _ if is_connect(&err) => Error::Unreachable {
                registry,
                reason: describe(&err),
            },
            _ => Error::Registry {
                registry,
                what: what.to_string(),
                reason: describe(&err),
            },
        }
    }
}

/// Each error of `err`'s chain, looking inside `io::Error`s too (whose `source` skips
/// the error they wrap, as oci-client's transparent variants skip theirs).
fn chain(err: &OciDistributionError) -> Vec<&(dyn StdError + 'static)> {
    let mut all = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(match err {
        OciDistributionError::IoError(e) => e,
        OciDistributionError::RequestError(e) => e,
        other => other,
    });
    while let Some(e) = next {
        all.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    all
}

fn find<T: StdError + 'static>(err: &OciDistributionError) -> Option<&T> {
    chain(err).into_iter().find_map(|e| e.downcast_ref::<T>())
}

fn is_connect(err: &OciDistributionError) -> bool {
    matches!(err, OciDistributionError::RequestError(r) if r.is_connect())
}

fn classify(err: &OciDistributionError) -> Class {
    if find::<rustls::Error>(err).is_some() {
        return Class::Tls;
    }
    if find::<DigestError>(err).is_some() {
        return Class::Digest;
    }
    let by_status = |code: u16| match code {
        401 => Class::Unauthorized,
        404 => Class::NotFound,
        408 | 429 | 500..=599 => Class::Transient,
        _ => Class::Other,
    };
    match err {
        OciDistributionError::RequestError(r) => match r.status() {
            Some(status) => by_status(status.as_u16()),
            None if r.is_builder() || r.is_redirect() || r.is_decode() => Class::Other,
            None => Class::Transient,
        },
        OciDistributionError::IoError(_) => Class::Transient,
        OciDistributionError::ServerError { code, .. } => by_status(*code),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Class::Unauthorized,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Class::Unauthorized
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::NameUnknown
                        | OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                Class::NotFound
            } else {
                Class::Other
            }
        }
        _ => Class::Other,
    }
}

/// A one-line account of `err` for people: the registry's own messages, or the
/// innermost cause of a network failure.
fn describe(err: &OciDistributionError) -> String {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => {
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| match e.message.as_str() {
                    "" => format!("{:?}", e.code),
                    message => message.to_string(),
                })
                .collect();
            messages.join("; ")
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let message: String = message.trim().chars().take(200).collect();
            if message.is_empty() {
                format!("HTTP status {code}")
            } else {
                format!("HTTP status {code}: {message}")
            }
        }
        OciDistributionError::UnauthorizedError { .. } => "unauthorized".to_string(),
        _ => {
            let causes = chain(err);
            let innermost = causes.last().map(|e| e.to_string()).unwrap_or_default();
            match causes.first() {
                Some(first) if causes.len() > 1 && !innermost.is_empty() => {
                    // reqwest's outer message names the URL; the inner says what happened.
                    let outer = first.to_string();
                    let outer = outer
                        .split(" for url ")
                        .next()
                        .unwrap_or(&outer)
                        .to_string();
                    format!("{outer}: {innermost}")
                }
                _ => err.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fe80::1]",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn insecure_is_loopback_or_configured_unless_the_flag_says() {
        let mut options = Options::from_env(None);
        options.insecure = vec!["r.example.com:5000".into()];
        assert!(options.allows_insecure("127.0.0.1:5000"));
        assert!(options.allows_insecure("r.example.com:5000"));
        assert!(!options.allows_insecure("r.example.com"));
        options.tls_verify = Some(true);
        assert!(!options.allows_insecure("127.0.0.1:5000"));
        options.tls_verify = Some(false);
        assert!(options.allows_insecure("quay.io"));
    }

    #[test]
    fn certificates_come_from_each_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::from_env(None);
        options.cert_dirs = vec![dir.path().join("a"), dir.path().join("b")];
        for (sub, name) in [("a", "ca.crt"), ("b", "other.crt"), ("b", "client.key")] {
            let host_dir = dir.path().join(sub).join("r:5000");
            fs::create_dir_all(&host_dir).unwrap();
            fs::write(host_dir.join(name), name).unwrap();
        }
        let found: Vec<Vec<u8>> = options
            .certificates("r:5000")
            .unwrap()
            .into_iter()
            .map(|c| c.data)
            .collect();
        assert_eq!(found, [b"ca.crt".to_vec(), b"other.crt".to_vec()]);
        assert!(options.certificates("elsewhere").unwrap().is_empty());
    }

    #[test]
    fn errors_are_classified() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert_eq!(classify(&server(503)), Class::Transient);
        assert_eq!(classify(&server(429)), Class::Transient);
        assert_eq!(classify(&server(404)), Class::NotFound);
        assert_eq!(classify(&server(400)), Class::Other);
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        let err = OciDistributionError::RegistryError {
            envelope,
            url: "u".into(),
        };
        assert_eq!(classify(&err), Class::NotFound);
        assert_eq!(describe(&err), "manifest unknown");
        let digest =
            OciDistributionError::IoError(io::Error::other(DigestError::VerificationError {
                expected: "a".into(),
                actual: "b".into(),
            }));
        assert_eq!(
            classify(&digest),
            Class::Digest,
            "a wrong digest is not retried"
        );
        let cut = OciDistributionError::IoError(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(classify(&cut), Class::Transient);
        let tls = OciDistributionError::IoError(io::Error::other(rustls::Error::DecryptError));
        assert_eq!(classify(&tls), Class::Tls);
    }
}
