//! The `cmx-kms` binary: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: the shipped binary is
/// static musl, whose malloc costs about two thirds more CPU per request on the hot
/// path (BENCHMARKS.md, section "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cmx_kms::main()
}
