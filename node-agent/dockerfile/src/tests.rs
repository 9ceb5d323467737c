//! Whole-file tests: each instruction's forms, every error, expansion, display, and
//! properties over arbitrary input.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn one(text: &str) -> Instruction {
    let dockerfile = parse("Dockerfile", &format!("FROM scratch\n{text}\n"))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let [step] = dockerfile.stages[0].steps.as_slice() else {
        panic!("{text}: not one step");
    };
    step.instruction.clone()
}

fn error(text: &str) -> String {
    match parse("Dockerfile", text) {
        Ok(parsed) => panic!("{text:?} parsed: {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| s(w)).collect()
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        sources: sources.iter().map(|p| CopySource::Path(s(p))).collect(),
        dest: s(dest),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        checksum: None,
        keep_git_dir: false,
    }
}

fn run(command: Command) -> Run {
    Run {
        command,
        network: None,
        mounts: Vec::new(),
        security: None,
        heredocs: Vec::new(),
        heredoc_line: None,
    }
}

fn shell(text: &str) -> Command {
    Command::Shell(s(text))
}

fn exec(words: &[&str]) -> Command {
    Command::Exec(strings(words))
}

#[test]
fn every_instruction() {
    let cases: Vec<(&str, Instruction)> = vec![
        ("ADD a b", Instruction::Add(copy(&["a"], "b"))),
        (
            "add --chown=1:2 --chmod=644 --link --checksum=sha256:abc --keep-git-dir https://x/y.git /src",
            Instruction::Add(Copy {
                chown: Some(s("1:2")),
                chmod: Some(s("644")),
                link: true,
                checksum: Some(s("sha256:abc")),
                keep_git_dir: true,
                ..copy(&["https://x/y.git"], "/src")
            }),
        ),
        ("COPY a b c/", Instruction::Copy(copy(&["a", "b"], "c/"))),
        (
            "COPY --from=build --chown=app:app --chmod=755 --link=false --parents --exclude=*.md --exclude=x app /app",
            Instruction::Copy(Copy {
                from: Some(s("build")),
                chown: Some(s("app:app")),
                chmod: Some(s("755")),
                parents: true,
                exclude: strings(&["*.md", "x"]),
                ..copy(&["app"], "/app")
            }),
        ),
        (
            "COPY [\"a b\", \"/c d/\"]",
            Instruction::Copy(copy(&["a b"], "/c d/")),
        ),
        (
            "ARG A B=2 C=\"x y\" D=",
            Instruction::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: None,
                },
                ArgDecl {
                    name: s("B"),
                    default: Some(s("2")),
                },
                ArgDecl {
                    name: s("C"),
                    default: Some(s("\"x y\"")),
                },
                ArgDecl {
                    name: s("D"),
                    default: Some(s("")),
                },
            ]),
        ),
        (
            "CMD [\"a\", \"b c\"]",
            Instruction::Cmd(exec(&["a", "b c"])),
        ),
        ("CMD echo hi", Instruction::Cmd(shell("echo hi"))),
        (
            "CMD [\"unterminated\"",
            Instruction::Cmd(shell("[\"unterminated\"")),
        ),
        ("CMD", Instruction::Cmd(shell(""))),
        (
            "ENTRYPOINT [\"./boot.sh\"]",
            Instruction::Entrypoint(exec(&["./boot.sh"])),
        ),
        (
            "ENTRYPOINT exec app",
            Instruction::Entrypoint(shell("exec app")),
        ),
        (
            "ENV A=1 B=\"x y\" C=a\\ b",
            Instruction::Env(vec![
                (s("A"), s("1")),
                (s("B"), s("\"x y\"")),
                (s("C"), s("a\\ b")),
            ]),
        ),
        (
            "ENV A some value  here",
            Instruction::Env(vec![(s("A"), s("some value  here"))]),
        ),
        ("ENV E=", Instruction::Env(vec![(s("E"), s(""))])),
        (
            "LABEL a=b \"c d\"=e",
            Instruction::Label(vec![(s("a"), s("b")), (s("\"c d\""), s("e"))]),
        ),
        (
            "LABEL maintainer me too",
            Instruction::Label(vec![(s("maintainer"), s("me too"))]),
        ),
        (
            "EXPOSE 80 443/tcp\t53/udp",
            Instruction::Expose(strings(&["80", "443/tcp", "53/udp"])),
        ),
        (
            "HEALTHCHECK NONE",
            Instruction::Healthcheck(Healthcheck::None),
        ),
        (
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=0 --retries=3 CMD curl -f http://localhost/",
            Instruction::Healthcheck(Healthcheck::Check {
                test: shell("curl -f http://localhost/"),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(90)),
                start_period: Some(Duration::from_millis(500)),
                start_interval: None,
                retries: Some(3),
            }),
        ),
        (
            "healthcheck cmd [\"/bin/check\"]",
            Instruction::Healthcheck(Healthcheck::Check {
                test: exec(&["/bin/check"]),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            }),
        ),
        (
            "MAINTAINER Jane <j@example.com>",
            Instruction::Maintainer(s("Jane <j@example.com>")),
        ),
        (
            "ONBUILD RUN echo hi",
            Instruction::OnBuild(Box::new(Instruction::Run(run(shell("echo hi"))))),
        ),
        (
            "ONBUILD COPY --from=x a b",
            Instruction::OnBuild(Box::new(Instruction::Copy(Copy {
                from: Some(s("x")),
                ..copy(&["a"], "b")
            }))),
        ),
        (
            "RUN chmod +x boot.sh",
            Instruction::Run(run(shell("chmod +x boot.sh"))),
        ),
        (
            "RUN [\"echo\", \"hi\"]",
            Instruction::Run(run(exec(&["echo", "hi"]))),
        ),
        ("RUN [not json", Instruction::Run(run(shell("[not json")))),
        (
            "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=x --network=none --security=insecure make",
            Instruction::Run(Run {
                mounts: strings(&["type=cache,target=/root/.cache", "type=secret,id=x"]),
                network: Some(s("none")),
                security: Some(s("insecure")),
                ..run(shell("make"))
            }),
        ),
        (
            "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]",
            Instruction::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"])),
        ),
        ("STOPSIGNAL SIGKILL", Instruction::StopSignal(s("SIGKILL"))),
        ("USER app:app", Instruction::User(s("app:app"))),
        (
            "VOLUME /data /logs",
            Instruction::Volume(strings(&["/data", "/logs"])),
        ),
        (
            "VOLUME [\"/data\"]",
            Instruction::Volume(strings(&["/data"])),
        ),
        ("WORKDIR /app", Instruction::Workdir(s("/app"))),
        ("WorkDir   /my app  ", Instruction::Workdir(s("/my app"))),
    ];
    for (text, want) in cases {
        assert_eq!(one(text), want, "{text}");
    }
}

