//! Pull, push, login and logout against a real registry: Debian's `docker-registry` (the
//! CNCF distribution registry), started by each test on 127.0.0.1 with a storage
//! directory of its own, in plain HTTP or with TLS and htpasswd; skopeo on the other
//! side. Needs the Debian packages docker-registry, apache2-utils (htpasswd), skopeo and
//! openssl.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{Env, free_port};
use serde_json::{Value, json};
use sha2::Digest as _;

const USER: &str = "berth-user";
const PASSWORD: &str = "s3cret-Pa55word";

/// A registry process, stopped when dropped (also when the test fails).
struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    tls: bool,
}

impl Registry {
    fn plain() -> Registry {
        Registry::start(false)
    }

    /// TLS with a certificate from a CA of the test's own (`ca.crt` in its directory), and
    /// htpasswd authentication for `USER`/`PASSWORD`.
    fn secure() -> Registry {
        Registry::start(true)
    }

    fn start(tls: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        if tls {
            make_certificates(dir.path());
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (Debian's apache2-utils) must be installed");
            assert!(out.status.success());
            fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
        }
        let mut registry = Registry {
            child: None,
            port: 0,
            dir,
            tls,
        };
        // Another process may take the free port first: try a few.
        for _ in 0..5 {
            registry.port = free_port();
            if registry.launch() {
                return registry;
            }
        }
        panic!(
            "the registry did not start: {}",
            fs::read_to_string(registry.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn launch(&mut self) -> bool {
        let d = self.dir.path().display();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: \
             {d}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
            self.port
        );
        if self.tls {
            config += &format!(
                "  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\nauth:\n  \
                 htpasswd:\n    realm: berth-test\n    path: {d}/htpasswd\n"
            );
        }
        let config_path = self.dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(self.dir.path().join("log")).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian's docker-registry) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            assert!(Instant::now() < deadline, "the registry did not listen");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate, alone in its directory (skopeo's `--cert-dir` would take the
    /// key beside it for a client certificate).
    fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// Where the registry keeps the blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// skopeo's flags for this registry, as source (`src`) or destination (`dest`).
    fn skopeo_flags(&self, side: &str) -> Vec<String> {
        if self.tls {
            vec![
                format!(
                    "--{side}-cert-dir={}",
                    self.dir.path().join("certs").display()
                ),
                format!("--{side}-creds={USER}:{PASSWORD}"),
            ]
        } else {
            vec![format!("--{side}-tls-verify=false")]
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA, and a certificate it signed for 127.0.0.1.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=berth test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    fs::create_dir(dir.join("certs")).unwrap();
    fs::copy(dir.join("ca.crt"), dir.join("certs/ca.crt")).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn skopeo(args: &[String]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The manifest digest skopeo reads for `reference` in `registry`.
fn remote_digest(registry: &Registry, reference: &str) -> String {
    let mut args = strings(&["inspect"]);
    args.extend(
        registry
            .skopeo_flags("src")
            .iter()
            .map(|f| f.replace("--src-", "--")),
    );
    args.push(format!("docker://{reference}"));
    let info: Value = serde_json::from_str(&skopeo(&args)).unwrap();
    info["Digest"].as_str().unwrap().to_string()
}

/// The digest `berth push` printed (`TAG: digest: sha256:... size: N`).
fn pushed_digest(output: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.contains(": digest: "))
        .unwrap_or_else(|| panic!("no digest in {output}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

/// No image, no blob and nothing in `tmp/`: what a failed pull must leave in a fresh store.
fn assert_store_empty(berth: &Env) {
    let paths = berth.paths();
    let count = |dir: PathBuf| fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count(paths.images().join("blobs/sha256")), 0, "blobs left");
    assert_eq!(count(paths.tmp()), 0, "temporary files left");
    assert_eq!(berth.ok(&["images", "-q"]), "");
}

/// Installs the test CA where berth looks for `registry`'s CAs.
fn trust(berth: &Env, registry: &Registry) -> PathBuf {
    let dir = berth
        .config_home()
        .join("berth/certs.d")
        .join(registry.host());
    fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.crt");
    fs::copy(registry.ca(), &ca).unwrap();
    ca
}

fn login(berth: &Env, registry: &Registry, password: &str) -> common::Run {
    berth.berth_with(
        &["login", "-u", USER, "--password-stdin", &registry.host()],
        Some(format!("{password}\n").as_bytes()),
    )
}

#[test]
fn push_then_skopeo_then_pull_over_plain_http() {
    let registry = Registry::plain();
    let host = registry.host();
    let berth = Env::new();
    let name = format!("{host}/me/base:latest");
    berth.ok(&["tag", "base:latest", &name]);

    let out = berth.ok(&["push", &name]);
    assert!(
        out.contains(&format!("The push refers to repository [{host}/me/base]")),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = pushed_digest(&out);
    assert_eq!(berth.inspect(&name)["ManifestDigest"], digest.as_str());
    assert_eq!(
        remote_digest(&registry, &name),
        digest,
        "skopeo sees what berth pushed"
    );

    let again = berth.ok(&["push", &name]);
    assert!(again.contains(": Layer already exists"), "{again}");
    assert_eq!(pushed_digest(&again), digest);

    let other_repo = format!("{host}/me/mounted:v1");
    berth.ok(&["tag", "base:latest", &other_repo]);
    let out = berth.ok(&["push", &other_repo]);
    assert!(out.contains(": Mounted from me/base"), "{out}");

    let copied = format!("{host}/copied/base:v2");
    let mut args = strings(&["copy"]);
    args.extend(registry.skopeo_flags("src"));
    args.extend(registry.skopeo_flags("dest"));
    args.extend([format!("docker://{name}"), format!("docker://{copied}")]);
    skopeo(&args);

    let fresh = Env::empty();
    let out = fresh.ok(&["pull", &copied]);
    assert!(out.contains(": Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {copied}")),
        "{out}"
    );
    assert_eq!(fresh.inspect(&copied)["Id"], berth.inspect(&name)["Id"]);
    assert_eq!(fresh.inspect(&copied)["ManifestDigest"], digest.as_str());

    let by_digest = format!("{host}/me/base@{digest}");
    let out = fresh.ok(&["pull", &by_digest]);
    assert!(out.contains(": Already exists"), "{out}");
    assert_eq!(fresh.inspect(&by_digest)["ManifestDigest"], digest.as_str());
    let out = fresh.ok(&["pull", &copied]);
    assert!(out.contains("Status: Image is up to date"), "{out}");

    assert_eq!(fresh.ok(&["run", "--rm", &copied, "echo", "hi"]), "hi\n");
    berth.assert_clean();
    fresh.assert_clean();
}

#[test]
fn images_pushed_by_skopeo_are_pulled_and_run() {
    let registry = Registry::plain();
    let host = registry.host();
    let berth = Env::new();
    let archive = berth.file("base.tar");
    berth.ok(&["save", "-o", archive.to_str().unwrap(), "base:latest"]);
    let name = format!("{host}/sk/base:v1");
    let mut args = strings(&["copy"]);
    args.extend(registry.skopeo_flags("dest"));
    args.extend([
        format!("docker-archive:{}", archive.display()),
        format!("docker://{name}"),
    ]);
    skopeo(&args);

    // `run` pulls what it does not have, on standard error.
    let fresh = Env::empty();
    let run = fresh.berth(&["run", "--rm", &name, "echo", "hi"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "hi\n");
    assert!(
        run.stderr
            .contains(&format!("Unable to find image '{name}' locally")),
        "{}",
        run.stderr
    );
    assert_eq!(
        fresh.inspect(&name)["ManifestDigest"],
        remote_digest(&registry, &name).as_str()
    );
    assert_eq!(
        fresh.inspect(&name)["Id"],
        berth.inspect("base:latest")["Id"]
    );

    // A multi-platform image: an OCI index, from which berth takes linux/amd64.
    let layout = berth.file("layout");
    let oci_archive = berth.file("base-oci.tar");
    berth.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci_archive.to_str().unwrap(),
        "base:latest",
    ]);
    fs::create_dir(&layout).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&oci_archive)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = &index["manifests"][0];
    let entry = |arch: &str| {
        json!({
            "mediaType": manifest["mediaType"], "digest": manifest["digest"], "size": manifest["size"],
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let image_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("arm64"), entry("amd64")],
    }))
    .unwrap();
    let index_digest = format!("sha256:{:x}", sha2::Sha256::digest(&image_index));
    fs::write(
        layout.join("blobs/sha256").join(&index_digest[7..]),
        &image_index,
    )
    .unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
        "size": image_index.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]});
    fs::write(layout.join("index.json"), top.to_string()).unwrap();
    let multi = format!("{host}/sk/multi:v1");
    let mut args = strings(&["copy", "--multi-arch", "all"]);
    args.extend(registry.skopeo_flags("dest"));
    args.extend([
        format!("oci:{}:multi", layout.display()),
        format!("docker://{multi}"),
    ]);
    skopeo(&args);
    let mut args = strings(&["inspect", "--raw", "--tls-verify=false"]);
    args.push(format!("docker://{multi}"));
    let raw = skopeo(&args);
    assert!(raw.contains("\"manifests\""), "an index: {raw}");
    let remote_index = format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes()));
    let out = fresh.ok(&["pull", &multi]);
    assert!(out.contains(&format!("Digest: {remote_index}")), "{out}");
    let remote: Value = serde_json::from_str(&raw).unwrap();
    let amd64 = remote["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    assert_eq!(fresh.inspect(&multi)["ManifestDigest"], amd64["digest"]);
    berth.assert_clean();
    fresh.assert_clean();
}

#[test]
fn tls_and_htpasswd_login_push_pull_logout() {
    let registry = Registry::secure();
    let host = registry.host();
    let berth = Env::new();
    let name = format!("{host}/me/base:latest");
    berth.ok(&["tag", "base:latest", &name]);

    // Verified TLS needs the CA.
    let err = berth.fails(&["push", "--tls-verify", &name], 125);
    assert!(err.contains("secure connection failed"), "{err}");
    assert!(err.contains("certs.d"), "{err}");
    trust(&berth, &registry);

    let err = berth.fails(&["push", "--tls-verify", &name], 125);
    assert!(
        err.contains(&format!("requires a login: run `berth login {host}`")),
        "{err}"
    );

    let wrong = login(&berth, &registry, "not-the-password");
    assert_eq!(wrong.code, 125, "{}", wrong.stdout);
    assert!(
        wrong.stderr.contains("refused the credentials"),
        "{}",
        wrong.stderr
    );
    let auth_file = berth.config_home().join("berth/auth.json");
    assert!(!auth_file.exists(), "nothing stored after a failed login");

    let ok = login(&berth, &registry, PASSWORD);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.stdout, "Login Succeeded\n");
    let mode = fs::metadata(&auth_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = fs::read_to_string(&auth_file).unwrap();
    assert!(!stored.contains(PASSWORD), "the password is stored encoded");
    assert!(stored.contains(&host));

    let out = berth.ok(&["push", "--tls-verify=true", &name]);
    let digest = pushed_digest(&out);
    assert_eq!(remote_digest(&registry, &name), digest);

    let fresh = Env::empty();
    trust(&fresh, &registry);
    let err = fresh.fails(&["pull", "--tls-verify", &name], 125);
    assert!(err.contains("requires a login"), "{err}");
    // Docker's config.json is read too.
    fs::create_dir_all(fresh.file("docker-config")).unwrap();
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    fs::write(
        fresh.file("docker-config/config.json"),
        json!({"auths": {format!("https://{host}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let out = fresh.ok(&["pull", "--tls-verify", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");

    // Logging out of berth's file: a wrong password stored by hand is gone with it.
    assert_eq!(
        berth.ok(&["logout", &host]),
        format!("Removing login credentials for {host}\n")
    );
    assert_eq!(
        berth.ok(&["logout", &host]),
        format!("Not logged in to {host}\n")
    );
    assert!(!fs::read_to_string(&auth_file).unwrap().contains(&host));
    let err = berth.fails(&["push", &name], 125);
    assert!(err.contains("requires a login"), "{err}");

    // Bad credentials in the file: refused, and the password shows nowhere.
    fs::write(
        &auth_file,
        json!({"auths": {&host: {"auth": base64_encode(&format!("{USER}:wrong-Pa55"))}}})
            .to_string(),
    )
    .unwrap();
    let run = berth.berth(&["push", &name]);
    assert_eq!(run.code, 125);
    assert!(
        run.stderr.contains("refused the credentials"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-Pa55") && !run.stdout.contains("wrong-Pa55"));

    // No terminal to ask on, and no --password-stdin.
    let err = berth.fails(&["login", "-u", USER, &host], 125);
    assert!(err.contains("--password-stdin"), "{err}");
    berth.assert_clean();
    fresh.assert_clean();
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn faults_leave_the_store_unchanged() {
    let mut registry = Registry::plain();
    let host = registry.host();
    let berth = Env::new();
    let name = format!("{host}/me/base:latest");
    berth.ok(&["tag", "base:latest", &name]);
    berth.ok(&["push", &name]);
    let fresh = Env::empty();

    let err = fresh.fails(&["pull", &format!("{host}/me/nothing")], 125);
    assert!(
        err.contains(&format!(
            "{host}/me/nothing:latest: not found in the registry"
        )),
        "{err}"
    );
    let err = fresh.fails(&["pull", &format!("{host}/me/base:nope")], 125);
    assert!(err.contains("not found in the registry"), "{err}");
    let err = fresh.fails(
        &["run", "--rm", &format!("{host}/me/base:nope"), "true"],
        125,
    );
    assert!(err.contains("not found in the registry"), "{err}");
    let err = berth.fails(&["push", &format!("{host}/me/absent:v1")], 125);
    assert!(err.contains("not found locally"), "{err}");
    assert_store_empty(&fresh);

    // A blob changed in the registry's storage: refused, nothing stored.
    let image = berth.inspect(&name);
    let manifest_digest = image["ManifestDigest"].as_str().unwrap().to_string();
    let manifest: Value =
        serde_json::from_slice(&fs::read(registry.blob_file(&manifest_digest)).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let file = registry.blob_file(layer_digest);
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&file, bytes).unwrap();
    let err = fresh.fails(&["pull", &name], 125);
    assert!(err.contains(&format!("blob {layer_digest}")), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert!(
        !err.contains("retrying"),
        "a wrong digest is not retried: {err}"
    );
    assert_store_empty(&fresh);

    // The registry down: retried, then a clear error.
    registry.stop();
    let started = Instant::now();
    let err = fresh.fails(&["pull", &name], 125);
    assert!(
        err.contains(&format!("cannot reach registry {host}")),
        "{err}"
    );
    assert!(err.contains("retrying"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = berth.fails(&["push", &name], 125);
    assert!(err.contains("cannot reach registry"), "{err}");
    assert_store_empty(&fresh);
    berth.assert_clean();
    fresh.assert_clean();
}

/// A TCP proxy to `target` that cuts, once, the first connection that carries more than
/// `limit` bytes in either direction: an interrupted transfer.
struct FlakyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl FlakyProxy {
    fn start(target: u16, limit: usize) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (stop2, cuts2) = (Arc::clone(&stop), Arc::clone(&cuts));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let cuts = Arc::clone(&cuts2);
                    thread::spawn(move || pipe(from, to, limit, &cuts));
                }
            }
        });
        FlakyProxy { port, stop, cuts }
    }
}

/// Copies `from` to `to`; past `limit` bytes, the first pipe to get there cuts both.
fn pipe(mut from: TcpStream, mut to: TcpStream, limit: usize, cuts: &AtomicUsize) {
    let mut buf = [0; 16384];
    let mut total = 0;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
        if total > limit
            && cuts
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn interrupted_transfers_are_retried() {
    let registry = Registry::plain();
    let berth = Env::new();
    let proxy = FlakyProxy::start(registry.port, 200_000);
    let name = format!("127.0.0.1:{}/me/base:latest", proxy.port);
    berth.ok(&["tag", "base:latest", &name]);
    let push = berth.berth(&["push", &name]);
    assert_eq!(push.code, 0, "{}", push.stderr);
    assert!(push.stderr.contains("retrying"), "{}", push.stderr);
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1);

    let pushed = name;
    let proxy = FlakyProxy::start(registry.port, 200_000);
    let name = format!("127.0.0.1:{}/me/base:latest", proxy.port);
    let fresh = Env::empty();
    let pull = fresh.berth(&["pull", &name]);
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    assert!(pull.stderr.contains("retrying"), "{}", pull.stderr);
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1);
    assert_eq!(
        fresh.inspect(&name)["ManifestDigest"],
        berth.inspect(&pushed)["ManifestDigest"]
    );
    berth.assert_clean();
    fresh.assert_clean();
}

/// Unmounts the small filesystem a test put under an installation's root.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_pull_cleanly() {
    let registry = Registry::plain();
    let host = registry.host();
    let berth = Env::new();
    // An image larger than the disk: 3 MiB that gzip cannot shrink.
    let mut random = vec![0u8; 3 << 20];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for b in random.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(random.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "random.bin", &random[..])
        .unwrap();
    let tarball = berth.file("big.tar");
    fs::write(&tarball, tar.into_inner().unwrap()).unwrap();
    let name = format!("{host}/me/big:latest");
    berth.ok(&["import", tarball.to_str().unwrap(), &name]);
    berth.ok(&["push", &name]);

    let small = Env::empty();
    let root = small.paths().root;
    fs::create_dir_all(&root).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "berth-test-full"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let mounted = Mounted(root);
    let err = small.fails(&["pull", &name], 125);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        !err.contains("retrying"),
        "a full disk is not retried: {err}"
    );
    assert_store_empty(&small);
    drop(mounted);
    berth.assert_clean();
    small.assert_clean();
}
