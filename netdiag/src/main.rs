fn main() {
    println!("{}", netdiag::EBPF_OBJECT.len());
}
