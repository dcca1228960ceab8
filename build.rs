//! Hands link/hot-text.ld to the linker for release builds of the `queuectl` binary
//! on Linux: it gathers the functions short commands run in front of the rest of the
//! code, so an `enqueue` call touches fewer pages (see link/hot-text.sh for why and
//! how). The script only orders code; a build without it behaves the same. Debug
//! builds leave it out, as matching its patterns adds seconds to every link there.
//! GNU ld and LLVM's lld (Rust's default linker here) both read it; set
//! `QUEUECTL_HOT_TEXT=0` to leave it out, e.g. for a linker without linker-script
//! support such as mold.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=link/hot-text.ld");
    println!("cargo::rerun-if-env-changed=QUEUECTL_HOT_TEXT");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let wanted = env::var("QUEUECTL_HOT_TEXT").map_or(true, |v| v != "0");
    let Ok(root) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let script = Path::new(&root).join("link").join("hot-text.ld");
    if linux && release && wanted && script.exists() {
        println!("cargo::rustc-link-arg-bins=-T");
        println!("cargo::rustc-link-arg-bins={}", script.display());
    }
}
