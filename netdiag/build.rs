/// Builds `netdiag-ebpf` for the BPF target with nightly + bpf-linker (`cargo xtask setup`
/// installs both) and leaves the object in OUT_DIR for `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root_dir = format!("{manifest_dir}/../netdiag-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "netdiag-ebpf", root_dir: &root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
