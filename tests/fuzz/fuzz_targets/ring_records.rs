//! Whatever bytes come out of the ring buffers: decoded or refused, never a panic, and what is
//! decoded aggregates within its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netdiag::{aggregate::Aggregator, events, output::pcap};

fuzz_target!(|data: &[u8]| {
    let mut aggregator = Aggregator::default();
    for record in data.chunks(size_of::<netdiag_common::DropEvent>()) {
        if let Some(event) = events::decode_drop(record) {
            aggregator.record_drop(&event);
        }
    }
    assert!(aggregator.events <= data.len() as u64);
    if let Some(capture) = pcap::decode(data) {
        let _ = pcap::source_and_dport(&capture);
    }
});