#[test]
fn stages_and_meta_args() {
    let text = "\
# syntax=docker/dockerfile:1.7
ARG BASE=alpine
ARG V
FROM --platform=$BUILDPLATFORM ${BASE}:${V} AS Build
RUN make

from scratch
COPY --from=build /out /
";
    let parsed = parse("Dockerfile", text).unwrap();
    assert_eq!(parsed.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(parsed.escape, '\\');
    assert_eq!(parsed.meta_args.len(), 2);
    assert_eq!(parsed.meta_args[0].line, 2);
    let [build, last] = parsed.stages.as_slice() else {
        panic!("two stages")
    };
    assert_eq!(build.line, 4);
    assert_eq!(build.base, "${BASE}:${V}");
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(build.steps[0].line, 5);
    assert_eq!(last.base, "scratch");
    assert_eq!(last.name, None);
    assert_eq!(last.steps[0].line, 8);

    let meta = HashMap::from([("BASE", "alpine"), ("V", "3.20")]);
    let vars = |name: &str| meta.get(name).map(|v| v.to_string());
    assert_eq!(
        expand_word(&build.base, parsed.escape, &vars).unwrap(),
        "alpine:3.20"
    );
}

#[test]
fn escape_directive_changes_continuation_and_escapes() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir C:\\ `\n  && echo done\nCOPY a` b c:\\dest\\\n";
    let parsed = parse("Dockerfile", text).unwrap();
    assert_eq!(parsed.escape, '`');
    let steps = &parsed.stages[0].steps;
    assert_eq!(
        steps[0].instruction,
        Instruction::Run(run(shell("dir C:\\   && echo done")))
    );
    // COPY splits its arguments on whitespace before any escape is looked at (as
    // BuildKit does); a trailing escape is then dropped.
    let expanded = steps[1]
        .expand("Dockerfile", parsed.escape, &|_| None)
        .unwrap();
    assert_eq!(expanded, Instruction::Copy(copy(&["a", "b"], "c:\\dest\\")));
}

