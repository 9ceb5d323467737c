//! `berth build` end to end: the real binary builds Dockerfiles on a busybox base (RUN
//! steps are real containers), and the images run, are inspected, and cross into podman,
//! buildah and skopeo. Each test has an installation of its own.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;

use common::{Env, PodmanImages, Run, require, tool};
use serde_json::Value;

/// The seed application's Dockerfile, on busybox: busybox has no useradd, so the user is
/// appended to /etc/passwd, and a file stands in for the virtualenv.
const MICROBLOG_SHAPED: &str = r#"FROM base:latest
RUN echo 'microblog:x:2000:2000::/home/microblog:/bin/sh' >> /etc/passwd && echo 'microblog:x:2000:' >> /etc/group
WORKDIR /home/microblog
COPY requirements.txt requirements.txt
RUN echo "venv for $(cat requirements.txt)" > venv
RUN echo installing; cat requirements.txt
COPY app app
COPY microblog.py config.py boot.sh ./
RUN chmod +x boot.sh
ENV FLASK_APP microblog.py
RUN chown -R microblog:microblog ./
USER microblog
EXPOSE 5000
ENTRYPOINT ["./boot.sh"]
"#;

const BOOT_SH: &str = "#!/bin/sh\necho \"$(id -un) in $(pwd) app=$FLASK_APP $(cat venv)\"\n";

/// A build context in the installation's directory, from (path, content) pairs.
fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.file(name);
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    dir
}

fn microblog_context(env: &Env) -> PathBuf {
    context(
        env,
        "microblog",
        &[
            ("Dockerfile", MICROBLOG_SHAPED),
            ("requirements.txt", "flask\n"),
            ("app/__init__.py", "app = 1\n"),
            ("app/routes.py", "routes = 1\n"),
            ("microblog.py", "from app import app\n"),
            ("config.py", "SECRET_KEY = 'x'\n"),
            ("boot.sh", BOOT_SH),
        ],
    )
}

fn build(env: &Env, ctx: &Path, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain", "--network", "none"];
    all.extend_from_slice(args);
    let ctx = ctx.to_str().unwrap();
    all.push(ctx);
    env.berth(&all)
}

/// Builds; must succeed; returns the image id and the progress output.
fn build_ok(env: &Env, ctx: &Path, args: &[&str]) -> (String, String) {
    let r = build(env, ctx, args);
    assert_eq!(r.code, 0, "build failed: {}{}", r.stdout, r.stderr);
    let id = r.stdout.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "not an id: {:?}",
        r.stdout
    );
    (id, r.stderr)
}

/// Builds; must fail with the build's exit code (1), saying `message`.
fn build_fails(env: &Env, ctx: &Path, args: &[&str], message: &str) {
    let r = build(env, ctx, args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(message),
        "expected {message:?} in {}",
        r.stderr
    );
}

/// The labels of the steps that came from the cache.
fn cached_steps(progress: &str) -> Vec<usize> {
    progress
        .lines()
        .filter(|l| l.ends_with(" CACHED"))
        .filter_map(|l| l.strip_prefix('[')?.split('/').next()?.parse().ok())
        .collect()
}

fn run_out(env: &Env, image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.push(image);
    args.extend_from_slice(cmd);
    env.ok(&args)
}

