//! The seed application for real: examples/microblog built with `berth build` on the
//! Debian Python base (`make pybase-tar` writes it and exports its path as
//! `BERTH_PYBASE_TAR`), run with its port published, answering a page and a form post.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{Env, free_port};

fn pybase_tar() -> PathBuf {
    let tar = std::env::var_os("BERTH_PYBASE_TAR").map(PathBuf::from);
    match tar {
        Some(tar) if tar.exists() => tar,
        _ => panic!(
            "this test needs the Debian Python base: run `make pybase-tar` (or set \
             BERTH_PYBASE_TAR to the tarball scripts/base-python.sh writes)"
        ),
    }
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn microblog_builds_runs_and_answers() {
    let tar = pybase_tar();
    let env = Env::empty();
    env.ok(&["import", tar.to_str().unwrap(), "pybase:latest"]);
    let app = common::repo().join("examples/microblog");
    let r = env.berth(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "microblog:latest",
        app.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "build failed: {}", r.stderr);
    assert!(
        r.stderr.contains("Requirement already satisfied: flask"),
        "pip found flask in the system packages: {}",
        r.stderr
    );

    let port = free_port();
    let publish = format!("{port}:5000");
    env.ok(&[
        "run",
        "--name",
        "microblog",
        "-d",
        "-p",
        &publish,
        "--rm",
        "-e",
        "SECRET_KEY=test-secret",
        "microblog:latest",
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    let jar = env.file("cookies");
    let jar = jar.to_str().unwrap();
    let mut page = None;
    env.wait_for("the microblog to answer", Duration::from_secs(60), || {
        page = curl(&["-c", jar, &url]);
        page.is_some()
    });
    let page = page.unwrap();
    assert!(page.contains("<title>Microblog</title>"), "{page}");
    assert!(page.contains("No posts yet"), "{page}");

    // The form: a post goes into SQLite and shows on the page.
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form has a token");
    curl(&[
        "-b",
        jar,
        "-c",
        jar,
        "-o",
        "/dev/null",
        "-d",
        &format!("csrf={token}"),
        "-d",
        "author=tester",
        "-d",
        "body=hello from a berth test",
        &url,
    ])
    .expect("the post is accepted");
    let page = curl(&["-b", jar, &url]).unwrap();
    assert!(page.contains("hello from a berth test"), "{page}");

    // It runs as the image's user, from its working directory, and logs to its output.
    let whoami = env.ok(&["exec", "microblog", "sh", "-c", "id -un; pwd"]);
    assert_eq!(whoami, "microblog\n/home/microblog\n");
    let logs = env.ok(&["logs", "microblog"]);
    assert!(logs.contains("POST / HTTP/1.1\" 302"), "{logs}");

    // --rm: stopping removes it.
    env.ok(&["stop", "microblog"]);
    env.wait_for(
        "the container to be removed",
        Duration::from_secs(10),
        || env.ok(&["ps", "-a", "-q"]).is_empty(),
    );
    env.assert_clean();
}
