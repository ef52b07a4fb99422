//! Tracepoint `format` files give the record offsets the drop program reads: any text parses
//! to a format or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(format) = netdiag::tracefs::TracepointFormat::parse(text) {
            let _ = format.field("skbaddr");
        }
    }
});