#[test]
fn microblog_shaped_dockerfile_builds_runs_and_rebuilds_from_cache() {
    let env = Env::new();
    let ctx = microblog_context(&env);
    let (id, progress) = build_ok(&env, &ctx, &["-t", "microblog:latest"]);
    // One line per step with its time, and RUN output streamed.
    for n in 1..=14 {
        assert!(
            progress
                .lines()
                .any(|l| l.starts_with(&format!("[{n}/14] "))),
            "step {n} missing in {progress}"
        );
    }
    assert!(
        progress.contains("[9/14] RUN chmod +x boot.sh "),
        "{progress}"
    );
    assert!(progress.contains("[6/14] | installing"), "{progress}");
    assert!(progress.contains("[6/14] | flask"), "{progress}");
    assert!(cached_steps(&progress).is_empty(), "{progress}");

    let out = run_out(&env, "microblog:latest", &[]);
    assert_eq!(
        out,
        "microblog in /home/microblog app=microblog.py venv for flask\n"
    );
    let config = &env.inspect("microblog:latest")["Config"];
    assert_eq!(config["User"], "microblog");
    assert_eq!(config["WorkingDir"], "/home/microblog");
    assert_eq!(config["Entrypoint"], serde_json::json!(["./boot.sh"]));
    assert!(config["ExposedPorts"]["5000/tcp"].is_object(), "{config}");
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "FLASK_APP=microblog.py"),
        "{config}"
    );
    let listing = run_out(&env, "microblog:latest", &[]);
    assert!(listing.contains("microblog in"));
    let owners = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "stat",
        "microblog:latest",
        "-c",
        "%U %a %n",
        "boot.sh",
        "app/routes.py",
    ]);
    assert_eq!(
        owners,
        "microblog 755 boot.sh\nmicroblog 644 app/routes.py\n"
    );

    // `history`: one row per instruction, newest first, and 8 layers over the base.
    let history = env.ok(&["history", "microblog:latest"]);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 14, "{history}");
    assert!(rows[0].contains("ENTRYPOINT [\"./boot.sh\"]"), "{history}");
    assert!(rows[13].contains("berth import"), "{history}");
    let layers = env.inspect("microblog:latest")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, 9);

    // Unchanged: every step is cached and the image is the same one.
    let (again, progress) = build_ok(&env, &ctx, &["-t", "microblog:latest"]);
    assert_eq!(
        cached_steps(&progress),
        (2..=14).collect::<Vec<_>>(),
        "{progress}"
    );
    assert_eq!(again, id);

    // Only an mtime changed: still all cached.
    let config_py = ctx.join("config.py");
    let f = fs::File::options().append(true).open(&config_py).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    let (same, progress) = build_ok(&env, &ctx, &["-t", "microblog:latest"]);
    assert_eq!(same, id, "{progress}");

    // A file's content changed: from the first step that copies it, and no earlier.
    fs::write(&config_py, "SECRET_KEY = 'y'\n").unwrap();
    let (changed, progress) = build_ok(&env, &ctx, &["-t", "microblog:latest"]);
    assert_ne!(changed, id);
    assert_eq!(
        cached_steps(&progress),
        (2..=7).collect::<Vec<_>>(),
        "{progress}"
    );

    // --no-cache runs everything; -q prints only the id.
    let r = build(&env, &ctx, &["--no-cache", "-q", "-t", "microblog:latest"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "quiet: {}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1);
    assert!(r.stdout.starts_with("sha256:"));
    env.assert_clean();
}

#[test]
fn config_instructions_are_recorded_like_docker() {
    let env = Env::new();
    let ctx = context(
        &env,
        "cfg",
        &[(
            "Dockerfile",
            r#"# escape=\
ARG BASE=base:latest
FROM ${BASE}
ARG VERSION=1.0
ARG UNSET
ENV A=1 B="two words" \
    C=${VERSION}
ENV LEGACY value with spaces
LABEL org.example.version=$VERSION "quoted key"=x
MAINTAINER someone@example.com
EXPOSE 5000 53/udp
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGQUIT
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q localhost:5000 || exit 1
ONBUILD RUN echo triggered > /tmp/onbuild
USER 1000:1000
WORKDIR relative
WORKDIR ../other
CMD echo "$A $B $C ${UNSET:-none} $LEGACY"
"#,
        )],
    );
    build_ok(&env, &ctx, &["-t", "cfg:1", "--build-arg", "VERSION=2.5"]);
    let image = env.inspect("cfg:1");
    let config = &image["Config"];
    let env_list: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for expected in ["A=1", "B=two words", "C=2.5", "LEGACY=value with spaces"] {
        assert!(env_list.contains(&expected), "{env_list:?}");
    }
    assert!(
        !env_list.iter().any(|e| e.starts_with("VERSION=")),
        "ARGs stay out of the image"
    );
    assert_eq!(config["Labels"]["org.example.version"], "2.5");
    assert_eq!(config["Labels"]["quoted key"], "x");
    assert_eq!(image["Author"], "someone@example.com");
    assert!(config["ExposedPorts"]["5000/tcp"].is_object());
    assert!(config["ExposedPorts"]["53/udp"].is_object());
    assert!(config["Volumes"]["/data"].is_object() && config["Volumes"]["/logs"].is_object());
    assert_eq!(config["StopSignal"], "SIGQUIT");
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(config["WorkingDir"], "/other");
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/bin/sh", "-ec", "echo \"$A $B $C ${UNSET:-none} $LEGACY\""])
    );
    // Docker's own config fields, which the OCI config does not have.
    assert_eq!(config["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        config["OnBuild"],
        serde_json::json!(["RUN echo triggered > /tmp/onbuild"])
    );
    let health = &config["Healthcheck"];
    assert_eq!(
        health["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q localhost:5000 || exit 1"])
    );
    assert_eq!(health["Interval"], 30_000_000_000u64);
    assert_eq!(health["Timeout"], 3_000_000_000u64);
    assert_eq!(health["Retries"], 2);
    let out = run_out(&env, "cfg:1", &[]);
    assert_eq!(out, "1 two words 2.5 none value with spaces\n");
    // WORKDIR makes its directory 0755, owned by the USER.
    let workdir = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "stat",
        "cfg:1",
        "-c",
        "%u:%g %a",
        "/other",
    ]);
    assert_eq!(workdir, "1000:1000 755\n");

    // ONBUILD runs in the next build FROM the image.
    let child = context(
        &env,
        "child",
        &[("Dockerfile", "FROM cfg:1\nRUN cat /tmp/onbuild\n")],
    );
    let (_, progress) = build_ok(&env, &child, &["-t", "child:1"]);
    assert!(progress.contains("| triggered"), "{progress}");
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "child:1",
            "cat",
            "/tmp/onbuild"
        ]),
        "triggered\n"
    );
    env.assert_clean();
}

