//! Tracepoint format files from tracefs: where each field sits in the raw record, and the
//! value names of the `__print_symbolic` table (used to name drop reasons when BTF lacks them).
use std::{
    ffi::CString,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

/// Where tracefs is mounted on current systems, and where netdiag mounts it if nowhere is.
const TRACEFS: &str = "/sys/kernel/tracing";
/// The older location, through debugfs.
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// One record field from a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// A parsed `events/<category>/<name>/format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointFormat {
    pub id: u32,
    pub fields: Vec<Field>,
    /// Value → name pairs of the first `__print_symbolic` table in the print format, in order;
    /// entries whose value is not a plain integer expression are left out.
    pub symbols: Vec<(i64, String)>,
}

/// The directory tracefs is mounted on, mounting it at `/sys/kernel/tracing` if needed.
pub fn tracefs_root() -> Result<PathBuf> {
    let mounted = |dir: &str| Path::new(dir).join("events").is_dir();
    if let Some(dir) = [TRACEFS, DEBUGFS_TRACING].into_iter().find(|dir| mounted(dir)) {
        return Ok(PathBuf::from(dir));
    }
    mount_tracefs().with_context(|| {
        format!(
            "tracefs is mounted at neither {TRACEFS} nor {DEBUGFS_TRACING}, \
             and mounting it at {TRACEFS} failed"
        )
    })?;
    ensure!(mounted(TRACEFS), "mounted tracefs at {TRACEFS}, but it has no events directory");
    Ok(PathBuf::from(TRACEFS))
}

fn mount_tracefs() -> Result<()> {
    let (source, target) = (CString::new("tracefs")?, CString::new(TRACEFS)?);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data argument.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        bail!("mount -t tracefs: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads and parses the format of tracepoint `category:name`.
pub fn read_format(category: &str, name: &str) -> Result<TracepointFormat> {
    ensure!(
        ![category, name].iter().any(|part| part.is_empty() || part.contains('/') || *part == ".."),
        "invalid tracepoint name {category}:{name}"
    );
    let path = tracefs_root()?.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path).map_err(|err| match err.kind() {
        ErrorKind::NotFound => anyhow!("tracepoint {category}:{name} not found on this kernel"),
        _ => anyhow!("read {}: {err}", path.display()),
    })?;
    TracepointFormat::parse(&text).with_context(|| format!("parse {}", path.display()))
}

impl TracepointFormat {
    pub fn parse(text: &str) -> Result<TracepointFormat> {
        let mut id = None;
        let mut fields = Vec::new();
        let mut symbols = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("ID:") {
                id = Some(value.trim().parse().with_context(|| format!("bad ID line: {line}"))?);
            } else if line.starts_with("field:") {
                fields.push(parse_field(line).with_context(|| format!("bad field line: {line}"))?);
            } else if let Some(print_fmt) = line.strip_prefix("print fmt:") {
                symbols = first_symbol_table(print_fmt);
            }
        }
        let id = id.context("format has no ID line")?;
        ensure!(!fields.is_empty(), "format has no fields");
        Ok(TracepointFormat { id, fields, symbols })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }
}

/// `field:enum skb_drop_reason reason;<TAB>offset:36;<TAB>size:4;<TAB>signed:0;`
fn parse_field(line: &str) -> Result<Field> {
    let mut declaration = None;
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in line.split(';').map(str::trim).filter(|part| !part.is_empty()) {
        let (key, value) = part.split_once(':').with_context(|| format!("no ':' in {part:?}"))?;
        let number = || value.trim().parse::<u32>().with_context(|| format!("bad {key} {value:?}"));
        match key {
            "field" => declaration = Some(value),
            "offset" => offset = Some(number()?),
            "size" => size = Some(number()?),
            "signed" => signed = Some(number()? != 0),
            _ => {} // Keys added by future kernels.
        }
    }
    let declaration = declaration.context("no field declaration")?;
    Ok(Field {
        name: declared_name(declaration).with_context(|| format!("no name in {declaration:?}"))?,
        offset: offset.context("no offset")?,
        size: size.context("no size")?,
        signed: signed.context("no signed")?,
    })
}

