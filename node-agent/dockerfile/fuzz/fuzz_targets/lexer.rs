//! Any bytes, as lossy UTF-8, through the shell-word lexer with both escape
//! characters: nothing may panic.
#![no_main]

use berth_dockerfile as dockerfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars = |name: &str| (name.len() % 2 == 1).then(|| format!("{name}/a*b?c {name}"));
    for escape in ['\\', '`'] {
        let _ = dockerfile::expand_word(&text, escape, &vars);
    }
});
