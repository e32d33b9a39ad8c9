//! Builds the eBPF programs (`damon-ebpf`) for `bpfel-unknown-none` with the `nightly`
//! toolchain and bpf-linker; the object is embedded into the library with
//! `include_bytes_aligned!`. `cargo xtask` installs the prerequisites.
fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../damon-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "damon-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
