//! Real containers, run as root: isolation, identity, exit codes, lifecycle, logs,
//! restart policies, volumes, exec and failure handling, each ending with a leak check.

mod common;

use std::time::Duration;

use common::Env;

#[test]
fn run_prints_and_exits_with_the_containers_code() {
    let env = Env::new();
    let r = env.berth(&["run", "--rm", "base:latest", "echo", "hi"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{}", r.stderr);
    assert_eq!(
        env.berth(&["run", "--rm", "base", "sh", "-c", "exit 3"])
            .code,
        3
    );
    let r = env.berth(&["run", "--rm", "base", "no-such-program"]);
    assert_eq!(r.code, 127);
    assert!(
        r.stderr
            .contains("\"no-such-program\": executable file not found in $PATH"),
        "{}",
        r.stderr
    );
    let r = env.berth(&["run", "--rm", "base", "/etc/passwd"]);
    assert_eq!(r.code, 126);
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    env.assert_clean();
}

#[test]
fn the_container_is_isolated() {
    let env = Env::new();
    let script = r#"
        echo "pid=$$"
        echo "host=$(hostname)"
        echo "init=$(cat /proc/1/comm)"
        echo "procs=$(ls /proc | grep -c '^[0-9]')"
        echo "keys=$(wc -c < /proc/keys)"
        echo "firmware=$(ls /sys/firmware | wc -l)"
        mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo mount=allowed || echo mount=denied
        hostname other 2>/dev/null && echo sethostname=allowed || echo sethostname=denied
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo procsys=writable || echo procsys=readonly
        touch /sys/x 2>/dev/null && echo sys=writable || echo sys=readonly
        grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
        echo "links=$(ip -o link | wc -l)"
    "#;
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "box",
        "base",
        "sh",
        "-c",
        script,
    ]);
    for want in [
        "pid=1\n",
        "host=box\n",
        "init=sh\n",
        "keys=0\n",
        "firmware=0\n",
        "mount=denied\n",
        "sethostname=denied\n",
        "procsys=readonly\n",
        "sys=readonly\n",
        "CapEff:\t00000000a80425fb\n",
        "CapBnd:\t00000000a80425fb\n",
        "NoNewPrivs:\t1\n",
        "links=1\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // sh and the pipeline counting: none of the host's processes.
    let procs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "{out}");
    env.assert_clean();
}

#[test]
fn capabilities_can_be_added_and_dropped() {
    let env = Env::new();
    let caps = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["base", "grep", "CapEff", "/proc/self/status"]);
        env.ok(&args)
    };
    assert_eq!(caps(&["--cap-drop", "ALL"]), "CapEff:\t0000000000000000\n");
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]),
        "CapEff:\t0000000000001000\n"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "base",
        "sh",
        "-c",
        "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted",
    ]);
    assert_eq!(out, "mounted\n");
    env.assert_clean();
}

#[test]
fn users_groups_environment_and_workdir() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["run", "--rm", "-u", "app", "base", "id"]),
        "uid=1000(app) gid=1000(app) groups=1000(app),1001(extra)\n"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "-u", "1000:1001", "base", "id"]),
        "uid=1000(app) gid=1001(extra) groups=1001(extra)\n"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "-u", "4242", "base", "id", "-u"]),
        "4242\n"
    );
    // A non-root user has no effective capabilities.
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "-u",
            "app",
            "base",
            "grep",
            "CapEff",
            "/proc/self/status"
        ]),
        "CapEff:\t0000000000000000\n"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-e",
        "EMPTY=",
        "-w",
        "/srv/app",
        "-u",
        "app",
        "base",
        "sh",
        "-c",
        "echo $GREETING; pwd; echo home=$HOME; echo empty=[$EMPTY]",
    ]);
    assert_eq!(out, "hi\n/srv/app\nhome=/home/app\nempty=[]\n");
    let r = env.berth(&["run", "--rm", "-u", "ghost", "base", "id"]);
    assert_eq!(r.code, 125);
    assert_eq!(
        r.stderr,
        "berth: unable to find user ghost: no matching entries in passwd file\n"
    );
    env.assert_clean();
}

