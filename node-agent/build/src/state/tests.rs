use super::*;
use crate::args::platform_args;
use berth_dockerfile as dockerfile;

/// The first instruction of `line`, expanded with the stage's variables as the builder
/// expands it.
fn instruction(st: &StageState, line: &str) -> Instruction {
    let df = dockerfile::parse("Dockerfile", &format!("FROM scratch\n{line}\n")).unwrap();
    let vars = |name: &str| st.var(name);
    df.stages[0].steps[0]
        .expand("Dockerfile", st.escape, &vars)
        .unwrap()
}

fn build_args(given: &[(&str, &str)]) -> BuildArgs {
    let given = given
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    BuildArgs::new(given, platform_args())
}

/// Runs config instructions as the builder does: key first, then the config.
fn apply(st: &mut StageState, args: &mut BuildArgs, lines: &[&str]) {
    for line in lines {
        let i = instruction(st, line);
        st.advance_instruction(&i).unwrap();
        st.apply_config(&i, args).unwrap();
    }
}

fn stage() -> StageState {
    StageState::scratch(0, '\\')
}

fn config(st: &StageState) -> &Config {
    st.runtime().unwrap()
}

/// The key after the RUN step `line`, given the config lines before it, the build
/// args, and the network.
fn run_key(before: &[&str], given: &[(&str, &str)], line: &str, network: NetworkMode) -> String {
    let mut st = stage();
    let mut args = build_args(given);
    apply(&mut st, &mut args, before);
    let i = instruction(&st, line);
    st.advance_instruction(&i).unwrap();
    let run_args = st.run_args();
    st.advance_run(&run_args, &network);
    st.key
}

#[test]
fn the_same_steps_give_the_same_key() {
    let a = run_key(&["ENV A=1"], &[], "RUN echo hi", NetworkMode::None);
    let b = run_key(&["ENV A=1"], &[], "RUN echo hi", NetworkMode::None);
    assert_eq!(a, b);
    assert_eq!(a.len(), 64, "a sha256 in hex: {a}");
    assert_ne!(a, stage().key);
}

#[test]
fn the_key_takes_the_instruction_after_substitution() {
    // The instruction's part alone: the same chain before, only the variable differs.
    let key = |value: &str, line: &str| {
        let mut st = stage();
        st.args.insert("V".into(), value.into());
        let i = instruction(&st, line);
        st.advance_instruction(&i).unwrap();
        st.key
    };
    assert_ne!(key("1", "LABEL l=$V"), key("2", "LABEL l=$V"));
    assert_eq!(key("1", "LABEL l=$V"), key("2", "LABEL l=1"));
    assert_eq!(key("1", "WORKDIR /${V}"), key("1", "WORKDIR /1"));
    // RUN's text is the shell's to expand: its variables reach the key as build args
    // in effect (`run_args`), not through the text.
    assert_eq!(key("1", "RUN echo $V"), key("2", "RUN echo $V"));
}

#[test]
fn heredoc_bodies_are_in_the_key_though_not_in_the_text() {
    let st = stage();
    let a = instruction(&st, "RUN <<EOF\necho one\nEOF");
    let b = instruction(&st, "RUN <<EOF\necho two\nEOF");
    assert_eq!(a.to_string(), b.to_string());
    let mut ka = stage();
    ka.advance_instruction(&a).unwrap();
    let mut kb = stage();
    kb.advance_instruction(&b).unwrap();
    assert_ne!(ka.key, kb.key);
}

#[test]
fn run_keys_take_the_build_args_in_effect() {
    let before = ["ARG X"];
    let one = run_key(&before, &[("X", "1")], "RUN true", NetworkMode::None);
    let two = run_key(&before, &[("X", "2")], "RUN true", NetworkMode::None);
    let unset = run_key(&before, &[], "RUN true", NetworkMode::None);
    assert_ne!(
        one, two,
        "the RUN text is the same; the arg in effect is not"
    );
    assert_ne!(one, unset);
    // A build arg no ARG declares is not in effect, so not in the key.
    let undeclared = run_key(&[], &[("X", "1")], "RUN true", NetworkMode::None);
    assert_eq!(undeclared, run_key(&[], &[], "RUN true", NetworkMode::None));
    // ENV overrides the ARG: the ENV value is in the key through the ENV step, the
    // arg's is not.
    let env = ["ARG X", "ENV X=fixed"];
    assert_eq!(
        run_key(&env, &[("X", "1")], "RUN true", NetworkMode::None),
        run_key(&env, &[("X", "2")], "RUN true", NetworkMode::None)
    );
}