/// The name in a C declaration: `__u8 saddr[4]` → `saddr`, `__data_loc char[] name` → `name`.
fn declared_name(declaration: &str) -> Option<String> {
    let mut declaration = declaration.trim_end();
    while let Some(before) = declaration.strip_suffix(']') {
        declaration = before[..before.rfind('[')?].trim_end();
    }
    let name = declaration.rsplit([' ', '\t', '*']).next()?;
    let is_identifier = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (!name.is_empty() && is_identifier).then(|| name.to_string())
}

/// The `{ value, "name" }` entries of the first `__print_symbolic(expr, ...)` in a print format.
fn first_symbol_table(print_fmt: &str) -> Vec<(i64, String)> {
    const CALL: &str = "__print_symbolic(";
    let Some(start) = print_fmt.find(CALL) else { return Vec::new() };
    let args = &print_fmt[start + CALL.len()..];
    // The table follows the first top-level comma; it ends at the call's closing parenthesis.
    let Some(table_start) = top_level_position(args, |c| c == ',') else { return Vec::new() };
    let table = &args[table_start + 1..];
    let table = &table[..top_level_position(table, |c| c == ')').unwrap_or(table.len())];

    let mut symbols = Vec::new();
    let mut rest = table;
    while let Some(open) = rest.find('{') {
        let Some(close) = top_level_position(&rest[open + 1..], |c| c == '}') else { break };
        let entry = &rest[open + 1..open + 1 + close];
        rest = &rest[open + 1 + close + 1..];
        if let Some(symbol) = parse_symbol(entry) {
            symbols.push(symbol);
        }
    }
    symbols
}

/// ` 36, "TCP_RFC7323_PAWS" ` → (36, "TCP_RFC7323_PAWS").
fn parse_symbol(entry: &str) -> Option<(i64, String)> {
    let quote = entry.find('"')?;
    let value = entry[..quote].trim().strip_suffix(',')?;
    let name = entry[quote + 1..].rsplit_once('"')?.0;
    Some((eval_integer(value)?, name.to_string()))
}