#[test]
fn continuation_skips_comments_and_blank_lines() {
    let text = "FROM a\nRUN apt-get update && \\\n    # a comment\n\n    apt-get install -y \\  \n      curl\n";
    let parsed = parse("Dockerfile", text).unwrap();
    assert_eq!(
        parsed.stages[0].steps[0].instruction,
        Instruction::Run(run(shell(
            "apt-get update &&     apt-get install -y       curl"
        )))
    );
    assert_eq!(
        parsed.stages[0].steps[0].instruction.to_string(),
        "RUN apt-get update &&     apt-get install -y       curl"
    );
}

#[test]
fn heredocs() {
    let text = "FROM a\nRUN <<EOF\necho one\necho $HOME\nEOF\nRUN python3 <<-PY > out\n\tprint(1)\n\tPY\nRUN cat <<A <<'B'\na\nA\nb $x\nB\nCOPY <<EOF /file\nhello $NAME\nEOF\nCOPY <<\"RAW\" <<-TABS /dir/\nraw $NAME\nRAW\n\t\ttabbed\n\tTABS\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nRUN echo done\n";
    let parsed = parse("Dockerfile", text).unwrap();
    let steps = &parsed.stages[0].steps;
    let Instruction::Run(lone) = &steps[0].instruction else {
        panic!()
    };
    assert_eq!(lone.command, shell("echo one\necho $HOME\n"));
    assert_eq!(lone.heredoc_line.as_deref(), Some("<<EOF"));
    assert_eq!(steps[0].instruction.to_string(), "RUN <<EOF");
    let Instruction::Run(python) = &steps[1].instruction else {
        panic!()
    };
    assert_eq!(python.command, shell("python3 <<-PY > out\n\tprint(1)\nPY"));
    assert_eq!(steps[1].instruction.to_string(), "RUN python3 <<-PY > out");
    let Instruction::Run(two) = &steps[2].instruction else {
        panic!()
    };
    assert_eq!(two.command, shell("cat <<A <<'B'\na\nA\nb $x\nB"));
    assert_eq!(two.heredocs.len(), 2);
    assert!(two.heredocs[0].expand && !two.heredocs[1].expand);
    assert_eq!(steps[2].line, 9);
    assert_eq!(steps[3].line, 14);
    let Instruction::Copy(inline) = &steps[3].instruction else {
        panic!()
    };
    assert_eq!(
        inline.sources,
        [CopySource::Inline {
            name: s("EOF"),
            content: s("hello $NAME\n"),
            expand: true
        }]
    );
    assert_eq!(steps[3].instruction.to_string(), "COPY <<EOF /file");
    let Instruction::Copy(both) = &steps[4].instruction else {
        panic!()
    };
    assert_eq!(
        both.sources,
        [
            CopySource::Inline {
                name: s("RAW"),
                content: s("raw $NAME\n"),
                expand: false
            },
            CopySource::Inline {
                name: s("TABS"),
                content: s("tabbed\n"),
                expand: true
            },
        ]
    );
    // JSON form opens no heredoc, so the next line is an instruction.
    assert_eq!(
        steps[5].instruction,
        Instruction::Run(run(exec(&["sh", "-c", "cat <<EOF"])))
    );
    assert_eq!(steps[6].line, 23);

    let vars = |name: &str| (name == "NAME").then(|| s("\"berth\""));
    let expanded = steps[4].expand("Dockerfile", '\\', &vars).unwrap();
    let Instruction::Copy(expanded) = expanded else {
        panic!()
    };
    assert_eq!(
        expanded.sources[0], both.sources[0],
        "quoted terminator: literal body"
    );
    let Instruction::Copy(hello) = steps[3].expand("Dockerfile", '\\', &vars).unwrap() else {
        panic!()
    };
    assert_eq!(
        hello.sources,
        [CopySource::Inline {
            name: s("EOF"),
            content: s("hello \"berth\"\n"),
            expand: true
        }]
    );
}