#[test]
fn run_args_and_config_leave_out_what_env_overrides() {
    let mut st = stage();
    let mut args = build_args(&[("A", "1"), ("B", "2")]);
    apply(&mut st, &mut args, &["ARG A B", "ENV B=env"]);
    assert_eq!(st.run_args(), ["A=1"]);
    let config = st.run_config(
        vec!["true".into()],
        &st.run_args(),
        &["http_proxy=p".into()],
    );
    assert_eq!(
        config.env().as_deref().unwrap(),
        ["B=env", "A=1", "http_proxy=p"]
    );
    assert_eq!(config.cmd().as_deref().unwrap(), ["true"]);
    assert_eq!(config.entrypoint(), &None);
    // The image config itself gets no build arg.
    assert_eq!(st.env(), ["B=env"]);
}

#[test]
fn run_keys_take_the_network() {
    let none = run_key(&[], &[], "RUN true", NetworkMode::None);
    let host = run_key(&[], &[], "RUN true", NetworkMode::Host);
    let named = run_key(&[], &[], "RUN true", NetworkMode::Network("b".into()));
    assert_ne!(none, host);
    assert_ne!(host, named);
}

#[test]
fn copy_keys_take_the_source_digest_and_origin() {
    let key = |from: &str, digest: &str| {
        let mut st = stage();
        let i = instruction(&st, "COPY a /a");
        st.advance_instruction(&i).unwrap();
        st.advance_copy(from, digest);
        st.key
    };
    assert_eq!(key("", "sha256:1"), key("", "sha256:1"));
    assert_ne!(key("", "sha256:1"), key("", "sha256:2"));
    assert_ne!(key("", "sha256:1"), key("stage-key", "sha256:1"));
}

#[test]
fn history_and_config_do_not_change_the_key() {
    let mut st = stage();
    let before = st.key.clone();
    st.history("RUN x", true);
    st.apply_workdir("/x");
    assert_eq!(st.key, before);
    assert_eq!(st.state.config.history().as_ref().unwrap().len(), 1);
}

#[test]
fn config_instructions_change_the_config() {
    let mut st = stage();
    let mut args = build_args(&[]);
    apply(
        &mut st,
        &mut args,
        &[
            "ENV A=1 B=2",
            "ENV A=3",
            "LABEL k=v \"quoted key\"=x",
            "EXPOSE 80 53/udp 80/tcp",
            "USER 1000:1000",
            "VOLUME /data /data /logs",
            "STOPSIGNAL SIGQUIT",
            "MAINTAINER someone@example.com",
        ],
    );
    let c = config(&st);
    assert_eq!(c.env().as_deref().unwrap(), ["A=3", "B=2"]);
    let labels = c.labels().as_ref().unwrap();
    assert_eq!(labels["k"], "v");
    assert_eq!(labels["quoted key"], "x");
    assert_eq!(c.exposed_ports().as_deref().unwrap(), ["80/tcp", "53/udp"]);
    assert_eq!(c.user().as_deref(), Some("1000:1000"));
    assert_eq!(st.user().as_deref(), Some("1000:1000"));
    assert_eq!(c.volumes().as_deref().unwrap(), ["/data", "/logs"]);
    assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
    assert_eq!(
        st.state.config.author().as_deref(),
        Some("someone@example.com")
    );
}

#[test]
fn workdir_is_absolute_against_the_last_one() {
    let mut st = stage();
    assert_eq!(st.apply_workdir("app/"), "/app");
    assert_eq!(st.apply_workdir("../srv/./x"), "/srv/x");
    assert_eq!(st.apply_workdir("/"), "/");
    assert_eq!(st.apply_workdir("/home/u"), "/home/u");
    assert_eq!(config(&st).working_dir().as_deref(), Some("/home/u"));
    assert_eq!(st.absolute("f"), "/home/u/f");
    assert_eq!(st.absolute("."), "/home/u/");
    assert_eq!(st.absolute("d/"), "/home/u/d/");
    assert_eq!(st.absolute(".."), "/home/");
    assert_eq!(st.absolute("/../.."), "/");
}

#[test]
fn shell_sets_the_form_of_cmd_entrypoint_and_run() {
    let mut st = stage();
    let mut args = build_args(&[]);
    let cmd = Command::Shell("echo hi".into());
    assert_eq!(st.command(&cmd), ["/bin/sh", "-c", "echo hi"]);
    apply(
        &mut st,
        &mut args,
        &["SHELL [\"/bin/bash\", \"-ec\"]", "CMD echo hi"],
    );
    assert_eq!(st.command(&cmd), ["/bin/bash", "-ec", "echo hi"]);
    assert_eq!(
        config(&st).cmd().as_deref().unwrap(),
        ["/bin/bash", "-ec", "echo hi"]
    );
    let json = image_config(&st.clone().into_built()).unwrap();
    let json: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["config"]["Shell"], json!(["/bin/bash", "-ec"]));
}

