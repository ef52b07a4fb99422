//! The kernel programs' TCP option walk against a line-by-line port of the kernel's own
//! `tcp_parse_options` (net/ipv4/tcp_input.c), on arbitrary option bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netdiag_common::tcp_options::{BUFFER, MAX_LEN, find_timestamp};

const EOL: u8 = 0;
const NOP: u8 = 1;
const TIMESTAMP: u8 = 8;

/// The kernel's loop, except that it stops at the first timestamp option (the walk's one
/// documented deviation; the kernel lets a later one override it).
fn kernel_first_timestamp(options: &[u8]) -> Option<(u32, u32)> {
    let mut at = 0usize;
    let mut length = options.len() as isize;
    while length > 0 {
        let opcode = options[at];
        at += 1;
        match opcode {
            EOL => return None,
            NOP => {
                length -= 1;
                continue;
            }
            _ => {
                if length < 2 {
                    return None;
                }
                let opsize = options[at] as isize;
                at += 1;
                if opsize < 2 || opsize > length {
                    return None;
                }
                if opcode == TIMESTAMP && opsize == 10 {
                    let b = &options[at..at + 8];
                    return Some((
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    ));
                }
                at += opsize as usize - 2;
                length -= opsize;
            }
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    // A TCP header carries 0 to 40 option bytes; the rest of the read buffer is whatever
    // followed them in the packet (payload), which the walk must never look at.
    let Some((&len, rest)) = data.split_first() else { return };
    let len = (len as usize % (MAX_LEN + 1)).min(rest.len());
    let mut buffer = [0u8; BUFFER];
    let tail = rest.len().min(MAX_LEN);
    buffer[..tail].copy_from_slice(&rest[..tail]);
    assert_eq!(find_timestamp(&buffer, len), kernel_first_timestamp(&rest[..len]));
});
