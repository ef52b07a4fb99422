//! `--pcap FILE`: the headers of the segments the kernel dropped, as pcapng evidence for the
//! peer's owner or the network team. Raw IP link type (IPv4 and IPv6 alike), nanosecond
//! timestamps, and a packet comment naming the drop reason and the namespace.
use std::{
    borrow::Cow,
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use anyhow::{Context as _, Result};
use netdiag_common::{CAPTURE_BYTES, PacketCapture};
use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgBlock, PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use crate::{clock::Clock, error::usage};

/// pcapng `if_tsresol` for nanoseconds, matching how the writer stores timestamps.
const NANOSECONDS: u8 = 9;

/// Where evidence goes and whether an existing file may be replaced.
#[derive(Clone, Debug)]
pub struct PcapTarget {
    pub path: PathBuf,
    pub overwrite: bool,
}

/// An open pcapng file, written as captures arrive.
pub struct PcapWriter {
    writer: PcapNgWriter<BufWriter<File>>,
    pub packets: u64,
}

impl PcapWriter {
    /// Creates the file safely: mode 0600, never through a symlink, and never over an existing
    /// file unless `overwrite` (netdiag runs as root; a planted link must not aim it elsewhere).
    pub fn create(target: &PcapTarget) -> Result<PcapWriter> {
        let file = open_private(&target.path, target.overwrite)?;
        let mut writer = PcapNgWriter::new(BufWriter::new(file)).context("write the pcapng section header")?;
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::RAW,
            snaplen: CAPTURE_BYTES as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("netdiag")),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                    "headers of TCP segments the kernel dropped, captured at skb:kfree_skb",
                )),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        };
        writer.write_block(&interface.into_block()).context("write the pcapng interface")?;
        Ok(PcapWriter { writer, packets: 0 })
    }

    /// Appends one capture; `comment` says why the kernel dropped it.
    pub fn write(&mut self, capture: &PacketCapture, clock: &Clock, comment: String) -> Result<()> {
        let len = (capture.captured_len as usize).min(CAPTURE_BYTES);
        let timestamp = clock.wall_of(capture.ts_ns).duration_since(UNIX_EPOCH).unwrap_or_default();
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp,
            original_len: u32::from(capture.wire_len).max(len as u32),
            data: Cow::Borrowed(&capture.headers[..len]),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.writer.write_block(&packet.into_block()).context("write a pcapng packet")?;
        self.packets += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64> {
        self.writer.get_mut().flush().context("flush the pcapng file")?;
        Ok(self.packets)
    }
}

fn open_private(path: &Path, overwrite: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => usage(format!("{} exists; add --overwrite to replace it", path.display())),
        Some(libc::ELOOP) => usage(format!("{} is a symbolic link; netdiag does not write through links", path.display())),
        _ => anyhow::Error::new(e).context(format!("create {}", path.display())),
    })
}

/// The sender's address and the destination port of a captured segment, for the same filters
/// the report applies (`--peer`, `--port`).
pub fn source_and_dport(capture: &PacketCapture) -> Option<(IpAddr, u16)> {
    let headers = &capture.headers[..(capture.captured_len as usize).min(CAPTURE_BYTES)];
    let source = match headers.first()? >> 4 {
        4 => IpAddr::from(<[u8; 4]>::try_from(headers.get(12..16)?).ok()?),
        6 => IpAddr::from(<[u8; 16]>::try_from(headers.get(8..24)?).ok()?),
        _ => return None,
    };
    let tcp = capture.transport_offset as usize;
    let dport = headers.get(tcp + 2..tcp + 4)?;
    Some((source, u16::from_be_bytes([dport[0], dport[1]])))
}

/// Decodes one record of the `CAPTURES` ring; `None` for a short one.
pub fn decode(bytes: &[u8]) -> Option<PacketCapture> {
    if bytes.len() < size_of::<PacketCapture>() {
        return None;
    }
    // SAFETY: length checked; PacketCapture is plain old data, read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;

    fn target(name: &str) -> PcapTarget {
        let path = std::env::temp_dir().join(format!("netdiag-pcap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        PcapTarget { path, overwrite: false }
    }

    #[test]
    fn writes_captures_that_read_back_with_comment_and_length() {
        let target = target("roundtrip");
        let mut writer = PcapWriter::create(&target).unwrap();
        let mut capture = PacketCapture { ts_ns: 5, captured_len: 52, wire_len: 1500, ..Default::default() };
        capture.headers[0] = 0x45;
        let clock = Clock::at(0, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        writer.write(&capture, &clock, "TCP_RFC7323_PAWS in srv".into()).unwrap();
        assert_eq!(writer.finish().unwrap(), 1);

        let mut reader = PcapNgReader::new(File::open(&target.path).unwrap()).unwrap();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(p) = block.unwrap() {
                packets.push(p.into_owned());
            }
        }
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].data.len(), 52);
        assert_eq!(packets[0].original_len, 1500);
        assert_eq!(packets[0].timestamp, Duration::from_nanos(100_000_000_005));
        assert_eq!(packets[0].options, vec![EnhancedPacketOption::Comment("TCP_RFC7323_PAWS in srv".into())]);
        let mode = std::fs::metadata(&target.path).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        std::fs::remove_file(&target.path).unwrap();
    }

    #[test]
    fn never_clobbers_a_file_or_follows_a_link_unless_told() {
        let target = target("safety");
        std::fs::write(&target.path, b"keep").unwrap();
        let err = PcapWriter::create(&target).err().unwrap();
        assert!(format!("{err}").contains("--overwrite"), "{err}");
        assert_eq!(std::fs::read(&target.path).unwrap(), b"keep");

        let link = target.path.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target.path, &link).unwrap();
        let err = PcapWriter::create(&PcapTarget { path: link.clone(), overwrite: true }).err().unwrap();
        assert!(format!("{err}").contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&target.path).unwrap(), b"keep");

        PcapWriter::create(&PcapTarget { path: target.path.clone(), overwrite: true }).unwrap().finish().unwrap();
        assert_ne!(std::fs::read(&target.path).unwrap(), b"keep");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target.path).unwrap();
    }

    #[test]
    fn finds_source_and_destination_port_past_ip_options() {
        let mut capture = PacketCapture { captured_len: 64, transport_offset: 24, ..Default::default() };
        capture.headers[0] = 0x46; // IPv4 with one word of options
        capture.headers[12..16].copy_from_slice(&[198, 51, 100, 2]);
        capture.headers[26..28].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(source_and_dport(&capture), Some(("198.51.100.2".parse().unwrap(), 8080)));
        capture.captured_len = 27;
        assert_eq!(source_and_dport(&capture), None, "a port cut off by the capture is not guessed");
    }

    #[test]
    fn a_short_record_is_not_decoded() {
        let capture = PacketCapture { reason: 36, ..Default::default() };
        let bytes = unsafe {
            std::slice::from_raw_parts((&capture as *const PacketCapture).cast::<u8>(), size_of::<PacketCapture>())
        };
        assert_eq!(decode(bytes), Some(capture));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
    }
}
