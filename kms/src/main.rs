//! The `cmx-kms` binary: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: measured first with static
/// musl, whose malloc cost about two thirds more CPU per request on the hot path
/// (BENCHMARKS.md, section "Allocator"), and kept for the glibc 2.28 build that
/// ships (docs/design/performance.md, "musl or glibc").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cmx_kms::main()
}