#[test]
fn memory_limit_oom_is_reported() {
    let env = Env::new();
    let r = env.berth(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "base",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(r.code, 137, "{}{}", r.stdout, r.stderr);
    let state = &env.inspect("hog")["State"];
    assert_eq!(state["OOMKilled"], true);
    assert_eq!(state["ExitCode"], 137);
    assert_eq!(env.inspect("hog")["HostConfig"]["Memory"], 16 << 20);
    env.ok(&["rm", "hog"]);
    env.assert_clean();
}

#[test]
fn pids_and_cpu_limits_are_applied() {
    let env = Env::new();
    let id = env
        .ok(&[
            "run",
            "-d",
            "--pids-limit",
            "20",
            "--cpus",
            "0.5",
            "base",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let cg = |file: &str| {
        let path = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path().join(&env.paths.cgroup_parent).join(&id).join(file))
            .find(|p| p.exists());
        std::fs::read_to_string(path.unwrap_or_else(|| panic!("no cgroup file {file}"))).unwrap()
    };
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(cg("pids.max").trim(), "20");
        assert_eq!(cg("cpu.max").trim(), "50000 100000");
    } else {
        assert_eq!(cg("pids.max").trim(), "20");
        assert_eq!(cg("cpu.cfs_quota_us").trim(), "50000");
    }
    let r = env.berth(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 5 & done; wait",
    ]);
    assert_ne!(r.code, 0, "30 processes fit under a limit of 20");
    env.ok(&["rm", "-f", &id]);
    env.assert_clean();
}

#[test]
fn stop_kills_what_ignores_the_stop_signal_and_is_quick_otherwise() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "base",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "base",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    env.ok(&["stop", "-t", "1", "stubborn", "polite"]);
    assert_eq!(
        env.inspect("stubborn")["State"]["ExitCode"],
        137,
        "killed after the timeout"
    );
    assert_eq!(
        env.inspect("polite")["State"]["ExitCode"],
        0,
        "exited on SIGTERM"
    );
    assert_eq!(env.ok(&["ps", "-q"]), "");
    env.ok(&["rm", "stubborn", "polite"]);
    env.assert_clean();
}

#[test]
fn detached_containers_ps_logs_kill_wait() {
    let env = Env::new();
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-e",
        "GREETING=hi",
        "-w",
        "/srv",
        "-u",
        "1000:1000",
        "--memory",
        "64m",
        "base",
        "httpd",
        "-f",
        "-p",
        "5000",
        "-h",
        "/var/www",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = env.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains(" web\n"),
        "{ps}"
    );
    assert_eq!(env.ok(&["ps", "-q"]).trim(), &id[..12]);
    // exec joins its namespaces, as the container's user.
    assert_eq!(env.ok(&["exec", "web", "id", "-u"]), "1000\n");
    assert_eq!(env.ok(&["exec", "-u", "root", "web", "id", "-u"]), "0\n");
    assert_eq!(
        env.ok(&[
            "exec",
            &id[..8],
            "wget",
            "-qO-",
            "http://127.0.0.1:5000/index.html"
        ]),
        "<h1>hello from berth</h1>\n"
    );
    let procs = env.ok(&["exec", "web", "ps", "-o", "pid,comm"]);
    assert!(procs.contains("    1 httpd"), "{procs}");
    assert_eq!(env.berth(&["exec", "web", "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(env.berth(&["exec", "web", "nothere"]).code, 127);

    env.ok(&["kill", "-s", "KILL", "web"]);
    assert_eq!(env.ok(&["wait", "web"]), "137\n");
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    let r = env.berth(&["exec", "web", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);
    env.ok(&["rm", id]);
    env.assert_clean();
}

#[test]
fn logs_keep_both_streams_and_follow() {
    let env = Env::new();
    // The two streams are separate pipes: the pause keeps their order in the log certain.
    env.ok(&[
        "run",
        "--name",
        "talker",
        "base",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; sleep 0.2; echo out2",
    ]);
    let r = env.berth(&["logs", "talker"]);
    assert_eq!(r.stdout, "out1\nout2\n");
    assert_eq!(r.stderr, "err1\n");
    assert_eq!(env.ok(&["logs", "--tail", "1", "talker"]), "out2\n");
    let stamped = env.ok(&["logs", "-t", "--tail", "1", "talker"]);
    assert!(
        stamped.ends_with(" out2\n") && stamped.starts_with("20"),
        "{stamped}"
    );

    env.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "base",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
    ]);
    // -f returns once the container has exited, with every line.
    let followed = env.ok(&["logs", "-f", "ticker"]);
    assert_eq!(followed, "tick 1\ntick 2\ntick 3\n");
    env.ok(&["rm", "talker", "ticker"]);
    env.assert_clean();
}

#[test]
fn logs_rotate_by_size() {
    let env = Env::new();
    env.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "base",
        "sh",
        "-c",
        "seq 1 2000",
    ]);
    let lines: Vec<u32> = env
        .ok(&["logs", "chatty"])
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(lines.last(), Some(&2000));
    assert!(lines.len() < 2000, "older lines were rotated away");
    assert!(lines.windows(2).all(|w| w[1] == w[0] + 1));
    env.ok(&["rm", "chatty"]);
    env.assert_clean();
}