#[test]
fn multi_stage_copy_from_and_target() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ms",
        &[
            ("src.txt", "source\n"),
            (
                "Dockerfile",
                "FROM base:latest AS builder\n\
                 COPY src.txt /src/\n\
                 RUN mkdir /out && tr a-z A-Z < /src/src.txt > /out/result && chown 1000:1001 /out/result\n\
                 FROM base:latest AS unused\n\
                 RUN exit 1\n\
                 FROM scratch\n\
                 COPY --from=builder /out/result /result\n\
                 COPY --from=0 /bin/busybox /bin/busybox\n\
                 COPY --from=builder /bin/sh /bin/sh\n\
                 COPY --from=base:latest /etc/passwd /etc/passwd\n\
                 CMD [\"/bin/busybox\", \"cat\", \"/result\"]\n",
            ),
        ],
    );
    // The unused stage (whose RUN fails) is not built.
    let (_, progress) = build_ok(&env, &ctx, &["-t", "ms:final"]);
    assert!(!progress.contains("exit 1"), "{progress}");
    assert_eq!(run_out(&env, "ms:final", &[]), "SOURCE\n");
    // What comes from another stage keeps its owner.
    let owner = run_out(
        &env,
        "ms:final",
        &["/bin/busybox", "stat", "-c", "%u:%g", "/result"],
    );
    assert_eq!(owner, "1000:1001\n");
    let layers = env.inspect("ms:final")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, 4, "scratch plus four COPY layers");
    // A source that is a symlink (/bin/sh -> busybox) is copied as what it points to.
    let kind = run_out(
        &env,
        "ms:final",
        &["/bin/busybox", "stat", "-c", "%F", "/bin/sh"],
    );
    assert_eq!(kind, "regular file\n");

    build_ok(&env, &ctx, &["--target", "builder", "-t", "ms:builder"]);
    assert_eq!(
        run_out(&env, "ms:builder", &["cat", "/out/result"]),
        "SOURCE\n"
    );
    build_fails(
        &env,
        &ctx,
        &["--target", "nosuch"],
        "target stage \"nosuch\"",
    );
    env.assert_clean();
}

