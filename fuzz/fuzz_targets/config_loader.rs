//! The config loader: a TOML file's text through `golek_config::load_str` (defaults, the file,
//! no environment, no flags, then validation). Non-UTF-8 input is skipped.
#![no_main]

use std::path::Path;

use golek_config::{load_str, ConfigInputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An empty environment: no HOME, no GOLEK_* variables.
    let inputs = ConfigInputs::default();
    match load_str(text, Path::new("/fuzz/node.toml"), &inputs) {
        Ok(loaded) => {
            let _ = loaded.show();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
