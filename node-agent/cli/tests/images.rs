//! The image commands end to end: the real `berth` binary on a store of its own per test,
//! and the same archives and layouts read and written by podman and skopeo.
//!
//! Interop tests need podman, skopeo and a Docker daemon (Debian packages podman, skopeo,
//! docker.io, busybox-static) and fail, saying so, when they are missing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use berth_image::ImageStore;
use common::{Env, PodmanImages, busybox_tar, require, tool};
use serde_json::Value;

fn store(berth: &Env) -> ImageStore {
    ImageStore::open(&berth.paths().root).unwrap()
}

fn blob_count(berth: &Env) -> usize {
    let blobs = berth.paths().images().join("blobs/sha256");
    fs::read_dir(blobs).unwrap().count()
}

/// No blob, no temporary file and no image: what a failed or undone command leaves.
fn store_is_empty(berth: &Env) -> bool {
    let tmp_empty = fs::read_dir(berth.paths().tmp()).unwrap().next().is_none();
    blob_count(berth) == 0 && tmp_empty && berth.ok(&["images", "-q"]).is_empty()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn id_of(output: &str) -> String {
    let id = output.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "not an image id: {output:?}"
    );
    id
}

/// Rows of `berth images` below its header, split into columns.
fn image_rows(berth: &Env) -> Vec<Vec<String>> {
    let out = berth.ok(&["images"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    lines
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn import_list_tag_and_remove() {
    let berth = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    let id = id_of(&berth.ok(&["import", tarball.to_str().unwrap(), "base"]));

    let rows = image_rows(&berth);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][..3], ["base", "latest", &id[7..19]]);
    assert!(rows[0][3].ends_with(" ago"), "{:?}", rows[0]);
    assert!(rows[0][4].ends_with("MB"), "{:?}", rows[0]);
    assert_eq!(berth.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));

    berth.ok(&["tag", "base", "me/app:v1"]);
    berth.ok(&["tag", &id[7..15], "localhost:5000/team/app:v2"]);
    let names: Vec<String> = image_rows(&berth)
        .iter()
        .map(|r| format!("{}:{}", r[0], r[1]))
        .collect();
    assert_eq!(names.len(), 3);
    for name in ["base:latest", "me/app:v1", "localhost:5000/team/app:v2"] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert_eq!(
        berth.ok(&["images", "-q"]).lines().count(),
        1,
        "-q lists each image once"
    );

    // From standard input, gzip-compressed, untagged.
    let other = id_of(&berth.ok_with(&["import", "-"], Some(&gzip(&tricky_layer()))));
    assert_ne!(other, id);
    assert!(
        image_rows(&berth)
            .iter()
            .any(|r| r[..3] == ["<none>", "<none>", &other[7..19]])
    );

    assert_eq!(berth.ok(&["rmi", "me/app:v1"]), "Untagged: me/app:v1\n");
    let err = berth.fails(&["rmi", &id], 1);
    assert!(err.contains("has several names"), "{err}");
    assert_eq!(
        berth.ok(&["rmi", "base", "localhost:5000/team/app:v2", &other[7..]]),
        format!(
            "Untagged: base:latest\nUntagged: localhost:5000/team/app:v2\nDeleted: {id}\nDeleted: {other}\n"
        )
    );
    assert!(store_is_empty(&berth), "rmi leaves no blob behind");
}

#[test]
fn errors_say_what_is_wrong() {
    let berth = Env::empty();
    let err = berth.fails(&["rmi", "nosuch"], 1);
    assert_eq!(
        err,
        "berth: image \"nosuch\" not found locally; `berth images` lists what is here\n"
    );
    let tarball = busybox_tar().to_path_buf();
    let err = berth.fails(&["import", tarball.to_str().unwrap(), "Foo"], 125);
    assert_eq!(
        err,
        "berth: invalid reference \"Foo\": repository name must be lowercase\n"
    );
    let err = berth.fails(&["import", "/nonexistent.tar"], 125);
    assert!(err.contains("opening /nonexistent.tar"), "{err}");
    let err = berth.fails(&["tag", "nosuch", "x"], 125);
    assert!(err.contains("not found locally"), "{err}");
    let err = berth.fails(&["save", "--format", "zip", "-o", "/dev/null", "x"], 125);
    assert!(err.contains("use docker-archive or oci-archive"), "{err}");
    fs::write(berth.file("junk.tar"), b"not an archive at all").unwrap();
    let err = berth.fails(
        &["load", "-i", berth.file("junk.tar").to_str().unwrap()],
        125,
    );
    assert!(err.contains("archive"), "{err}");
    assert!(store_is_empty(&berth));
}