/// A one-shot HTTP server for ADD of a URL; returns its address.
fn serve_once(body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn copy_and_add_follow_docker_rules() {
    let env = Env::new();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(9);
    header.set_mode(0o640);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append_data(&mut header, "inside/archived.txt", &b"archived\n"[..])
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let url = serve_once(b"downloaded\n");
    let ctx = context(
        &env,
        "copy",
        &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("c.md", "c\n"),
            ("dir/nested/deep.txt", "deep\n"),
            ("dir/top.txt", "top\n"),
            ("secret.key", "do not copy\n"),
            ("logs/one.log", "1\n"),
            ("logs/keep.log", "kept\n"),
            (".dockerignore", "*.key\nlogs\n!logs/keep.log\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM base:latest\n\
                     COPY *.txt /globbed/\n\
                     COPY dir /copied-dir\n\
                     COPY --chown=app:extra --chmod=751 c.md /owned/c.md\n\
                     COPY --chown=1234 a.txt /numeric/\n\
                     COPY --chmod=600 b.txt /made/for/b.txt\n\
                     WORKDIR /dot\n\
                     COPY a.txt b.txt .\n\
                     RUN mkdir /real && ln -s /real /linked\n\
                     COPY dir/ /linked/\n\
                     COPY a.txt /dup.txt\n\
                     RUN rm /dup.txt\n\
                     COPY a.txt /dup.txt\n\
                     RUN cat /dup.txt\n\
                     COPY . /all/\n\
                     ADD archive.tar.gz /extracted/\n\
                     ADD {url}/remote.txt /remote/\n\
                     COPY <<EOF /inline.txt\n\
                     inline $HOSTNAME_UNSET-ok\n\
                     EOF\n\
                     RUN <<EOF\n\
                     echo from heredoc > /heredoc.txt\n\
                     rm /var/www/index.html\n\
                     EOF\n\
                     RUN <<SCRIPT\n\
                     #!/bin/awk -f\n\
                     BEGIN {{ print \"run as a file\" > \"/script.txt\" }}\n\
                     SCRIPT\n"
                ),
            ),
        ],
    );
    fs::write(ctx.join("archive.tar.gz"), gz.finish().unwrap()).unwrap();
    build_ok(&env, &ctx, &["-t", "copy:1"]);
    let sh = |script: &str| {
        env.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "copy:1",
            "sh",
            "-c",
            script,
        ])
    };
    assert_eq!(sh("ls /globbed"), "a.txt\nb.txt\n");
    assert_eq!(
        sh("find /copied-dir | sort"),
        "/copied-dir\n/copied-dir/nested\n/copied-dir/nested/deep.txt\n/copied-dir/top.txt\n"
    );
    assert_eq!(sh("stat -c '%U:%G %a' /owned/c.md"), "app:extra 751\n");
    // A numeric --chown without a group: the same number as group.
    assert_eq!(sh("stat -c %u:%g /numeric/a.txt"), "1234:1234\n");
    // --chmod is for the files: the directories made for them stay 0755.
    assert_eq!(
        sh("stat -c %a /made /made/for /made/for/b.txt"),
        "755\n755\n600\n"
    );
    // `.` is the working directory, as a directory.
    assert_eq!(sh("ls /dot"), "a.txt\nb.txt\n");
    // A symlink to a directory is copied into, not replaced.
    assert_eq!(sh("test -L /linked && ls /real"), "nested\ntop.txt\n");
    // The same layer twice in a stack (equal COPY steps) still mounts.
    assert_eq!(sh("cat /dup.txt"), "a\n");
    // .dockerignore: excluded files are not in the context, exceptions are.
    assert_eq!(
        sh("ls /all/logs; test -e /all/secret.key || echo no-key"),
        "keep.log\nno-key\n"
    );
    assert_eq!(
        sh("cat /extracted/inside/archived.txt; stat -c %a /extracted/inside/archived.txt"),
        "archived\n640\n"
    );
    assert_eq!(
        sh("cat /remote/remote.txt; stat -c %a /remote/remote.txt"),
        "downloaded\n600\n"
    );
    assert_eq!(sh("cat /inline.txt"), "inline -ok\n");
    assert_eq!(sh("cat /heredoc.txt"), "from heredoc\n");
    // A heredoc starting with #! runs as a file with that interpreter, and is not left
    // in the image.
    assert_eq!(
        sh("cat /script.txt; test -e /dev/pipes || echo no-pipes"),
        "run as a file\nno-pipes\n"
    );
    // A file the step deleted is gone in the image (a whiteout in its layer).
    assert_eq!(
        sh("test -e /var/www/index.html || echo deleted"),
        "deleted\n"
    );

    // ADD --checksum: the content must match.
    let url = serve_once(b"downloaded\n");
    let wrong = context(
        &env,
        "checksum",
        &[(
            "Dockerfile",
            &format!(
                "FROM base:latest\nADD --checksum=sha256:{} {url}/f /f\n",
                "0".repeat(64)
            ),
        )],
    );
    build_fails(&env, &wrong, &[], "but --checksum says sha256:000");

    let git = context(
        &env,
        "git",
        &[(
            "Dockerfile",
            "FROM base:latest\nADD https://example.com/repo.git#v1 /src\n",
        )],
    );
    build_fails(
        &env,
        &git,
        &[],
        "ADD of a git repository is not supported yet",
    );

    // A heredoc's name cannot lead out of the root filesystem.
    let escape = context(
        &env,
        "escape",
        &[(
            "Dockerfile",
            "FROM base:latest\nCOPY <<../../../../escaped /\nhi\n../../../../escaped\n",
        )],
    );
    build_fails(&env, &escape, &[], "must be one path component");
    assert!(!env.file("escaped").exists() && !env.paths().root.join("escaped").exists());

    let missing = context(
        &env,
        "missing",
        &[
            (
                "Dockerfile",
                "FROM base:latest\nCOPY secret.key nope.txt /x/\n",
            ),
            ("secret.key", "k"),
            (".dockerignore", "*.key\n"),
        ],
    );
    let message =
        "Dockerfile:2: COPY secret.key nope.txt /x/: \"secret.key\" not found in the build context";
    build_fails(&env, &missing, &[], message);
    env.assert_clean();
}

