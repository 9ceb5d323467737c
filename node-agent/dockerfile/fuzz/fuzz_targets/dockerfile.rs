//! Any bytes, as lossy UTF-8, through the Dockerfile parser, then every step through
//! expansion and display: nothing may panic.
#![no_main]

use berth_dockerfile as dockerfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = dockerfile::parse_trigger(&text);
    let Ok(parsed) = dockerfile::parse("Dockerfile", &text) else {
        return;
    };
    let vars = |name: &str| (name.len() % 3 != 0).then(|| format!("{name} *?/x"));
    for step in parsed.meta_args.iter().chain(parsed.stages.iter().flat_map(|s| &s.steps)) {
        let _ = step.expand("Dockerfile", parsed.escape, &vars);
        let _ = step.instruction.to_string();
    }
    for stage in &parsed.stages {
        let _ = dockerfile::expand_word(&stage.base, parsed.escape, &vars);
    }
});
