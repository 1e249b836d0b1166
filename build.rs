//! Release builds of the binary lay out the code of a platform call together.
//!
//! Every platform call is a whole process, and most of what it counts as memory is the
//! binary's own code: the kernel maps the page cache 64 KiB around each page a process
//! touches (fault-around), so the 2.4 MB of code a `run get_presence` executes, scattered
//! over 22 MB of text, came to 14.6 MB of mapped text (23 MiB of peak RSS in all).
//! `link/startup.order` names those functions (written by `scripts/startup-order.py`
//! from callgrind runs and native page faults), and LLD's
//! `--symbol-ordering-file` places them first, in that order
//! (llvm-project `lld/test/ELF/symbol-ordering-file.s`). Measured in docs/benchmarks.md.
//!
//! Only a linker that takes the option gets it: rustc links x86_64 Linux with LLD by
//! default since 1.90 (blog.rust-lang.org/2025/09/01/rust-lld-on-1.90.0-stable), older
//! toolchains and other targets with the system's `ld`, which does not know it. So the
//! option is first tried on an empty program with the same rustc, target, linker and
//! flags; where that link fails, the build goes on without it. Layout only: a stale or
//! ignored file changes how fast a call starts, never what it does.
//! `MSGRAPH_LINK_ORDER=off` turns it off.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    let order = Path::new(&env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("link")
        .join("startup.order");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=MSGRAPH_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let off = env::var("MSGRAPH_LINK_ORDER").is_ok_and(|v| v == "off");
    if !release || off || !order.is_file() {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    if linker_takes(&args) {
        for a in &args {
            println!("cargo:rustc-link-arg-bin=msgraph-connector={a}");
        }
    } else {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (not LLD): \
             built without link/startup.order, so each call maps more of the binary"
        );
    }
}

/// Whether an empty program links with `link_args`, built as cargo builds this package.
fn linker_takes(link_args: &[String]) -> bool {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let src = out.join("order_probe.rs");
    if std::fs::write(&src, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg(&src)
        .arg("--crate-name=order_probe")
        .arg("--crate-type=bin")
        .arg("--out-dir")
        .arg(&out);
    if let Ok(target) = env::var("TARGET") {
        cmd.arg("--target").arg(target);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    // The flags cargo gives rustc (RUSTFLAGS and the config's rustflags), which may
    // choose the linker (`-C linker-features=-lld`).
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    for a in link_args {
        cmd.arg("-C").arg(format!("link-arg={a}"));
    }
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(out.join(format!("order_probe{}", env::consts::EXE_SUFFIX)));
    ok
}