#[test]
fn rm_flag_removes_the_container_when_it_exits() {
    let env = Env::new();
    let id = env.ok(&["run", "-d", "--rm", "base", "sh", "-c", "sleep 0.2"]);
    let id = id.trim().to_string();
    env.wait_for(
        "the container to be removed",
        Duration::from_secs(10),
        || env.berth(&["inspect", &id]).code != 0,
    );
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    env.assert_clean();
}

#[test]
fn on_failure_restarts_exactly_as_many_times_as_asked() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "base",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    assert_eq!(env.ok(&["wait", "flaky"]), "3\n");
    env.wait_for("the restarts to finish", Duration::from_secs(20), || {
        env.inspect("flaky")["State"]["Status"] == "exited"
    });
    assert_eq!(env.inspect("flaky")["RestartCount"], 2);
    assert_eq!(env.ok(&["logs", "flaky"]), "attempt\nattempt\nattempt\n");
    env.ok(&["rm", "flaky"]);

    // always: restarted until stopped, and stop is final.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "phoenix",
        "--restart",
        "always",
        "base",
        "sh",
        "-c",
        "sleep 0.1",
    ]);
    env.wait_for("a restart", Duration::from_secs(20), || {
        env.inspect("phoenix")["RestartCount"].as_u64() >= Some(2)
    });
    env.ok(&["stop", "-t", "1", "phoenix"]);
    assert_eq!(env.inspect("phoenix")["State"]["Status"], "exited");
    env.ok(&["rm", "phoenix"]);
    env.assert_clean();
}

#[test]
fn named_volumes_outlive_containers_and_binds_can_be_read_only() {
    let env = Env::new();
    env.ok(&["volume", "create", "data"]);
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "base",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        env.ok(&["run", "--rm", "-v", "data:/data", "base", "cat", "/data/f"]),
        "kept\n"
    );
    assert!(env.ok(&["volume", "ls"]).contains("data"));

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let bind = format!("{}:/x:ro", host.path().display());
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "base",
        "sh",
        "-c",
        "cat /x/in; touch /x/new 2>/dev/null && echo writable || echo read-only",
    ]);
    assert_eq!(out, "from host\nread-only\n");
    let bind = format!("{}:/x", host.path().display());
    env.ok(&["run", "--rm", "-v", &bind, "base", "touch", "/x/new"]);
    assert!(host.path().join("new").exists());

    env.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "data:/data",
        "base",
        "sleep",
        "60",
    ]);
    let r = env.berth(&["volume", "rm", "data"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("in use by container user"),
        "{}",
        r.stderr
    );
    env.ok(&["rm", "-f", "user"]);
    env.ok(&["volume", "rm", "data"]);
    env.assert_clean();
}

#[test]
fn read_only_root_filesystem() {
    let env = Env::new();
    let out = env.ok(&["run", "--rm", "--read-only", "base", "sh", "-c", "touch /x 2>/dev/null && echo writable || echo read-only; echo ok > /dev/shm/y && cat /dev/shm/y"]);
    assert_eq!(out, "read-only\nok\n");
    env.assert_clean();
}

#[test]
fn entrypoint_and_arguments_combine_like_docker() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["run", "--rm", "--entrypoint", "echo", "base", "a", "b"]),
        "a b\n"
    );
    let r = env.berth(&["run", "--rm", "base"]);
    assert_eq!(r.code, 125, "the imported image has no command");
    assert!(r.stderr.contains("no command specified"), "{}", r.stderr);
    env.assert_clean();
}