#[test]
fn shebang_heredoc_is_a_script() {
    let parsed = parse(
        "Dockerfile",
        "FROM a\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
    )
    .unwrap();
    let Instruction::Run(run) = &parsed.stages[0].steps[0].instruction else {
        panic!()
    };
    assert_eq!(run.script().map(|d| d.name.as_str()), Some("EOF"));
}

#[test]
fn errors_name_file_line_and_problem() {
    let cases = [
        (
            "",
            "the Dockerfile (Dockerfile) is empty; it needs at least a FROM instruction",
        ),
        (
            "# only a comment\n\n",
            "the Dockerfile (Dockerfile) is empty; it needs at least a FROM instruction",
        ),
        (
            "ARG A\n",
            "Dockerfile: no FROM instruction; a Dockerfile needs at least one build stage",
        ),
        (
            "RUN x\nFROM a\n",
            "Dockerfile:1: RUN before the first FROM; only ARG may come before FROM",
        ),
        (
            "FROM a\n\n\n\n\n\nCOPPY a b\n",
            "Dockerfile:7: unknown instruction \"COPPY\" (did you mean COPY?)",
        ),
        (
            "FROM a\nFROBNICATE\n",
            "Dockerfile:2: unknown instruction \"FROBNICATE\"",
        ),
        (
            "FROM a\n\nCOPY onlyone\n",
            "Dockerfile:3: COPY requires at least two arguments (sources and a destination)",
        ),
        (
            "FROM a\nADD x\n",
            "Dockerfile:2: ADD requires at least two arguments (sources and a destination)",
        ),
        (
            "FROM a\nCOPY --foo a b\n",
            "Dockerfile:2: unknown flag: --foo",
        ),
        (
            "FROM a\nADD --from=x a b\n",
            "Dockerfile:2: unknown flag: --from",
        ),
        ("FROM a\nENV --x=1 A=b\n", "Dockerfile:2: unknown flag: --x"),
        (
            "FROM --platform a\n",
            "Dockerfile:1: missing a value on flag: --platform",
        ),
        (
            "FROM a\nCOPY --from=a --from=b x y\n",
            "Dockerfile:2: duplicate flag specified: --from",
        ),
        (
            "FROM a\nCOPY --link=maybe x y\n",
            "Dockerfile:2: expecting boolean value for flag --link, not: maybe",
        ),
        (
            "FROM a\nRUN <<EOF\necho\n",
            "Dockerfile:2: unterminated heredoc: no line \"EOF\" ends it before line 3",
        ),
        (
            "FROM a\nCOPY a <<EOF\nx\nEOF\n",
            "Dockerfile:2: COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM\n",
            "Dockerfile:1: FROM requires either one or three arguments (FROM image [AS name])",
        ),
        (
            "FROM a b\n",
            "Dockerfile:1: FROM requires either one or three arguments (FROM image [AS name])",
        ),
        (
            "FROM a AS 1x\n",
            "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
        ),
        (
            "FROM a\nSHELL /bin/sh -c\n",
            "Dockerfile:2: SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"], not: /bin/sh -c",
        ),
        (
            "FROM a\nSHELL []\n",
            "Dockerfile:2: SHELL requires at least one argument",
        ),
        (
            "FROM a\nRUN [\"a\", 1]\n",
            "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (
            "FROM a\nRUN\n",
            "Dockerfile:2: RUN requires at least one argument",
        ),
        (
            "FROM a\nENV\n",
            "Dockerfile:2: ENV requires at least one argument",
        ),
        (
            "FROM a\nENV A\n",
            "Dockerfile:2: ENV must have two arguments (name value, or name=value)",
        ),
        (
            "FROM a\nENV A=1 B\n",
            "Dockerfile:2: syntax error: can't find = in \"B\"; it must be of the form name=value",
        ),
        (
            "FROM a\nENV =x\n",
            "Dockerfile:2: ENV names can not be blank",
        ),
        (
            "FROM a\nLABEL\n",
            "Dockerfile:2: LABEL requires at least one argument",
        ),
        (
            "FROM a\nARG\n",
            "Dockerfile:2: ARG requires at least one argument",
        ),
        (
            "FROM a\nARG =x\n",
            "Dockerfile:2: ARG names can not be blank",
        ),
        (
            "FROM a\nEXPOSE\n",
            "Dockerfile:2: EXPOSE requires at least one argument",
        ),
        (
            "FROM a\nVOLUME\n",
            "Dockerfile:2: VOLUME requires at least one argument",
        ),
        (
            "FROM a\nVOLUME [\"/a\", \" \"]\n",
            "Dockerfile:2: VOLUME specified can not be an empty string",
        ),
        (
            "FROM a\nUSER\n",
            "Dockerfile:2: USER requires exactly one argument",
        ),
        (
            "FROM a\nWORKDIR\n",
            "Dockerfile:2: WORKDIR requires exactly one argument",
        ),
        (
            "FROM a\nSTOPSIGNAL\n",
            "Dockerfile:2: STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM a\nMAINTAINER\n",
            "Dockerfile:2: MAINTAINER requires exactly one argument",
        ),
        (
            "FROM a\nONBUILD\n",
            "Dockerfile:2: ONBUILD requires at least one argument",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "Dockerfile:2: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM a\nONBUILD FROM b\n",
            "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD MAINTAINER me\n",
            "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD RUNN x\n",
            "Dockerfile:2: unknown instruction \"RUNN\" (did you mean RUN?)",
        ),
        (
            "FROM a\nHEALTHCHECK\n",
            "Dockerfile:2: HEALTHCHECK requires at least one argument",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x\n",
            "Dockerfile:2: HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK CMD\n",
            "Dockerfile:2: Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK PING x\n",
            "Dockerfile:2: unknown type \"PING\" in HEALTHCHECK (try CMD or NONE)",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=1us CMD x\n",
            "Dockerfile:2: Interval \"--interval\" cannot be less than 1ms",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=5 CMD x\n",
            "Dockerfile:2: --timeout: missing unit in duration \"5\"",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
            "Dockerfile:2: --retries cannot be negative (-1)",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=x CMD x\n",
            "Dockerfile:2: --retries must be a number, not \"x\"",
        ),
        (
            "# escape=x\nFROM a\n",
            "Dockerfile:1: invalid escape token 'x' does not match ` or \\",
        ),
        (
            "# escape=\\\n# Escape=`\nFROM a\n",
            "Dockerfile:2: only one escape parser directive can be used",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text:?}");
    }
}

