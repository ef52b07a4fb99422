//! The agent's TOML config file: any text is a config or an error naming where it went wrong,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = netdiag::agent::config::Config::parse(text);
    }
});