#[test]
fn a_dead_monitor_is_reported_and_rm_still_cleans_up() {
    let env = Env::new();
    env.ok(&["run", "-d", "--name", "orphan", "base", "sleep", "60"]);
    let monitor = env.inspect("orphan")["State"]["MonitorPid"]
        .as_i64()
        .unwrap();
    assert!(monitor > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_for("the monitor to die", Duration::from_secs(5), || {
        env.ok(&["ps"]).contains("(monitor dead)")
    });
    assert_eq!(env.inspect("orphan")["State"]["Running"], true);
    env.ok(&["rm", "-f", "orphan"]);
    env.assert_clean();
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--bogus", "base", "true"],
            "unexpected argument '--bogus'",
        ),
        (
            &["run", "-e", "=x", "base", "true"],
            "invalid environment variable \"=x\"",
        ),
        (
            &["run", "-v", "data", "base", "true"],
            "invalid volume \"data\"",
        ),
        (
            &["run", "-v", "/a:/b:rx", "base", "true"],
            "unknown mode \"rx\"",
        ),
        (
            &["run", "-u", "app:nogroup-here", "base", "true"],
            "unable to find group nogroup-here",
        ),
        (
            &["run", "--memory", "lots", "base", "true"],
            "invalid size \"lots\"",
        ),
        (
            &["run", "--cpus", "99", "base", "true"],
            "invalid --cpus \"99\"",
        ),
        (
            &["run", "--restart", "sometimes", "base", "true"],
            "invalid --restart \"sometimes\"",
        ),
        (
            &["run", "--rm", "--restart", "always", "base", "true"],
            "conflicting options",
        ),
        (
            &["run", "-w", "relative", "base", "true"],
            "needs to be an absolute path",
        ),
        (
            &["run", "--name", "bad/name", "base", "true"],
            "invalid container name",
        ),
        (
            &["run", "--ulimit", "nofile=2000000:2000000", "base", "true"],
            "setting RlimitNofile",
        ),
        (&["exec", "ghost", "true"], "no such container: ghost"),
        (&["stop", "ghost"], "no such container: ghost"),
    ];
    env.expect_errors(cases);
    // An absent image is pulled first (by a child `berth pull`); with no registry there,
    // the pull's error ends the run.
    let r = env.berth(&["run", "localhost:1/nosuchimage"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .starts_with("Unable to find image 'localhost:1/nosuchimage:latest' locally\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot reach registry localhost:1"),
        "{}",
        r.stderr
    );
    // The kernel refusing the rlimit happened inside a created container: it stays,
    // exited with the error, like Docker's; removing it leaves nothing.
    for id in env.ok(&["ps", "-a", "-q"]).lines() {
        env.ok(&["rm", id]);
    }

    env.ok(&["run", "-d", "--name", "taken", "base", "sleep", "60"]);
    let r = env.berth(&["run", "--name", "taken", "base", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("name \"taken\" is already in use"),
        "{}",
        r.stderr
    );
    let r = env.berth(&["rm", "taken"]);
    assert!(
        r.stderr.contains("cannot remove running container taken"),
        "{}",
        r.stderr
    );
    env.ok(&["rm", "-f", "taken"]);
    env.assert_clean();
}

#[test]
fn not_root_is_refused_clearly() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    // The build directory may be out of an unprivileged user's reach (CI builds under
    // /root): run a copy from a directory anyone can enter.
    let dir = env.file("bin");
    std::fs::create_dir(&dir).unwrap();
    let berth = dir.join("berth");
    std::fs::copy(common::BERTH, &berth).unwrap();
    for open in [&dir, env.file("").as_path()] {
        std::fs::set_permissions(open, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let out = env
        .command_of(&berth, &["run", "--rm", "base", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.assert_clean();
}

#[test]
fn foreground_run_forwards_signals_and_returns_the_exit_code() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let mut child = env
        .command(&[
            "run",
            "--rm",
            "base",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got TERM\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    env.assert_clean();
}

#[test]
fn an_entrypoint_script_that_execs_leaves_its_program_as_pid_1() {
    let env = Env::new();
    // The shape of a boot.sh ending in `exec gunicorn ...`.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "booted",
        "--entrypoint",
        "/bin/sh",
        "base",
        "-c",
        "echo booting; exec sleep 60",
    ]);
    env.wait_for("the script to exec", Duration::from_secs(10), || {
        env.ok(&["exec", "booted", "cat", "/proc/1/comm"]) == "sleep\n"
    });
    env.wait_for("the script's output", Duration::from_secs(10), || {
        env.ok(&["logs", "booted"]) == "booting\n"
    });
    env.ok(&["rm", "-f", "booted"]);
    env.assert_clean();
}

#[test]
fn a_terminal_with_t_and_typed_input_with_it() {
    use std::io::{Read, Write};
    let env = Env::new();
    // The user's terminal, as a test can have one.
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = env
        .command(&[
            "run",
            "-it",
            "--rm",
            "--network",
            "none",
            "base",
            "sh",
            "-c",
            "tty; read line; echo got:$line; exit 4",
        ])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let output = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last process with the terminal open is gone.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains("got:") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    master.write_all(b"hello\r").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(4));
    let out = output.join().unwrap();
    assert!(
        out.contains("/dev/pts/0"),
        "the container has its own terminal: {out:?}"
    );
    assert!(out.contains("got:hello"), "{out:?}");

    // Detached with -t: the terminal's output goes to the logs.
    env.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tty",
        "--network",
        "none",
        "base",
        "sh",
        "-c",
        "tty; echo ready",
    ]);
    assert_eq!(env.ok(&["wait", "tty"]), "0\n");
    let logs = env.ok(&["logs", "tty"]);
    assert!(
        logs.contains("/dev/pts/0") && logs.contains("ready"),
        "{logs:?}"
    );
    env.ok(&["rm", "tty"]);
    env.assert_clean();
}