#[test]
fn expansion_where_docker_expands() {
    let env = HashMap::from([
        ("A", "a"),
        ("DIR", "/srv/app"),
        ("USR", "app"),
        ("PORT", "8080"),
        ("SP", "x y"),
    ]);
    let vars = |name: &str| env.get(name).map(|v| v.to_string());
    let cases: Vec<(&str, Instruction)> = vec![
        (
            "COPY --from=$A --chown=${USR}:${USR} --chmod=${M:-755} \"$DIR/x\" $SP ${DIR}/",
            Instruction::Copy(Copy {
                from: Some(s("a")),
                chown: Some(s("app:app")),
                chmod: Some(s("755")),
                ..copy(&["/srv/app/x", "x y"], "/srv/app/")
            }),
        ),
        (
            "ADD --checksum=$A $A.tar /",
            Instruction::Add(Copy {
                checksum: Some(s("a")),
                ..copy(&["a.tar"], "/")
            }),
        ),
        (
            "ENV A=b B=$A C=\"$SP z\" D='$A'",
            Instruction::Env(vec![
                (s("A"), s("b")),
                (s("B"), s("a")),
                (s("C"), s("x y z")),
                (s("D"), s("$A")),
            ]),
        ),
        (
            "ENV L $A and \"q\"",
            Instruction::Env(vec![(s("L"), s("a and q"))]),
        ),
        ("LABEL v=$A", Instruction::Label(vec![(s("v"), s("a"))])),
        (
            "ARG X=${A}b Y",
            Instruction::Arg(vec![
                ArgDecl {
                    name: s("X"),
                    default: Some(s("ab")),
                },
                ArgDecl {
                    name: s("Y"),
                    default: None,
                },
            ]),
        ),
        (
            "EXPOSE $PORT ${PORT}/udp",
            Instruction::Expose(strings(&["8080", "8080/udp"])),
        ),
        (
            "STOPSIGNAL ${SIG:-SIGTERM}",
            Instruction::StopSignal(s("SIGTERM")),
        ),
        ("USER $USR", Instruction::User(s("app"))),
        (
            "VOLUME $DIR/data",
            Instruction::Volume(strings(&["/srv/app/data"])),
        ),
        (
            "WORKDIR ${DIR%/*}/${DIR##*/}",
            Instruction::Workdir(s("/srv/app")),
        ),
        // Never expanded: the shell (or nothing) sees them at run time.
        ("RUN echo $A", Instruction::Run(run(shell("echo $A")))),
        ("CMD [\"$A\"]", Instruction::Cmd(exec(&["$A"]))),
        ("ENTRYPOINT $A", Instruction::Entrypoint(shell("$A"))),
        ("SHELL [\"$A\"]", Instruction::Shell(strings(&["$A"]))),
        ("MAINTAINER $A", Instruction::Maintainer(s("$A"))),
        (
            "ONBUILD WORKDIR $A",
            Instruction::OnBuild(Box::new(Instruction::Workdir(s("$A")))),
        ),
    ];
    for (text, want) in cases {
        let parsed = parse("Dockerfile", &format!("FROM a\n{text}\n")).unwrap();
        let step = &parsed.stages[0].steps[0];
        assert_eq!(
            step.expand("Dockerfile", '\\', &vars).unwrap(),
            want,
            "{text}"
        );
    }
}

