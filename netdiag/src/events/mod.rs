//! Events: records from the kernel programs' ring buffer, decoded and handed to aggregation.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use netdiag_common::{DropEvent, EVENT_DROP, EVENT_SYN, FAMILY_IPV4, FAMILY_IPV6, SynEvent};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
};

use crate::aggregate::Aggregator;

/// Decodes one ring-buffer record; `None` for a record of another kind or a short one.
pub fn decode_drop(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: length checked; DropEvent is plain old data, read unaligned.
    let event: DropEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    (event.kind == EVENT_DROP).then_some(event)
}

/// Decodes a SYN sample; records have exact sizes, and a SYN's differs from a drop's.
pub fn decode_syn(bytes: &[u8]) -> Option<SynEvent> {
    if bytes.len() != size_of::<SynEvent>() {
        return None;
    }
    // SAFETY: length checked; SynEvent is plain old data, read unaligned.
    let event: SynEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    (event.kind == EVENT_SYN).then_some(event)
}

/// An address as the kernel program stored it (IPv4 in the first four bytes).
pub fn ip_from(family: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

/// Drains the ring buffer into the aggregator until `stop` flips, then drains once more so
/// nothing already in the buffer is left unread.
pub async fn pump(
    ring: RingBuf<MapData>,
    aggregator: Arc<Mutex<Aggregator>>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    pump_ring(ring, stop, move |ring| {
        drain(ring, &aggregator);
        Ok(())
    })
    .await
}

/// How often the ring is drained without a wakeup: the kernel programs wake the reader only
/// when a quarter of the ring is filled, so records arriving slowly wait at most this long.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Hands the ring to `drain` whenever the kernel wakes the reader and every [`DRAIN_EVERY`],
/// until `stop` flips, and once more then.
pub async fn pump_ring(
    ring: RingBuf<MapData>,
    mut stop: watch::Receiver<bool>,
    mut drain: impl FnMut(&mut RingBuf<MapData>) -> Result<()>,
) -> Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until it is dropped
    // together with the AsyncFd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            _ = tick.tick() => drain(fd.get_mut())?,
            _ = stop.changed() => {
                return drain(fd.get_mut());
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, aggregator: &Mutex<Aggregator>) {
    let mut agg = aggregator.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(item) = ring.next() {
        if let Some(event) = decode_drop(&item) {
            agg.record_drop(&event);
        } else if let Some(event) = decode_syn(&item) {
            agg.record_syn(&event);
        } else {
            agg.undecodable += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(event: &DropEvent) -> Vec<u8> {
        let ptr = (event as *const DropEvent).cast::<u8>();
        unsafe { std::slice::from_raw_parts(ptr, size_of::<DropEvent>()) }.to_vec()
    }

    #[test]
    fn decodes_a_drop_record_and_rejects_short_or_foreign_ones() {
        let event = DropEvent { kind: EVENT_DROP, reason: 38, sport: 40000, ..Default::default() };
        let bytes = bytes_of(&event);
        assert_eq!(decode_drop(&bytes), Some(event));
        assert_eq!(decode_drop(&bytes[..bytes.len() - 1]), None);
        let other = DropEvent { kind: 99, ..event };
        assert_eq!(decode_drop(&bytes_of(&other)), None);
    }

    #[test]
    fn a_syn_record_is_told_from_a_drop_record() {
        let syn = SynEvent { kind: EVENT_SYN, tsval: 7, sport: 40000, ..Default::default() };
        let ptr = (&syn as *const SynEvent).cast::<u8>();
        let bytes = unsafe { std::slice::from_raw_parts(ptr, size_of::<SynEvent>()) };
        assert_eq!(decode_syn(bytes), Some(syn));
        assert_eq!(decode_drop(bytes), None);
        let drop = DropEvent { kind: EVENT_DROP, ..Default::default() };
        assert_eq!(decode_syn(&bytes_of(&drop)), None);
    }

    #[test]
    fn addresses_follow_the_family_tag() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[198, 51, 100, 2]);
        assert_eq!(ip_from(FAMILY_IPV4, &raw), Some("198.51.100.2".parse().unwrap()));
        let v6: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        assert_eq!(ip_from(FAMILY_IPV6, &v6.octets()), Some(IpAddr::V6(v6)));
        assert_eq!(ip_from(0, &raw), None);
    }
}
