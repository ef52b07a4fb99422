//! A small reader of the kernel's BTF (BPF Type Format), enough to find struct member offsets,
//! enumerator values and function names at load time.
//!
//! Rust eBPF programs have no CO-RE relocations, so userspace looks the layout of the running
//! kernel up here and passes the offsets to the programs. The parser treats its input as
//! hostile: every read is bounds-checked, type references are followed with a depth limit, and
//! each anonymous member is searched at most once per lookup, so any input ends in a value or an
//! error.
use std::collections::{HashMap, HashSet};

use crate::error::unavailable;
use anyhow::{Context as _, Result, anyhow, bail, ensure};

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_RECORD_LEN: usize = 12;
/// How many typedef/qualifier/array links or nested anonymous members a lookup follows;
/// libbpf uses the same bound, and real kernels never come close.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Kind> {
        use Kind::*;
        const KINDS: [Kind; 19] = [
            Int, Ptr, Array, Struct, Union, Enum, Fwd, Typedef, Volatile, Const, Restrict, Func,
            FuncProto, Var, Datasec, Float, DeclTag, TypeTag, Enum64,
        ];
        KINDS.get((raw as usize).checked_sub(1)?).copied()
    }

    /// Bytes of kind-specific data that follow the 12-byte type record.
    fn trailing_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Datasec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
        }
    }

    /// Kinds that only qualify or rename the type they point to.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }

    /// Kinds looked up by name.
    fn is_indexed(self) -> bool {
        matches!(
            self,
            Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Func | Kind::Typedef
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct TypeInfo {
    name_off: u32,
    kind: Kind,
    kind_flag: bool,
    vlen: usize,
    /// `size` for sized kinds, the referenced type id for the others.
    size_or_type: u32,
    /// Where the trailing data starts in the type section.
    trailing: usize,
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_bits: u32,
}

/// The parsed type and string sections of one BTF blob.
pub struct Btf {
    type_section: Vec<u8>,
    strings: Vec<u8>,
    /// Type id N is at index N - 1 (id 0 is `void`).
    types: Vec<TypeInfo>,
    /// Named structs, unions, enums, typedefs and functions.
    by_name: HashMap<String, Vec<u32>>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(raw.try_into().ok()?))
}

/// `len` bytes at `off` within `data`, or an error naming `what`.
fn section<'a>(data: &'a [u8], off: usize, len: usize, what: &str) -> Result<&'a [u8]> {
    off.checked_add(len)
        .and_then(|end| data.get(off..end))
        .ok_or_else(|| anyhow!("BTF {what} section ({len} bytes at {off}) is out of bounds"))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf> {
        // Without it no program can be configured: a missing kernel feature, said in one line.
        const FIX: &str = "netdiag needs a kernel built with CONFIG_DEBUG_INFO_BTF=y; \
                           `netdiag counters` and `netdiag check` work without it";
        let data = std::fs::read(VMLINUX_BTF).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => unavailable(
                format!("{VMLINUX_BTF} is missing, so netdiag cannot learn this kernel's struct layouts"),
                FIX,
            ),
            _ => unavailable(format!("cannot read {VMLINUX_BTF} ({err})"), FIX),
        })?;
        Btf::from_bytes(&data).map_err(|err| unavailable(format!("{VMLINUX_BTF} does not parse as BTF ({err:#})"), FIX))
    }

    /// Parses a raw BTF blob in this machine's byte order.
    pub fn from_bytes(data: &[u8]) -> Result<Btf> {
        let header = data.get(..HEADER_LEN).context("BTF is shorter than its header")?;
        let magic = u16::from_ne_bytes([header[0], header[1]]);
        if magic == MAGIC.swap_bytes() {
            bail!("BTF is in the other byte order");
        }
        ensure!(magic == MAGIC, "not BTF: magic {magic:#06x}, expected {MAGIC:#06x}");
        ensure!(header[2] == 1, "unsupported BTF version {}", header[2]);
        let field = |index: usize| read_u32(header, 4 + 4 * index).unwrap_or(0) as usize;
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(0), field(1), field(2), field(3), field(4));
        ensure!(hdr_len >= HEADER_LEN, "BTF header length {hdr_len} is too short");
        let body = data.get(hdr_len..).context("BTF header length exceeds the data")?;
        let type_section = section(body, type_off, type_len, "type")?;
        let strings = section(body, str_off, str_len, "string")?;

        let types = parse_types(type_section)?;
        let mut btf = Btf {
            type_section: type_section.to_vec(),
            strings: strings.to_vec(),
            types,
            by_name: HashMap::new(),
        };
        btf.by_name = btf.index_names();
        Ok(btf)
    }

    fn index_names(&self) -> HashMap<String, Vec<u32>> {
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (index, info) in self.types.iter().enumerate() {
            if !info.kind.is_indexed() || info.name_off == 0 {
                continue;
            }
            // A name that is not a valid string cannot match any query, so it is not indexed.
            if let Ok(name) = self.name(info.name_off) {
                by_name.entry(name.to_owned()).or_default().push(index as u32 + 1);
            }
        }
        by_name
    }

    /// Byte offset of the member at `path` inside `struct_name`, looking through anonymous
    /// struct/union members; typedefs and qualifiers lead from one path element to the next.
    pub fn member_offset(&self, struct_name: &str, path: &[&str]) -> Result<u32> {
        let found = self.resolve_path(struct_name, path)?;
        ensure!(
            found.bitfield_bits == 0 && found.bit_offset % 8 == 0,
            "{} is a bitfield at bit {}, not byte-addressable",
            dotted(struct_name, path),
            found.bit_offset
        );
        u32::try_from(found.bit_offset / 8).context("member offset overflows u32")
    }

    /// Whether `struct_name` has the member at `path`, bitfields included.
    pub fn has_member(&self, struct_name: &str, path: &[&str]) -> bool {
        self.resolve_path(struct_name, path).is_ok()
    }

    /// Size in bytes of the type of the member at `path` inside `struct_name`.
    pub fn member_size(&self, struct_name: &str, path: &[&str]) -> Result<u32> {
        let found = self.resolve_path(struct_name, path)?;
        ensure!(
            found.bitfield_bits == 0,
            "{} is a {}-bit bitfield",
            dotted(struct_name, path),
            found.bitfield_bits
        );
        self.type_size(found.type_id)
            .with_context(|| format!("size of {}", dotted(struct_name, path)))
    }

    /// Value of `enumerator` in the enum (32- or 64-bit) called `enum_name`.
    pub fn enum_value(&self, enum_name: &str, enumerator: &str) -> Option<i64> {
        self.enums(enum_name)
            .find_map(|info| self.enumerators_of(info).find(|(name, _)| *name == enumerator))
            .map(|(_, value)| value)
    }

    /// Every enumerator of the enum called `enum_name`, in declaration order.
    pub fn enumerators(&self, enum_name: &str) -> Vec<(String, i64)> {
        let Some(info) = self.enums(enum_name).next() else { return Vec::new() };
        self.enumerators_of(info).map(|(name, value)| (name.to_owned(), value)).collect()
    }

    /// Whether the kernel has a function of that name (one it can attach fentry/kprobes to).
    pub fn has_func(&self, name: &str) -> bool {
        self.func_id(name).is_some()
    }

    /// BTF type id of the function called `name` (what an fentry program attaches to).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.named(name).find(|(_, info)| info.kind == Kind::Func).map(|(id, _)| id)
    }

    /// The function's prototype as C without qualifiers or parameter names, e.g.
    /// `int tcp_conn_request(struct request_sock_ops *, struct sock *)`: what a program that
    /// reads its arguments by position relies on.
    pub fn func_signature(&self, name: &str) -> Option<String> {
        let func = self.info(self.func_id(name)?)?;
        let proto = self.info(func.size_or_type).filter(|info| info.kind == Kind::FuncProto)?;
        let params: Vec<String> = self
            .records(proto, 8)
            .map(|param| self.type_name(read_u32(param, 4).unwrap_or(0), 0))
            .collect();
        let ret = self.type_name(proto.size_or_type, 0);
        Some(format!("{ret} {name}({})", params.join(", ")))
    }

    /// A type as C spells it, qualifiers left out; typedefs keep their own name.
    fn type_name(&self, id: u32, depth: usize) -> String {
        if id == 0 {
            return "void".into();
        }
        let Some(info) = self.info(id).filter(|_| depth < MAX_DEPTH) else {
            return "?".into();
        };
        let name = self.name(info.name_off).unwrap_or("?");
        match info.kind {
            Kind::Ptr => format!("{} *", self.type_name(info.size_or_type, depth + 1)),
            Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag => {
                self.type_name(info.size_or_type, depth + 1)
            }
            Kind::Struct => format!("struct {name}"),
            Kind::Union => format!("union {name}"),
            Kind::Fwd if info.kind_flag => format!("union {name}"),
            Kind::Fwd => format!("struct {name}"),
            Kind::Enum | Kind::Enum64 => format!("enum {name}"),
            Kind::FuncProto => "function".into(),
            // Compilers name C's boolean either way.
            Kind::Int if name == "_Bool" => "bool".into(),
            _ => name.into(),
        }
    }

    fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = (u32, &'a TypeInfo)> + 'a {
        let ids = self.by_name.get(name).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|&id| Some((id, self.info(id)?)))
    }

    fn enums<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a TypeInfo> + 'a {
        self.named(name)
            .map(|(_, info)| info)
            .filter(|info| matches!(info.kind, Kind::Enum | Kind::Enum64))
    }

    fn info(&self, id: u32) -> Option<&TypeInfo> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    fn name(&self, off: u32) -> Result<&str> {
        let tail = self.strings.get(off as usize..).context("BTF string offset out of bounds")?;
        let len = tail.iter().position(|&b| b == 0).context("BTF string is not terminated")?;
        std::str::from_utf8(&tail[..len]).context("BTF string is not UTF-8")
    }

    /// The kind-specific data after a type.
    fn trailing(&self, info: &TypeInfo) -> &[u8] {
        // parse_types checked that it lies inside the section.
        let end = info.trailing + info.kind.trailing_len(info.vlen);
        self.type_section.get(info.trailing..end).unwrap_or_default()
    }

    /// The trailing data as `record_len`-byte records (members, enumerators).
    fn records(&self, info: &TypeInfo, record_len: usize) -> impl Iterator<Item = &[u8]> {
        self.trailing(info).chunks_exact(record_len)
    }

    /// Enumerators of an ENUM or ENUM64; kind_flag says whether values are signed.
    fn enumerators_of<'a>(&'a self, info: &'a TypeInfo) -> impl Iterator<Item = (&'a str, i64)> {
        let is_64 = info.kind == Kind::Enum64;
        self.records(info, if is_64 { 12 } else { 8 }).filter_map(move |record| {
            let name = self.name(read_u32(record, 0)?).ok()?;
            let low = read_u32(record, 4)?;
            let value = if is_64 {
                // Unsigned values above i64::MAX wrap, as a C cast would.
                (u64::from(read_u32(record, 8)?) << 32 | u64::from(low)) as i64
            } else if info.kind_flag {
                i64::from(low as i32)
            } else {
                i64::from(low)
            };
            Some((name, value))
        })
    }

    fn members(&self, info: &TypeInfo) -> impl Iterator<Item = Member> {
        let bitfields = info.kind_flag;
        self.records(info, 12).filter_map(move |record| {
            let raw_offset = read_u32(record, 8)?;
            // With kind_flag set, the top byte holds the bitfield width.
            let (bit_offset, bitfield_bits) = if bitfields {
                (raw_offset & 0xff_ffff, raw_offset >> 24)
            } else {
                (raw_offset, 0)
            };
            Some(Member {
                name_off: read_u32(record, 0)?,
                type_id: read_u32(record, 4)?,
                bit_offset,
                bitfield_bits,
            })
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn skip_aliases(&self, mut id: u32) -> Result<(u32, &TypeInfo)> {
        for _ in 0..MAX_DEPTH {
            let info = self.info(id).ok_or_else(|| anyhow!("BTF type id {id} does not exist"))?;
            if !info.kind.is_alias() {
                return Ok((id, info));
            }
            id = info.size_or_type;
        }
        bail!("BTF type chain from id {id} is deeper than {MAX_DEPTH}")
    }

    fn struct_or_union(&self, id: u32) -> Option<&TypeInfo> {
        let (_, info) = self.skip_aliases(id).ok()?;
        matches!(info.kind, Kind::Struct | Kind::Union).then_some(info)
    }

    fn resolve_path(&self, struct_name: &str, path: &[&str]) -> Result<FoundMember> {
        // Several types may share a name; the first one that has the whole path wins.
        let mut first_error = None;
        for (id, _) in self.named(struct_name) {
            if self.struct_or_union(id).is_none() {
                continue;
            }
            match self.walk_path(id, struct_name, path) {
                Ok(found) => return Ok(found),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| anyhow!("struct {struct_name} not found in BTF")))
    }

    fn walk_path(&self, start: u32, struct_name: &str, path: &[&str]) -> Result<FoundMember> {
        let mut found = FoundMember { type_id: start, bit_offset: 0, bitfield_bits: 0 };
        for (depth, name) in path.iter().enumerate() {
            let walked = || dotted(struct_name, &path[..depth]);
            let container = self.struct_or_union(found.type_id).ok_or_else(|| {
                anyhow!("{} is not a struct or union, so has no member {name}", walked())
            })?;
            let member = self
                .find_member(container, name, &mut HashSet::new(), 0)
                .ok_or_else(|| anyhow!("{} has no member {name}", walked()))?;
            found = FoundMember {
                type_id: member.type_id,
                bit_offset: found.bit_offset + member.bit_offset,
                bitfield_bits: member.bitfield_bits,
            };
        }
        Ok(found)
    }

    /// Finds `name` among the members of a struct/union, descending into anonymous ones;
    /// `searched` holds the anonymous types already searched, so each is scanned once.
    fn find_member(
        &self,
        container: &TypeInfo,
        name: &str,
        searched: &mut HashSet<u32>,
        depth: usize,
    ) -> Option<FoundMember> {
        for member in self.members(container) {
            if member.name_off != 0 {
                if self.name(member.name_off).ok() == Some(name) {
                    return Some(FoundMember {
                        type_id: member.type_id,
                        bit_offset: u64::from(member.bit_offset),
                        bitfield_bits: member.bitfield_bits,
                    });
                }
                continue;
            }
            if depth >= MAX_DEPTH || !searched.insert(member.type_id) {
                continue;
            }
            let Some(inner) = self.struct_or_union(member.type_id) else { continue };
            if let Some(found) = self.find_member(inner, name, searched, depth + 1) {
                return Some(FoundMember {
                    bit_offset: found.bit_offset + u64::from(member.bit_offset),
                    ..found
                });
            }
        }
        None
    }

    fn type_size(&self, mut id: u32) -> Result<u32> {
        let mut count: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let (resolved, info) = self.skip_aliases(id)?;
            let size = match info.kind {
                Kind::Int
                | Kind::Struct
                | Kind::Union
                | Kind::Enum
                | Kind::Enum64
                | Kind::Float => info.size_or_type,
                Kind::Ptr => self.pointer_size(),
                Kind::Array => {
                    // struct btf_array { type, index_type, nelems }
                    let array = self.trailing(info);
                    count = count.saturating_mul(u64::from(read_u32(array, 8).unwrap_or(0)));
                    id = read_u32(array, 0).unwrap_or(0);
                    continue;
                }
                kind => bail!("BTF type id {resolved} ({kind:?}) has no size"),
            };
            let total = count.checked_mul(u64::from(size)).context("type size overflows")?;
            return u32::try_from(total).context("type size overflows u32");
        }
        bail!("BTF array nesting from id {id} is deeper than {MAX_DEPTH}")
    }

    /// BTF does not record pointer width; the kernel's `long` has it.
    fn pointer_size(&self) -> u32 {
        let long = self.types.iter().find(|info| {
            info.kind == Kind::Int
                && matches!(self.name(info.name_off), Ok("long int" | "long unsigned int"))
        });
        long.map_or(std::mem::size_of::<usize>() as u32, |info| info.size_or_type)
    }
}

/// `sock.__sk_common.skc_state`, for messages.
fn dotted(struct_name: &str, path: &[&str]) -> String {
    std::iter::once(struct_name).chain(path.iter().copied()).collect::<Vec<_>>().join(".")
}

struct FoundMember {
    type_id: u32,
    bit_offset: u64,
    bitfield_bits: u32,
}

/// Splits the type section into type records, checking each one's trailing data fits.
fn parse_types(section: &[u8]) -> Result<Vec<TypeInfo>> {
    let mut types = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let id = types.len() + 1;
        let record = section
            .get(at..at + TYPE_RECORD_LEN)
            .ok_or_else(|| anyhow!("BTF type id {id} is truncated"))?;
        let field = |index: usize| read_u32(record, 4 * index).unwrap_or(0);
        let info = field(1);
        let raw_kind = (info >> 24) & 0x1f;
        let kind = Kind::from_raw(raw_kind)
            .ok_or_else(|| anyhow!("BTF type id {id} has unknown kind {raw_kind}"))?;
        let vlen = (info & 0xffff) as usize;
        let trailing = at + TYPE_RECORD_LEN;
        let end = trailing + kind.trailing_len(vlen);
        ensure!(end <= section.len(), "BTF type id {id} ({kind:?}) runs past the type section");
        types.push(TypeInfo {
            name_off: field(0),
            kind,
            kind_flag: info >> 31 == 1,
            vlen,
            size_or_type: field(2),
            trailing,
        });
        at = end;
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from type records, interning names as it goes.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder { types: Vec::new(), strings: vec![0] }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn words(&mut self, words: &[u32]) {
            for word in words {
                self.types.extend_from_slice(&word.to_ne_bytes());
            }
        }

        fn header(&mut self, name: &str, kind: u32, kind_flag: bool, vlen: u32, size_or_type: u32) {
            let name = self.name(name);
            self.words(&[name, (kind_flag as u32) << 31 | kind << 24 | vlen, size_or_type]);
        }

        fn int(&mut self, name: &str, size: u32) {
            self.header(name, 1, false, 0, size);
            self.words(&[size * 8]);
        }

        fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) {
            self.header(name, kind, false, members.len() as u32, size);
            for &(member, type_id, bit_offset) in members {
                let member = self.name(member);
                self.words(&[member, type_id, bit_offset]);
            }
        }

        fn build(&self) -> Vec<u8> {
            let mut blob = Vec::new();
            blob.extend_from_slice(&MAGIC.to_ne_bytes());
            blob.extend_from_slice(&[1, 0]);
            let type_len = self.types.len() as u32;
            for word in [24, 0, type_len, type_len, self.strings.len() as u32] {
                blob.extend_from_slice(&u32::to_ne_bytes(word));
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// ```c
    /// typedef struct { int inum; } ns_t;                        // 2 (struct), 3 (typedef)
    /// struct outer {                                            // 4
    ///     int first;
    ///     union { unsigned short narrow; ns_t ns; };            // 5 (anonymous union)
    ///     const ns_t pair[3];                                   // 6 (const), 7 (array)
    ///     unsigned flag:3;                                      // via struct 8
    /// };
    /// enum color { RED = -1, BLUE = 7 };                        // 9
    /// int tcp_v4_rcv(void);                                     // 10 (proto), 11 (func)
    /// enum wide { HUGE = 1 << 40 };                             // 12
    /// struct bits { unsigned pad:5, flag:3; };                  // 13
    /// ```
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        b.int("int", 4); // 1
        b.composite(4, "", 4, &[("inum", 1, 0)]); // 2
        b.header("ns_t", 8, false, 0, 2); // 3
        b.composite(4, "outer", 24, &[("first", 1, 0), ("", 5, 32), ("pair", 7, 64)]); // 4
        b.composite(5, "", 4, &[("narrow", 8, 0), ("ns", 3, 0)]); // 5
        b.header("", 10, false, 0, 3); // 6
        b.header("", 3, false, 0, 0); // 7
        b.words(&[6, 1, 3]);
        b.int("unsigned short", 2); // 8
        b.header("color", 6, true, 2, 4); // 9
        let (red, blue) = (b.name("RED"), b.name("BLUE"));
        b.words(&[red, -1i32 as u32, blue, 7]);
        b.header("", 13, false, 0, 1); // 10
        b.header("tcp_v4_rcv", 12, false, 0, 10); // 11
        b.header("wide", 19, false, 1, 8); // 12
        let huge = b.name("HUGE");
        b.words(&[huge, 0, 1 << 8]);
        b.header("bits", 4, true, 2, 4); // 13
        let (pad, flag) = (b.name("pad"), b.name("flag"));
        b.words(&[pad, 1, 5 << 24, flag, 1, 3 << 24 | 5]);
        b.build()
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_typedefs() {
        let btf = Btf::from_bytes(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", &["first"]).unwrap(), 0);
        assert_eq!(btf.member_offset("outer", &["narrow"]).unwrap(), 4);
        assert_eq!(btf.member_offset("outer", &["ns", "inum"]).unwrap(), 4);
        assert_eq!(btf.member_offset("outer", &["pair"]).unwrap(), 8);
        assert_eq!(btf.member_offset("ns_t", &["inum"]).unwrap(), 0);
        assert_eq!(btf.member_size("outer", &["narrow"]).unwrap(), 2);
        assert_eq!(btf.member_size("outer", &["ns"]).unwrap(), 4);
        assert_eq!(btf.member_size("outer", &["pair"]).unwrap(), 12);
        assert_eq!(btf.member_size("outer", &[]).unwrap(), 24);
    }

    #[test]
    fn errors_name_the_missing_piece() {
        let btf = Btf::from_bytes(&sample()).unwrap();
        let err = btf.member_offset("outer", &["ns", "nope"]).unwrap_err().to_string();
        assert_eq!(err, "outer.ns has no member nope");
        let err = btf.member_offset("outer", &["first", "x"]).unwrap_err().to_string();
        assert!(err.contains("outer.first is not a struct"), "{err}");
        let err = btf.member_offset("missing", &["x"]).unwrap_err().to_string();
        assert!(err.contains("struct missing not found"), "{err}");
        let err = btf.member_offset("bits", &["flag"]).unwrap_err().to_string();
        assert!(err.contains("bits.flag is a bitfield at bit 5"), "{err}");
    }

    #[test]
    fn reads_enums_and_functions() {
        let btf = Btf::from_bytes(&sample()).unwrap();
        assert_eq!(btf.enum_value("color", "RED"), Some(-1));
        assert_eq!(btf.enum_value("color", "GREEN"), None);
        assert_eq!(btf.enum_value("wide", "HUGE"), Some(1 << 40));
        assert_eq!(btf.enumerators("color"), vec![("RED".into(), -1), ("BLUE".into(), 7)]);
        assert!(btf.enumerators("outer").is_empty());
        assert!(btf.has_func("tcp_v4_rcv"));
        assert!(!btf.has_func("outer"));
        assert_eq!(btf.func_id("tcp_v4_rcv"), Some(11));
        assert_eq!(btf.func_signature("tcp_v4_rcv").as_deref(), Some("int tcp_v4_rcv()"));
        assert_eq!(btf.func_signature("outer"), None);
    }

    /// `_Bool probe(const struct sk_buff *skb, u32 *last, union data);`, as C's `bool`.
    #[test]
    fn renders_function_signatures_without_qualifiers_or_names() {
        let mut b = Builder::new();
        b.int("_Bool", 1); // 1
        b.composite(4, "sk_buff", 0, &[]); // 2
        b.header("", 10, false, 0, 2); // 3: const struct sk_buff
        b.header("", 2, false, 0, 3); // 4: pointer to 3
        b.int("unsigned int", 4); // 5
        b.header("u32", 8, false, 0, 5); // 6
        b.header("", 2, false, 0, 6); // 7: u32 *
        b.header("data", 7, true, 0, 0); // 8: forward-declared union
        b.header("", 13, false, 3, 1); // 9: prototype
        let (skb, last, data) = (b.name("skb"), b.name("last"), b.name("data"));
        b.words(&[skb, 4, last, 7, data, 8]);
        b.header("probe", 12, false, 0, 9); // 10
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert_eq!(
            btf.func_signature("probe").as_deref(),
            Some("bool probe(struct sk_buff *, u32 *, union data)")
        );
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        let blob = sample();
        for len in 0..blob.len() {
            let _ = Btf::from_bytes(&blob[..len]);
        }
        for at in 0..blob.len() {
            for value in [0x00, 0x7f, 0xff] {
                let mut mutated = blob.clone();
                mutated[at] = value;
                if let Ok(btf) = Btf::from_bytes(&mutated) {
                    let _ = btf.member_offset("outer", &["ns", "inum"]);
                    let _ = btf.member_size("outer", &["pair"]);
                    let _ = btf.enumerators("color");
                }
            }
        }
        assert!(Btf::from_bytes(&blob[..blob.len() - 1]).is_err());
        assert!(Btf::from_bytes(b"not btf at all, definitely not").is_err());
    }

    #[test]
    fn survives_reference_cycles() {
        let mut b = Builder::new();
        b.header("loop", 8, false, 0, 1); // 1: typedef to itself
        b.composite(4, "self", 4, &[("", 2, 0), ("", 1, 0)]); // 2: anonymous member of itself
        b.header("arr", 3, false, 0, 0); // 3: array of itself
        b.words(&[3, 3, 2]);
        b.composite(4, "holder", 4, &[("a", 3, 0), ("l", 1, 0)]); // 4
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert!(btf.member_offset("self", &["x"]).is_err());
        assert!(btf.member_size("holder", &["a"]).is_err());
        assert!(btf.member_size("holder", &["l"]).is_err());
        assert!(btf.member_offset("loop", &["x"]).is_err());
    }

    #[test]
    fn uses_the_first_of_same_named_structs_that_has_the_path() {
        let mut b = Builder::new();
        b.int("int", 4); // 1
        b.composite(4, "dup", 4, &[("a", 1, 0)]); // 2
        b.composite(4, "dup", 8, &[("a", 1, 0), ("b", 1, 32)]); // 3
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert_eq!(btf.member_size("dup", &[]).unwrap(), 4);
        assert_eq!(btf.member_offset("dup", &["b"]).unwrap(), 4);
        assert_eq!(
            btf.member_offset("dup", &["c"]).unwrap_err().to_string(),
            "dup has no member c"
        );
    }

    fn kernel() -> Option<Btf> {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipping: {VMLINUX_BTF} missing");
            return None;
        }
        Some(Btf::from_sys_fs().unwrap())
    }

    #[test]
    fn reads_the_running_kernel() {
        let Some(btf) = kernel() else { return };
        let head = btf.member_offset("sk_buff", &["head"]).unwrap();
        let data = btf.member_offset("sk_buff", &["data"]).unwrap();
        assert!(head > 0 && data > head, "head {head}, data {data}");
        assert_eq!(
            btf.member_size("sk_buff", &["head"]).unwrap(),
            std::mem::size_of::<usize>() as u32
        );
        assert_eq!(btf.member_size("sk_buff", &["network_header"]).unwrap(), 2);
        assert_eq!(btf.member_size("sk_buff", &["transport_header"]).unwrap(), 2);
        assert_eq!(
            btf.member_offset("sock", &["__sk_common", "skc_state"]).unwrap(),
            btf.member_offset("sock_common", &["skc_state"]).unwrap()
        );
        assert_eq!(btf.member_size("sock", &["__sk_common", "skc_state"]).unwrap(), 1);
        assert_eq!(btf.member_size("net", &["ns", "inum"]).unwrap(), 4);
        btf.member_offset("net_device", &["nd_net", "net"]).unwrap();
        assert!(btf.has_func("tcp_v4_rcv"));
        assert!(!btf.has_func("sk_buff"));
        assert_eq!(
            btf.func_signature("tcp_oow_rate_limited").as_deref(),
            Some("bool tcp_oow_rate_limited(struct net *, struct sk_buff *, int, u32 *)")
        );
        let reasons = btf.enumerators("skb_drop_reason");
        assert!(reasons.iter().any(|(name, _)| name == "SKB_DROP_REASON_NOT_SPECIFIED"));
        if let Some(paws) = btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_TCP_RFC7323_PAWS") {
            assert_eq!(paws, 36, "value on the 6.18 kernel this was written against");
        }
    }

    #[test]
    fn kernel_offsets_agree_with_bpftool() {
        let Some(btf) = kernel() else { return };
        // `bpftool btf dump ... format raw` prints `'skc_state' type_id=N bits_offset=144`.
        let Ok(out) = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", VMLINUX_BTF, "format", "raw"])
            .output()
        else {
            eprintln!("skipping: bpftool not installed");
            return;
        };
        let dump = String::from_utf8_lossy(&out.stdout);
        let bits_offset = |struct_name: &str, member: &str| -> u32 {
            let header = format!("STRUCT '{struct_name}' size=");
            let start = dump.find(&header).unwrap_or_else(|| panic!("{header}"));
            let body = dump[start..].lines().skip(1).take_while(|line| line.starts_with('\t'));
            let line = body
                .into_iter()
                .find(|line| line.trim_start().starts_with(&format!("'{member}' ")))
                .unwrap_or_else(|| panic!("{struct_name}.{member} in bpftool output"));
            let value = line.split("bits_offset=").nth(1).unwrap().split_whitespace().next();
            value.unwrap().parse().unwrap()
        };
        for (struct_name, member) in [
            ("sk_buff", "head"),
            ("sock_common", "skc_state"),
            ("tcp_sock", "rcv_nxt"),
            ("net", "ns"),
        ] {
            let ours = btf.member_offset(struct_name, &[member]).unwrap();
            assert_eq!(ours * 8, bits_offset(struct_name, member), "{struct_name}.{member}");
        }
    }

    #[test]
    fn parses_the_kernel_quickly() {
        let Some(_) = kernel() else { return };
        let start = std::time::Instant::now();
        let btf = Btf::from_sys_fs().unwrap();
        btf.member_offset("sk_buff", &["head"]).unwrap();
        let elapsed = start.elapsed();
        eprintln!("parsed {} types and looked one up in {elapsed:?}", btf.types.len());
        // Debug builds are several times slower than release; this only catches a blow-up.
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }
}