#[test]
fn expansion_errors_name_the_line() {
    let parsed = parse(
        "Dockerfile",
        "FROM a\n\nWORKDIR ${APP:?set APP first}\nUSER ${A\n",
    )
    .unwrap();
    let none = |_: &str| None;
    let steps = &parsed.stages[0].steps;
    assert_eq!(
        steps[0]
            .expand("Dockerfile", '\\', &none)
            .unwrap_err()
            .to_string(),
        "Dockerfile:3: failed to process \"${APP:?set APP first}\": APP: set APP first"
    );
    assert_eq!(
        steps[1]
            .expand("Dockerfile", '\\', &none)
            .unwrap_err()
            .to_string(),
        "Dockerfile:4: failed to process \"${A\": syntax error: missing '}'"
    );
    assert_eq!(
        expand_word("${X?}", '\\', &none).unwrap_err().to_string(),
        "failed to process \"${X?}\": X: is not allowed to be unset"
    );
}

#[test]
fn display_is_canonical_dockerfile_text() {
    let cases = [
        ("run   chmod +x boot.sh", "RUN chmod +x boot.sh"),
        ("COPY --chown=a:b app app", "COPY --chown=a:b app app"),
        ("ENV FLASK_APP=microblog.py", "ENV FLASK_APP=microblog.py"),
        ("ENV FLASK_APP microblog.py", "ENV FLASK_APP=microblog.py"),
        ("ENV A a b", "ENV A a b"),
        ("ENTRYPOINT [\"./boot.sh\"]", "ENTRYPOINT [\"./boot.sh\"]"),
        (
            "ENTRYPOINT [ \"./boot.sh\", \"x\" ]",
            "ENTRYPOINT [\"./boot.sh\",\"x\"]",
        ),
        ("COPY [\"a b\", \"c\"]", "COPY [\"a b\",\"c\"]"),
        (
            "RUN --mount=type=cache,target=/c --network=none make",
            "RUN --mount=type=cache,target=/c --network=none make",
        ),
        (
            "HEALTHCHECK --interval=90s --retries=2 CMD [\"x\"]",
            "HEALTHCHECK --interval=1m30s --retries=2 CMD [\"x\"]",
        ),
        ("healthcheck none", "HEALTHCHECK NONE"),
        ("ONBUILD add . /src", "ONBUILD ADD . /src"),
        ("ARG A B=c", "ARG A B=c"),
        ("VOLUME [\"/a b\"]", "VOLUME [\"/a b\"]"),
        ("EXPOSE 80 443", "EXPOSE 80 443"),
        ("SHELL [\"sh\", \"-c\"]", "SHELL [\"sh\",\"-c\"]"),
        ("LABEL a=\"b c\"", "LABEL a \"b c\""),
    ];
    for (text, want) in cases {
        let instruction = one(text);
        assert_eq!(instruction.to_string(), want, "{text}");
        assert_eq!(one(want), instruction, "{want} parses back");
    }
}