#[test]
fn cache_keys_cover_build_args_and_instruction_text() {
    let env = Env::new();
    let ctx = context(
        &env,
        "args",
        &[(
            "Dockerfile",
            "FROM base:latest\nARG V=1\nRUN echo first\nRUN echo \"v=$V\" > /v\nRUN echo last\n",
        )],
    );
    let (first, _) = build_ok(&env, &ctx, &[]);
    let (same, progress) = build_ok(&env, &ctx, &["--build-arg", "V=1"]);
    assert_eq!(same, first, "{progress}");
    // A changed arg value misses from the first RUN after it, as Docker does.
    let (other, progress) = build_ok(&env, &ctx, &["--build-arg", "V=2"]);
    assert_ne!(other, first);
    assert_eq!(cached_steps(&progress), [2], "{progress}");
    assert_eq!(run_out(&env, &other, &["cat", "/v"]), "v=2\n");
    // A heredoc's body is part of its step: a changed body is not a cache hit.
    let heredoc = |body: &str| {
        let dockerfile = format!("FROM base:latest\nRUN <<EOF\necho {body} > /h\nEOF\n");
        let ctx = context(&env, "heredoc", &[("Dockerfile", &dockerfile)]);
        build_ok(&env, &ctx, &[]).0
    };
    let one = heredoc("one");
    assert_eq!(run_out(&env, &heredoc("two"), &["cat", "/h"]), "two\n");
    assert_eq!(run_out(&env, &one, &["cat", "/h"]), "one\n");

    let r = build(&env, &ctx, &["--build-arg", "UNUSED=x"]);
    assert!(
        r.stderr
            .contains("build args not used by the Dockerfile: UNUSED"),
        "{}",
        r.stderr
    );
    env.assert_clean();
}