#[test]
fn concurrent_imports_all_land() {
    let berth = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    let children: Vec<_> = (0..4)
        .map(|i| {
            berth
                .command(&["import", tarball.to_str().unwrap(), &format!("app{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let rows = image_rows(&berth);
    assert_eq!(rows.len(), 4, "{rows:?}");
}

/// A layer with everything an unpacker can get wrong.
fn tricky_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add =
        |kind: tar::EntryType, path: &str, data: &[u8], edit: &dyn Fn(&mut tar::Header)| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            edit(&mut header);
            tar.append_data(&mut header, path, data).unwrap();
        };
    let none = &|_: &mut tar::Header| {};
    add(tar::EntryType::Directory, "etc/", b"", none);
    add(tar::EntryType::Regular, "etc/.wh.shadow", b"", none);
    add(tar::EntryType::Directory, "var/cache/", b"", none);
    add(tar::EntryType::Regular, "var/cache/.wh..wh..opq", b"", none);
    add(tar::EntryType::Regular, "var/cache/fresh", b"new", none);
    add(tar::EntryType::Regular, "bin/tool", b"#!/bin/sh\n", &|h| {
        h.set_mode(0o4755);
        h.set_uid(1000);
    });
    add(tar::EntryType::Link, "bin/tool-link", b"", &|h| {
        h.set_link_name("bin/tool").unwrap()
    });
    add(tar::EntryType::Symlink, "bin/sh", b"", &|h| {
        h.set_link_name("/bin/busybox").unwrap()
    });
    add(tar::EntryType::Char, "dev/null", b"", &|h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    });
    add(tar::EntryType::Fifo, "run/pipe", b"", none);
    tar.into_inner().unwrap()
}

#[test]
fn layers_unpack_in_overlay_format() {
    let berth = Env::empty();
    let id = id_of(&berth.ok_with(&["import", "-", "tricky"], Some(&tricky_layer())));
    let store = store(&berth);
    let image = store.resolve("tricky").unwrap();
    assert_eq!(image.id, id);
    let dirs = store.layer_dirs(&image).unwrap();
    assert_eq!(dirs.len(), 1);
    let layer = &dirs[0];
    assert_eq!(
        layer,
        &berth.paths().layers().join(&image.diff_ids()[0][7..])
    );
    let meta = |p: &str| fs::symlink_metadata(layer.join(p)).unwrap();

    let whiteout = meta("etc/shadow");
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert_eq!(
        xattr::get(layer.join("var/cache"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(layer.join("var/cache/fresh")).unwrap(), b"new");
    assert_eq!(meta("bin/tool").mode() & 0o7777, 0o4755);
    assert_eq!(meta("bin/tool").uid(), 1000);
    assert_eq!(meta("bin/tool-link").ino(), meta("bin/tool").ino());
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(meta("dev/null").file_type().is_char_device());
    assert!(meta("run/pipe").file_type().is_fifo());
    assert_eq!(meta("var/cache").mtime(), 1_700_000_000);

    // Unpacked once: a second call finds it in place.
    let inode = meta("").ino();
    assert_eq!(store.layer_dirs(&image).unwrap(), dirs);
    assert_eq!(meta("").ino(), inode);
    // And removed with the last image that uses it.
    berth.ok(&["rmi", "tricky"]);
    assert!(!layer.exists());
}

#[test]
fn save_and_load_round_trip() {
    let source = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    let id = id_of(&source.ok(&["import", tarball.to_str().unwrap(), "base"]));
    source.ok(&["tag", "base", "localhost:5000/me/app:v1"]);

    for format in ["docker-archive", "oci-archive"] {
        let archive = source.file(&format!("{format}.tar"));
        let archive = archive.to_str().unwrap();
        source.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive,
            "base",
            "localhost:5000/me/app:v1",
        ]);

        let target = Env::empty();
        let out = target.ok(&["load", "-i", archive]);
        assert_eq!(
            out, "Loaded image: base:latest\nLoaded image: localhost:5000/me/app:v1\n",
            "{format}"
        );
        let loaded = store(&target).resolve("localhost:5000/me/app:v1").unwrap();
        assert_eq!(loaded.id, id, "{format} keeps the image id");
        assert_eq!(store(&target).resolve("base").unwrap().id, id);
        let dirs = store(&target).layer_dirs(&loaded).unwrap();
        assert!(
            dirs[0].join("bin/busybox").is_file(),
            "{format} layers unpack"
        );

        // The same archive again, from standard input and gzip-compressed: nothing new.
        let blobs = blob_count(&target);
        let gz = gzip(&fs::read(archive).unwrap());
        assert_eq!(
            target.ok_with(&["load", "-q"], Some(&gz)),
            "base:latest\nlocalhost:5000/me/app:v1\n"
        );
        assert_eq!(blob_count(&target), blobs);
    }

    // By id: no name in the archive, so none after loading.
    let archive = source.file("by-id.tar");
    let mut child = source
        .command(&["save", &id[7..19]])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bytes = Vec::new();
    std::io::copy(child.stdout.as_mut().unwrap(), &mut bytes).unwrap();
    assert!(child.wait().unwrap().success());
    fs::write(&archive, &bytes).unwrap();
    let target = Env::empty();
    assert_eq!(
        target.ok(&["load", "-i", archive.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
}

#[test]
fn a_corrupt_archive_leaves_nothing_behind() {
    let source = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    source.ok(&["import", tarball.to_str().unwrap(), "base"]);
    for format in ["docker-archive", "oci-archive"] {
        let archive = source.file(&format!("{format}.tar"));
        source.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "base",
        ]);
        let mut bytes = fs::read(&archive).unwrap();
        // Flip a byte in the middle of the layer, the archive's one big member.
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        let corrupt = source.file("corrupt.tar");
        fs::write(&corrupt, &bytes).unwrap();

        let target = Env::empty();
        let err = target.fails(&["load", "-i", corrupt.to_str().unwrap()], 125);
        assert!(
            err.contains("corrupt") || err.contains("digest"),
            "{format}: {err}"
        );
        assert!(store_is_empty(&target), "{format}: nothing half-stored");

        // Truncated too.
        fs::write(&corrupt, &bytes[..middle]).unwrap();
        let err = target.fails(&["load", "-i", corrupt.to_str().unwrap()], 125);
        assert!(!err.is_empty());
        assert!(store_is_empty(&target), "{format}: nothing half-stored");
    }
}

#[test]
fn interop_podman_loads_and_runs_what_berth_saves() {
    require("podman");
    let berth = Env::empty();
    let mut podman = PodmanImages(Vec::new());
    let tarball = busybox_tar().to_path_buf();
    for format in ["docker-archive", "oci-archive"] {
        let name = podman.name(&format!("save-{format}"));
        let id = id_of(&berth.ok(&["import", tarball.to_str().unwrap(), &name]));
        let archive = berth.file(&format!("{format}.tar"));
        berth.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            &name,
        ]);

        tool("podman", &["load", "-i", archive.to_str().unwrap()]);
        let podman_id = tool(
            "podman",
            &["image", "inspect", "--format", "{{.Id}}", &name],
        );
        assert_eq!(
            podman_id.trim(),
            &id[7..],
            "{format}: podman sees the same image id"
        );
        let hi = common::podman_run(&name, &["echo", "hi"]);
        assert_eq!(hi, "hi\n", "{format}");
    }
}

#[test]
fn interop_skopeo_reads_the_store_and_oci_archives() {
    require("skopeo");
    let berth = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    berth.ok(&[
        "import",
        tarball.to_str().unwrap(),
        "localhost/skopeo-test:t1",
    ]);
    let image = store(&berth).resolve("localhost/skopeo-test:t1").unwrap();

    let layout = format!("oci:{}:t1", berth.paths().images().display());
    let inspected: Value = serde_json::from_str(&tool("skopeo", &["inspect", &layout])).unwrap();
    assert_eq!(inspected["Digest"], image.manifest_digest);
    assert_eq!(inspected["Architecture"], "amd64");
    let config: Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--config", &layout])).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], image.diff_ids()[0]);

    let archive = berth.file("oci.tar");
    berth.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().unwrap(),
        "localhost/skopeo-test:t1",
    ]);
    let copied = berth.file("copied");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:copy", copied.display()),
        ],
    );
    let inspected: Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("oci:{}:copy", copied.display())],
    ))
    .unwrap();
    assert_eq!(
        inspected["Digest"], image.manifest_digest,
        "byte-exact manifest"
    );
}

