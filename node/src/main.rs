//! The `golek` binary: parse the command line, run the command (which starts the log).

use clap::Parser;

/// mimalloc rather than glibc's malloc: the request path allocates and frees many small
/// buffers across threads, where glibc's arenas cost locks and consolidation (see
/// bench/profile.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's option numbers (`mi_option_e` in its `mimalloc.h`).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Resident memory like glibc's at idle: arenas committed as they are used rather than when
/// reserved, and freed pages returned to the OS at once (bench/memory.sh). Set before the
/// first allocation (an `.init_array` constructor runs before Rust's runtime allocates), and
/// only where the environment does not set them (MIMALLOC_ARENA_EAGER_COMMIT,
/// MIMALLOC_PURGE_DELAY). Allocates nothing.
extern "C" fn allocator_options() {
    for (option, value, var) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            0,
            c"MIMALLOC_ARENA_EAGER_COMMIT",
        ),
        (MI_OPTION_PURGE_DELAY, 0, c"MIMALLOC_PURGE_DELAY"),
    ] {
        // SAFETY: getenv reads the environment (no thread runs yet); mi_option_set writes a
        // process-wide option and touches no memory.
        unsafe {
            if libc::getenv(var.as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(option, value);
            }
        }
    }
}

#[used]
#[link_section = ".init_array"]
static ALLOCATOR_OPTIONS: extern "C" fn() = allocator_options;

fn main() -> std::process::ExitCode {
    let cli = golek_node::cli::Cli::parse();
    match golek_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("golek: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
