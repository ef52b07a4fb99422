//! A minimal writer of the cpio "newc" format the kernel unpacks as initramfs. Written here
//! rather than shelling out to cpio so every entry is owned by root whoever builds it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

enum Content {
    Directory,
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

struct Entry {
    mode: u32,
    content: Content,
}

/// Entries keyed by their path in the archive, without the leading slash. Sorted order puts
/// every directory before what it contains, as the kernel needs.
#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn directory(&mut self, path: &str) {
        self.insert(path, Entry { mode: S_IFDIR | 0o755, content: Content::Directory });
    }

    /// Adds a host file, read when the archive is written; `mode` holds the permission bits.
    pub fn host_file(&mut self, path: &str, source: &Path, mode: u32) {
        self.insert(path, Entry { mode: S_IFREG | mode, content: Content::HostFile(source.to_path_buf()) });
    }

    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Entry { mode: S_IFREG | mode, content: Content::Bytes(data.into()) });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Entry { mode: S_IFLNK | 0o777, content: Content::Symlink(target.to_string()) });
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// Inserts an entry and any missing parent directories; a later entry replaces an earlier one.
    fn insert(&mut self, path: &str, entry: Entry) {
        let path = path.trim_matches('/');
        let mut parent = path;
        while let Some((ancestor, _)) = parent.rsplit_once('/') {
            self.entries
                .entry(ancestor.to_string())
                .or_insert(Entry { mode: S_IFDIR | 0o755, content: Content::Directory });
            parent = ancestor;
        }
        self.entries.insert(path.to_string(), entry);
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut written = 0;
        for (inode, (path, entry)) in self.entries.iter().enumerate() {
            let data = match &entry.content {
                Content::Directory => Vec::new(),
                Content::HostFile(source) => read_host_file(source)?,
                Content::Bytes(bytes) => bytes.clone(),
                Content::Symlink(target) => target.as_bytes().to_vec(),
            };
            written += write_entry(out, inode as u32 + 1, entry.mode, path, &data)?;
        }
        written += write_entry(out, 0, 0, "TRAILER!!!", &[])?;
        // The kernel reads the archive in 512-byte blocks, as cpio(1) pads it.
        out.write_all(&vec![0; padding(written, 512)])
    }
}

fn read_host_file(source: &Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    io::copy(&mut File::open(source).map_err(|err| annotate(err, source))?, &mut data)?;
    Ok(data)
}

fn annotate(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Writes one newc header, name and data, each padded to 4 bytes; returns the bytes written.
fn write_entry(out: &mut impl Write, inode: u32, mode: u32, name: &str, data: &[u8]) -> io::Result<usize> {
    let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
    let name_size = name.len() + 1;
    let header = format!(
        "070701{inode:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{dev_major:08x}{dev_minor:08x}\
         {rdev_major:08x}{rdev_minor:08x}{name_size:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        size = data.len(),
        dev_major = 0,
        dev_minor = 0,
        rdev_major = 0,
        rdev_minor = 0,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let name_padding = padding(header.len() + name_size, 4);
    out.write_all(&vec![0; name_padding])?;
    out.write_all(data)?;
    let data_padding = padding(data.len(), 4);
    out.write_all(&vec![0; data_padding])?;
    Ok(header.len() + name_size + name_padding + data.len() + data_padding)
}

fn padding(length: usize, alignment: usize) -> usize {
    (alignment - length % alignment) % alignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_bytes(archive: &Archive) -> Vec<u8> {
        let mut out = Vec::new();
        archive.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn adds_parent_directories_before_their_contents() {
        let mut archive = Archive::default();
        archive.bytes("/usr/sbin/tool", "x", 0o755);
        let names: Vec<&str> = archive.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["usr", "usr/sbin", "usr/sbin/tool"]);
    }

    #[test]
    fn writes_newc_headers_padded_to_four_bytes() {
        let mut archive = Archive::default();
        archive.bytes("init", "#!/bin/sh\n", 0o755);
        let bytes = archive_bytes(&archive);
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        assert_eq!(&header[14..22], "000081ed", "regular file, rwxr-xr-x");
        assert_eq!(&header[54..62], "0000000a", "file size");
        assert_eq!(&header[94..102], "00000005", "name size with its NUL");
        // 110 header + 5 name bytes pad to 116, then 10 data bytes pad to 12.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701", "trailer starts aligned");
        assert_eq!(bytes.len() % 512, 0);
    }

    #[test]
    fn stores_symlink_targets_as_data() {
        let mut archive = Archive::default();
        archive.symlink("bin/ls", "busybox");
        let bytes = archive_bytes(&archive);
        let link = bytes.windows(7).position(|window| window == b"bin/ls\0").unwrap();
        let header = std::str::from_utf8(&bytes[link - 110..link]).unwrap();
        assert_eq!(&header[14..22], "0000a1ff");
        // 110 header + 7 name bytes pad to 120.
        assert_eq!(&bytes[link + 10..link + 17], b"busybox");
    }
}