#[test]
fn entrypoint_drops_an_inherited_cmd_only() {
    let mut args = build_args(&[]);
    let mut base = stage();
    apply(&mut base, &mut args, &["CMD [\"inherited\"]"]);
    let mut st = StageState::on(base.clone().into_built(), 1, '\\');
    apply(&mut st, &mut args, &["ENTRYPOINT [\"/e\"]"]);
    assert_eq!(config(&st).entrypoint().as_deref().unwrap(), ["/e"]);
    assert_eq!(config(&st).cmd(), &None);

    let mut st = StageState::on(base.into_built(), 1, '\\');
    apply(
        &mut st,
        &mut args,
        &["CMD [\"own\"]", "ENTRYPOINT [\"/e\"]"],
    );
    assert_eq!(config(&st).cmd().as_deref().unwrap(), ["own"]);
}

#[test]
fn healthcheck_onbuild_and_extras_reach_the_image_config() {
    let mut st = stage();
    let mut args = build_args(&[]);
    apply(
        &mut st,
        &mut args,
        &[
            "HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q localhost",
            "ONBUILD RUN echo triggered",
        ],
    );
    assert_eq!(st.extras.on_build, ["RUN echo triggered"]);
    let json = image_config(&st.clone().into_built()).unwrap();
    let json: Value = serde_json::from_slice(&json).unwrap();
    let health = &json["config"]["Healthcheck"];
    assert_eq!(health["Test"], json!(["CMD-SHELL", "wget -q localhost"]));
    assert_eq!(health["Interval"], 30_000_000_000u64);
    assert_eq!(health["Timeout"], 3_000_000_000u64);
    assert_eq!(health["Retries"], 2);
    assert!(health.get("StartPeriod").is_none());
    assert_eq!(json["config"]["OnBuild"], json!(["RUN echo triggered"]));
    // What an image carries comes back as extras.
    let back = Extras::of_image(&json["config"]);
    assert_eq!(back.healthcheck.as_ref(), Some(health));
    assert_eq!(back.on_build, ["RUN echo triggered"]);
    assert_eq!(back.shell, None);

    apply(&mut st, &mut args, &["HEALTHCHECK NONE"]);
    assert_eq!(st.extras.healthcheck, Some(json!({ "Test": ["NONE"] })));
}

#[test]
fn args_are_in_effect_from_their_arg_on() {
    let mut st = stage();
    let mut args = build_args(&[("GIVEN", "g")]);
    args.declare_meta(berth_dockerfile::ArgDecl {
        name: "META".into(),
        default: Some("m".into()),
    });
    assert_eq!(st.var("GIVEN"), None);
    apply(&mut st, &mut args, &["ARG GIVEN META DEF=d NONE"]);
    assert_eq!(st.var("GIVEN").as_deref(), Some("g"));
    assert_eq!(st.var("META").as_deref(), Some("m"));
    assert_eq!(st.var("DEF").as_deref(), Some("d"));
    assert_eq!(st.var("NONE"), None);
    apply(&mut st, &mut args, &["ENV DEF=env"]);
    assert_eq!(st.var("DEF").as_deref(), Some("env"), "ENV wins over ARG");
    assert!(args.unused().is_empty());
}

#[test]
fn layers_extend_the_rootfs_and_steps_that_change_files_are_refused_here() {
    let mut st = stage();
    st.push_layer(LayerRef {
        digest: "sha256:aa".into(),
        diff_id: "sha256:bb".into(),
        size: 1,
    });
    assert_eq!(st.state.layers.len(), 1);
    assert_eq!(
        st.state.config.rootfs().diff_ids(),
        &["sha256:bb".to_string()]
    );
    let mut args = build_args(&[]);
    let run = instruction(&st, "RUN true");
    assert!(matches!(
        st.apply_config(&run, &mut args),
        Err(Error::NotConfig { instruction }) if instruction == "RUN true"
    ));
}

#[test]
fn stages_from_an_image_start_with_its_key() {
    assert_eq!(image_key("sha256:1"), image_key("sha256:1"));
    assert_ne!(image_key("sha256:1"), image_key("sha256:2"));
    assert_ne!(image_key("sha256:1"), stage().key);
}