#[test]
fn failing_run_reports_and_leaves_no_image_and_no_moved_tag() {
    let env = Env::new();
    let good = context(
        &env,
        "good",
        &[("Dockerfile", "FROM base:latest\nRUN echo ok > /ok\n")],
    );
    let (good_id, _) = build_ok(&env, &good, &["-t", "app:latest"]);
    let images_before = env.ok(&["images", "-q"]);
    let bad = context(
        &env,
        "bad",
        &[(
            "Dockerfile",
            "FROM base:latest\nRUN echo ok > /ok\nRUN for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; exit 3\nRUN echo never\n",
        )],
    );
    for mode in ["plain", "tty"] {
        let r = env.berth(&[
            "build",
            "--progress",
            mode,
            "--network",
            "none",
            "-t",
            "app:latest",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 1, "{mode}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{mode}: {}", r.stdout);
        assert!(
            r.stderr.contains("[3/4] RUN for i in 1 2 3 4 5"),
            "{mode}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("line 5") && r.stderr.contains("oops"),
            "{mode}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("Dockerfile:3: RUN for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; exit 3: the command exited with code 3"),
            "{mode}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("never"));
    }
    let r = env.berth(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "app:latest",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("line 5"),
        "quiet still says why: {}",
        r.stderr
    );
    assert_eq!(
        env.inspect("app:latest")["Id"],
        good_id.as_str(),
        "the tag did not move"
    );
    assert_eq!(env.ok(&["images", "-q"]), images_before, "no new image");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    let tmp: Vec<_> = fs::read_dir(env.paths().tmp())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    env.assert_clean();
}

#[test]
fn bad_input_is_named_with_file_and_line() {
    let env = Env::new();
    let cases: &[(&str, &str)] = &[
        (
            "FROM base:latest\nCOPPY a b\n",
            "Dockerfile:2: unknown instruction \"COPPY\" (did you mean COPY?)",
        ),
        (
            "FROM base:latest\nCOPY a\n",
            "Dockerfile:2: COPY requires at least two arguments",
        ),
        (
            "FROM base:latest\nCOPY --frm=x a b\n",
            "unknown flag: --frm",
        ),
        ("", "is empty"),
        ("# just a comment\n", "is empty"),
        ("FROM base:latest\nRUN <<EOF\necho hi\n", "heredoc"),
        (
            "FROM base:latest\nENV X=\"${NOPE:?must be set}\"\n",
            "must be set",
        ),
        (
            "FROM 127.0.0.1:9/nosuch:1\n",
            "Dockerfile:1: FROM 127.0.0.1:9/nosuch:1: cannot reach registry 127.0.0.1:9",
        ),
        ("RUN echo before from\n", "Dockerfile:1"),
    ];
    for (i, (dockerfile, message)) in cases.iter().enumerate() {
        let ctx = context(&env, &format!("bad{i}"), &[("Dockerfile", dockerfile)]);
        build_fails(&env, &ctx, &[], message);
    }
    let r = env.berth(&["build", env.file("no-such-dir").to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no-such-dir"), "{}", r.stderr);
    let ctx = context(&env, "nodockerfile", &[("x", "")]);
    let r = build(&env, &ctx, &[]);
    assert!(r.stderr.contains("Dockerfile"), "{}", r.stderr);
    assert_eq!(
        env.ok(&["images", "-q"]).lines().count(),
        1,
        "only the base"
    );
    env.assert_clean();
}

#[test]
fn builder_prune_drops_the_cache_and_its_layers() {
    let env = Env::new();
    let ctx = context(
        &env,
        "prune",
        &[
            ("Dockerfile", "FROM base:latest\nRUN echo x > /x\n"),
            ("f", ""),
        ],
    );
    let (id, _) = build_ok(&env, &ctx, &["-t", "p:1"]);
    env.ok(&["rmi", "p:1"]);
    // The cache keeps the step's layer after the image is gone...
    let (again, progress) = build_ok(&env, &ctx, &[]);
    assert_eq!(again, id);
    assert_eq!(cached_steps(&progress), [2]);
    env.ok(&["rmi", &again]);
    let layers = || fs::read_dir(env.paths().layers()).unwrap().count();
    assert_eq!(layers(), 2, "base and the cached step");
    // ...until pruned.
    let out = env.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Removed"), "{out}");
    assert_eq!(layers(), 1, "only the base");
    let (_, progress) = build_ok(&env, &ctx, &[]);
    assert!(cached_steps(&progress).is_empty(), "{progress}");
    env.assert_clean();
}

/// Everything under `dir` is readable by others (a context podman and buildah copy).
fn open_up(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        if p.is_dir() {
            open_up(&p);
        }
    }
}

#[test]
fn interop_podman_runs_what_berth_builds_and_skopeo_reads_it() {
    require("podman");
    require("skopeo");
    let env = Env::new();
    let mut podman = PodmanImages(Vec::new());
    let ctx = microblog_context(&env);
    let name = podman.name("built");
    build_ok(&env, &ctx, &["-t", &name]);
    let expected = run_out(&env, &name, &[]);
    let archive = env.file("built.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), &name]);
    tool("podman", &["load", "-i", archive.to_str().unwrap()]);
    let out = common::podman_run(&name, &[]);
    assert_eq!(out, expected);

    // The store is an OCI layout whose names carry the tag (`v1`).
    let layout = format!("oci:{}:v1", env.paths().images().display());
    let inspected: Value = serde_json::from_str(&tool("skopeo", &["inspect", &layout])).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        9,
        "{inspected}"
    );
    env.assert_clean();
}

#[test]
fn interop_berth_runs_what_buildah_builds() {
    require("buildah");
    require("podman");
    let env = Env::new();
    let mut podman = PodmanImages(Vec::new());
    let base = podman.name("buildah-base");
    let base_archive = env.file("base.tar");
    env.ok(&["tag", "base:latest", &base]);
    env.ok(&["save", "-o", base_archive.to_str().unwrap(), &base]);
    tool("podman", &["load", "-i", base_archive.to_str().unwrap()]);
    let ctx = microblog_context(&env);
    fs::write(
        ctx.join("Dockerfile"),
        MICROBLOG_SHAPED.replace("base:latest", &base),
    )
    .unwrap();
    open_up(&ctx);
    let built = podman.name("buildah-built");
    tool(
        "buildah",
        &[
            "bud",
            "--network",
            "none",
            "--pull=never",
            "-t",
            &built,
            ctx.to_str().unwrap(),
        ],
    );
    let archive = env.file("buildah.tar");
    tool("podman", &["save", "-o", archive.to_str().unwrap(), &built]);
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let out = run_out(&env, &built, &[]);
    assert_eq!(
        out,
        "microblog in /home/microblog app=microblog.py venv for flask\n"
    );
    env.assert_clean();
}

#[test]
fn run_steps_are_on_the_default_bridge_unless_told() {
    let env = Env::new();
    let ctx = context(
        &env,
        "net",
        &[(
            "Dockerfile",
            "FROM base:latest\n\
             RUN ip -4 -o addr show eth0 | awk '{print $4}' > /bridge-addr\n\
             RUN --network=none ip -o link | grep -c ': eth0' > /none-links || true\n",
        )],
    );
    let r = env.berth(&["build", "-q", "-t", "net:1", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let subnet_prefix = env
        .paths()
        .bridge_subnet
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    let addr = run_out(&env, "net:1", &["cat", "/bridge-addr"]);
    assert!(
        addr.starts_with(&subnet_prefix),
        "{addr} in {}",
        env.paths().bridge_subnet
    );
    assert_eq!(run_out(&env, "net:1", &["cat", "/none-links"]), "0\n");
    env.assert_clean();
}

#[test]
fn an_interrupted_build_leaves_nothing_running() {
    let env = Env::new();
    let ctx = context(
        &env,
        "slow",
        &[(
            "Dockerfile",
            "FROM base:latest\nRUN echo started; sleep 60\n",
        )],
    );
    let mut child = env
        .command(&[
            "build",
            "--progress",
            "plain",
            "--network",
            "none",
            ctx.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Lines of its output, read by a thread so that waiting for one has a deadline.
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let _ = lines.send(line.unwrap_or_default());
        }
    });
    let mut seen = String::new();
    while !seen.contains("| started") {
        match received.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => seen += &(line + "\n"),
            Err(_) => {
                let _ = child.kill();
                panic!("the build did not start its RUN step: {seen}");
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(received.try_iter().map(|l| l + "\n"));
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(seen.contains("the build was interrupted"), "{seen}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    let tmp: Vec<_> = fs::read_dir(env.paths().tmp())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    env.assert_clean();
}
