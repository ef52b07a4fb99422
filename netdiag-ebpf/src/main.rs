//! netdiag's kernel programs, laid out by attach point (`entry`): each builds one packet
//! context (`context`, parsed once by the one parser in `packet`) and calls the feature
//! handlers it serves (`handlers`). Userspace (`netdiag/src/hooks`) picks which programs to
//! load and attach on the running kernel and fills in the one layout configuration
//! (`layout`) from its BTF.
#![no_std]
#![no_main]

mod context;
mod entry;
mod handlers;
mod kmem;
mod layout;
mod maps;
mod packet;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects programs that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
