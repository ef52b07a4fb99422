#![no_std]
// Empty on purpose: `netdiag` lists this crate as a build-dependency so cargo rebuilds the kernel
// programs (built by aya-build in netdiag/build.rs) whenever their sources change.
