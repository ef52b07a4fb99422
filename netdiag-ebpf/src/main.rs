//! netdiag's kernel programs. Userspace (`netdiag/src/hooks`) picks which ones to load and
//! attach on the running kernel and fills in their configuration from its BTF.
#![no_std]
#![no_main]

mod access;
mod capture;
mod drops;
mod flows;
mod functions;
mod handshake;
mod maps;
mod packet;
mod time_wait;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects programs that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