/// Byte position of the first character matching `stop` outside parentheses, braces and
/// string literals.
fn top_level_position(text: &str, stop: impl Fn(char) -> bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if depth == 0 && stop(c) {
            return Some(at);
        }
        match c {
            '"' => in_string = true,
            '(' | '{' => depth += 1,
            ')' | '}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    None
}

/// Evaluates the integer expressions seen in symbol tables after preprocessing: literals with
/// C suffixes (`1ULL`, `0x040`), parentheses, unary minus, casts (`( int) 3`) and `a << b`.
/// Anything else (an enum name the kernel left unexpanded, say) yields None.
fn eval_integer(expr: &str) -> Option<i64> {
    let expr = expr.trim();
    if let Some(shift) = top_level_shift(expr) {
        let (left, right) = (eval_integer(&expr[..shift])?, eval_integer(&expr[shift + 2..])?);
        return left.checked_shl(u32::try_from(right).ok()?);
    }
    if let Some(negated) = expr.strip_prefix('-') {
        return eval_integer(negated)?.checked_neg();
    }
    if let Some(inner) = expr.strip_prefix('(') {
        let close = top_level_position(inner, |c| c == ')')?;
        let (group, after) = (&inner[..close], inner[close + 1..].trim());
        return match after {
            "" => eval_integer(group),
            // A parenthesised type name followed by an operand is a cast.
            _ if group.bytes().all(|b| b.is_ascii_alphanumeric() || b" _*".contains(&b)) => {
                eval_integer(after)
            }
            _ => None,
        };
    }
    let digits = expr.trim_end_matches(['u', 'U', 'l', 'L']);
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    // `-9ULL` and `0xffffffffffffffff` wrap as C's unsigned arithmetic would.
    Some(value as i64)
}

fn top_level_shift(expr: &str) -> Option<usize> {
    let first = top_level_position(expr, |c| c == '<')?;
    expr[first + 1..].starts_with('<').then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE_SKB: &str = r#"name: kfree_skb
ID: 2310
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:void * skbaddr;	offset:8;	size:8;	signed:0;
	field:__u8 saddr[4];	offset:16;	size:4;	signed:0;
	field:u32 grid[2][3];	offset:40;	size:24;	signed:0;
	field:__data_loc char[] name;	offset:20;	size:4;	signed:0;
	field:enum skb_drop_reason reason;	offset:36;	size:4;	signed:0;

print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 36, "TCP_RFC7323_PAWS" }), __print_symbolic(REC->x, { 1, "OTHER" })
"#;

    #[test]
    fn parses_fields_and_the_symbol_table() {
        let format = TracepointFormat::parse(KFREE_SKB).unwrap();
        assert_eq!(format.id, 2310);
        let names: Vec<_> = format.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["common_type", "common_pid", "skbaddr", "saddr", "grid", "name", "reason"]
        );
        assert_eq!(
            format.field("reason"),
            Some(&Field { name: "reason".into(), offset: 36, size: 4, signed: false })
        );
        assert!(format.field("common_pid").unwrap().signed);
        assert_eq!(format.field("saddr").unwrap().size, 4);
        assert_eq!(format.symbols, [(2, "NOT_SPECIFIED".into()), (36, "TCP_RFC7323_PAWS".into())]);
    }

    #[test]
    fn rejects_broken_formats() {
        assert!(TracepointFormat::parse("name: x\nformat:\n").is_err());
        assert!(TracepointFormat::parse("ID: 1\n").is_err());
        let bad_offset = "ID: 1\n\tfield:int x;\toffset:z;\tsize:4;\tsigned:1;\n";
        assert!(
            TracepointFormat::parse(bad_offset).unwrap_err().to_string().contains("bad field line")
        );
    }

    #[test]
    fn evaluates_symbol_values() {
        for (expr, value) in [
            ("36", 36),
            ("0x040", 64),
            ("1ULL", 1),
            ("(-1)", -1),
            ("-9ULL", -9),
            ("((((1UL))) << (11))", 2048),
            ("( int) (( __kernel_rwf_t)0x00000004)", 4),
        ] {
            assert_eq!(eval_integer(expr), Some(value), "{expr}");
        }
        for expr in ["TCP_ESTABLISHED", "(1 + 2)", "((1UL) << (APICV_X))", "", "(", "1 << 99"] {
            assert_eq!(eval_integer(expr), None, "{expr}");
        }
    }

    #[test]
    fn symbol_tables_tolerate_odd_entries() {
        let fmt = concat!(
            r#""%s", __print_symbolic(((REC->x) & 3), "#,
            r#"{ (1u << 1), "A, B" }, { FOO, "SKIPPED" }, { 0x3, "C\"D" })"#
        );
        assert_eq!(first_symbol_table(fmt), [(2, "A, B".into()), (3, r#"C\"D"#.into())]);
        assert!(first_symbol_table(r#""%d", REC->x"#).is_empty());
        assert!(first_symbol_table("__print_symbolic(REC->x, { 1, \"unterminated").is_empty());
    }

    #[test]
    fn reads_the_real_kfree_skb_format() {
        let format = match read_format("skb", "kfree_skb") {
            Ok(format) => format,
            Err(err) if tracefs_root().is_err() => return eprintln!("skipping: {err:#}"),
            Err(err) => panic!("{err:#}"),
        };
        assert!(format.id > 0);
        assert_eq!(format.field("skbaddr").unwrap().size, std::mem::size_of::<usize>() as u32);
        let reason = format.field("reason").expect("kernel 5.17+ has drop reasons");
        assert_eq!(reason.size, 4);
        assert!(
            format.symbols.iter().any(|(_, name)| name == "NOT_SPECIFIED"),
            "{:?}",
            format.symbols
        );
        if let Some((value, _)) = format.symbols.iter().find(|(_, name)| name == "TCP_RFC7323_PAWS")
        {
            assert_eq!(*value, 36, "value on the 6.18 kernel this was written against");
        }
    }

    #[test]
    fn names_a_missing_tracepoint() {
        if tracefs_root().is_err() {
            return;
        }
        let err = read_format("skb", "no_such_event").unwrap_err().to_string();
        assert_eq!(err, "tracepoint skb:no_such_event not found on this kernel");
    }

    #[test]
    fn parses_every_format_on_this_kernel() {
        let Ok(root) = tracefs_root() else { return };
        let mut parsed = 0;
        for category in std::fs::read_dir(root.join("events")).unwrap().flatten() {
            let Ok(events) = std::fs::read_dir(category.path()) else { continue };
            for event in events.flatten() {
                let Ok(text) = std::fs::read_to_string(event.path().join("format")) else {
                    continue;
                };
                TracepointFormat::parse(&text)
                    .unwrap_or_else(|err| panic!("{}: {err:#}", event.path().display()));
                parsed += 1;
            }
        }
        assert!(parsed > 100, "only {parsed} formats");
    }
}