#[test]
fn triggers_from_image_configs() {
    assert_eq!(
        parse_trigger("RUN echo hi").unwrap(),
        Instruction::Run(run(shell("echo hi")))
    );
    assert_eq!(
        parse_trigger("copy . /app").unwrap(),
        Instruction::Copy(copy(&["."], "/app"))
    );
    assert_eq!(
        parse_trigger("FROM x").unwrap_err().to_string(),
        "ONBUILD trigger:1: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        parse_trigger("RUN a\nRUN b").unwrap_err().to_string(),
        "ONBUILD trigger:1: a trigger is one instruction, not 2"
    );
    assert!(parse_trigger("").is_err());
}

#[test]
fn serializes_for_cache_keys() {
    let instruction = one("COPY --link a b");
    let json = serde_json::to_string(&instruction).unwrap();
    assert!(
        json.starts_with("{\"Copy\":{\"sources\":[{\"Path\":\"a\"}]"),
        "{json}"
    );
}

/// Simple instructions whose display must parse back to them.
fn simple_instruction() -> impl Strategy<Value = String> {
    let word = "[a-zA-Z0-9_./:-]{1,8}";
    let words = prop::collection::vec(word, 1..4);
    prop_oneof![
        words.clone().prop_map(|w| format!("RUN {}", w.join(" "))),
        words
            .clone()
            .prop_map(|w| format!("CMD {}", serde_json::to_string(&w).unwrap())),
        words
            .clone()
            .prop_map(|w| format!("ENTRYPOINT {}", w.join(" "))),
        (words.clone(), word).prop_map(|(w, d)| format!("COPY --chown=1:1 {} {d}", w.join(" "))),
        (words.clone(), word).prop_map(|(w, d)| format!("ADD --link {} {d}", w.join(" "))),
        prop::collection::vec(("[A-Z][A-Z0-9_]{0,6}", word), 1..4).prop_map(|pairs| {
            let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("ENV {}", pairs.join(" "))
        }),
        ("[a-z]{1,6}", "[a-z ]{0,10}[a-z]").prop_map(|(k, v)| format!("LABEL {k} {v}")),
        words.clone().prop_map(|w| format!("ARG {}", w.join(" "))),
        words
            .clone()
            .prop_map(|w| format!("VOLUME {}", w.join(" "))),
        words
            .clone()
            .prop_map(|w| format!("EXPOSE {}", w.join(" "))),
        word.prop_map(|w| format!("WORKDIR /{w}")),
        word.prop_map(|w| format!("USER {w}")),
        word.prop_map(|w| format!("STOPSIGNAL {w}")),
        words.prop_map(|w| format!("ONBUILD RUN {}", w.join(" "))),
        (1u64..10_000, 1u32..10)
            .prop_map(|(ms, r)| format!("HEALTHCHECK --timeout={ms}ms --retries={r} CMD true")),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC*") {
        let _ = parse("Dockerfile", &text);
        let _ = parse_trigger(&text);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse("Dockerfile", &text);
    }

    #[test]
    fn dockerfile_shaped_input_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("FROM a".to_owned()),
                "(RUN|COPY|ADD|ENV|ARG|LABEL|ONBUILD RUN|HEALTHCHECK CMD) [ <<\\-'\"$={}\\[\\]\\\\a-z`#]{0,20}",
                "[ \t#\\\\`a-z<>-]{0,12}",
                Just("# escape=`".to_owned()),
            ],
            0..12,
        )
    ) {
        let text = lines.join("\n");
        if let Ok(parsed) = parse("Dockerfile", &text) {
            for step in parsed.stages.iter().flat_map(|s| &s.steps) {
                let _ = step.expand("Dockerfile", parsed.escape, &|_| Some("v a l".to_owned()));
                let _ = step.instruction.to_string();
            }
        }
    }

    #[test]
    fn lexer_never_panics(word in "\\PC*", escape in prop_oneof![Just('\\'), Just('`')]) {
        let vars = |name: &str| name.len().is_multiple_of(2).then(|| name.repeat(2));
        let _ = expand_word(&word, escape, &vars);
    }

    #[test]
    fn lexer_substitution_shaped_input_never_panics(word in "[$\\{\\}:#%/?+*\\-'\"\\\\a-c ]{0,40}") {
        let vars = |name: &str| (name != "c").then(|| "a*b?c/".to_owned());
        let _ = expand_word(&word, '\\', &vars);
    }

    #[test]
    fn display_parses_back(text in simple_instruction()) {
        let parsed = one(&text);
        let shown = parsed.to_string();
        prop_assert_eq!(one(&shown), parsed, "{} displayed as {}", text, shown);
    }
}

#[test]
fn a_real_dockerfile() {
    let text = "\
FROM python:slim

COPY requirements.txt requirements.txt
RUN pip install -r requirements.txt
RUN pip install gunicorn pymysql cryptography

COPY app app
COPY migrations migrations
COPY microblog.py config.py boot.sh ./
RUN chmod a+x boot.sh

ENV FLASK_APP microblog.py
RUN flask translate compile

EXPOSE 5000
ENTRYPOINT [\"./boot.sh\"]
";
    let parsed = parse("Dockerfile", text).unwrap();
    let shown: Vec<String> = parsed.stages[0]
        .steps
        .iter()
        .map(|s| s.instruction.to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "COPY requirements.txt requirements.txt",
            "RUN pip install -r requirements.txt",
            "RUN pip install gunicorn pymysql cryptography",
            "COPY app app",
            "COPY migrations migrations",
            "COPY microblog.py config.py boot.sh ./",
            "RUN chmod a+x boot.sh",
            "ENV FLASK_APP=microblog.py",
            "RUN flask translate compile",
            "EXPOSE 5000",
            "ENTRYPOINT [\"./boot.sh\"]",
        ]
    );
    assert_eq!(parsed.stages[0].steps[10].line, 16);
}