#[test]
fn interop_berth_loads_what_podman_saves() {
    require("podman");
    let berth = Env::empty();
    let mut podman = PodmanImages(Vec::new());
    let tarball = busybox_tar().to_path_buf();
    let name = podman.name("podman-made");
    tool(
        "podman",
        &[
            "import",
            "--change",
            "CMD [\"/bin/sh\", \"-c\", \"echo from podman\"]",
            "--change",
            "ENV GREETING=hello",
            "--change",
            "WORKDIR /var/www",
            "--change",
            "USER app",
            tarball.to_str().unwrap(),
            &name,
        ],
    );
    let podman_id = tool(
        "podman",
        &["image", "inspect", "--format", "{{.Id}}", &name],
    );
    for format in ["docker-archive", "oci-archive"] {
        let archive = berth.file(&format!("podman-{format}.tar"));
        tool(
            "podman",
            &[
                "save",
                "--format",
                format,
                "-o",
                archive.to_str().unwrap(),
                &name,
            ],
        );
        let target = Env::empty();
        assert_eq!(
            target.ok(&["load", "-i", archive.to_str().unwrap()]),
            format!("Loaded image: {name}\n")
        );
        let store = store(&target);
        let image = store.resolve(&name).unwrap();
        assert_eq!(image.id, format!("sha256:{}", podman_id.trim()), "{format}");
        let config = image.config.config().clone().expect("a runtime config");
        assert_eq!(
            config.cmd().clone().unwrap(),
            ["/bin/sh", "-c", "echo from podman"],
            "{format}"
        );
        assert!(
            config
                .env()
                .clone()
                .unwrap()
                .contains(&"GREETING=hello".to_string())
        );
        assert_eq!(config.working_dir().as_deref(), Some("/var/www"));
        assert_eq!(config.user().as_deref(), Some("app"));
        let inspect = store.inspect_json(&image);
        assert_eq!(inspect["RepoTags"][0], name);
        assert_eq!(inspect["Config"]["WorkingDir"], "/var/www");
        let dirs = store.layer_dirs(&image).unwrap();
        assert!(dirs[0].join("bin/busybox").is_file(), "{format}");
    }
}

