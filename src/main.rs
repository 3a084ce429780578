//! The `image-registry` binary: parses the command line and runs it (see `image_registry::cli`).

#![forbid(unsafe_code)]

use clap::Parser;
use image_registry::cli::{run, Cli};

/// jemalloc instead of the system allocator: the registry's large, short-lived buffers (object-store
/// parts of `chunkSizeMiB`, read blocks) stayed resident under glibc malloc once freed (its
/// per-thread arenas, and its mmap threshold that rises to the largest freed block): 32 concurrent
/// 100 MiB pushes to S3 peaked at 157 MiB RSS for a live heap of ~77 MiB, with jemalloc at 97 MiB
/// (benches/README.md, "Memory of concurrent pushes"). Small requests got ~30 % faster too.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-registry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