/// A Docker daemon of the test's own (sockets, state and cgroup parent under unique
/// names, no bridge and no iptables rules), stopped and cleaned up when dropped.
struct Dockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    cgroup: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("dockerd is needed for this interop test: apt-get install docker.io");
        require("docker");
        let dir = tempfile::tempdir().unwrap();
        let cgroup = format!("berth-images-dockerd-{}", std::process::id());
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .arg("--host")
            .arg(format!("unix://{}", dir.path().join("sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .arg(format!("--cgroup-parent=/{cgroup}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Dockerd { child, dir, cgroup };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !daemon.docker(&["info"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not start within 60s"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        daemon
    }

    fn docker(&self, args: &[&str]) -> Output {
        let host = format!("unix://{}", self.dir.path().join("sock").display());
        Command::new("docker")
            .arg("--host")
            .arg(host)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd; then remove the cgroups it made.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(hierarchy.path().join(&self.cgroup));
        }
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup));
    }
}

#[test]
fn interop_docker_loads_and_runs_what_berth_saves_and_back() {
    let docker = Dockerd::start();
    let berth = Env::empty();
    let tarball = busybox_tar().to_path_buf();
    let id = id_of(&berth.ok(&["import", tarball.to_str().unwrap(), "me/app:v1"]));
    let archive = berth.file("docker-archive.tar");
    berth.ok(&["save", "-o", archive.to_str().unwrap(), "me/app:v1"]);

    assert_eq!(
        docker.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: me/app:v1\n"
    );
    assert_eq!(
        docker
            .ok(&["image", "inspect", "--format", "{{.Id}}", "me/app:v1"])
            .trim(),
        id
    );
    let hi = docker.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "me/app:v1",
        "echo",
        "hi",
    ]);
    assert_eq!(hi, "hi\n");

    let saved = berth.file("from-docker.tar");
    docker.ok(&["save", "-o", saved.to_str().unwrap(), "me/app:v1"]);
    let target = Env::empty();
    assert_eq!(
        target.ok(&["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: me/app:v1\n"
    );
    assert_eq!(store(&target).resolve("me/app:v1").unwrap().id, id);
}
