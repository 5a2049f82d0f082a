//! Linking libtorch into the binaries that use trainmon (also the build script of this
//! workspace's `examples/` and `tests/` packages).
//!
//! - **CUDA, for every binary that links trainmon — a user's too.** torch-sys asks for
//!   `libtorch_cuda`, but nothing refers to it by symbol, so the linker's `--as-needed` drops
//!   it and CUDA is silently missing on a GPU machine. Where libtorch has CUDA, trainmon links a
//!   one-symbol archive, whole, whose only content refers to a function of `libtorch_cuda`: the
//!   library is then needed, in every binary that links trainmon. (A link argument would not
//!   do: cargo applies those to the package's own targets only.)
//! - **The run-time path, for this workspace's own binaries**: cargo does not put libtorch on the
//!   library path of the binaries it runs, so this package's (and `examples/`'s, `tests/`'s)
//!   get an rpath to libtorch's directory. A user's crate gets its rpath from its
//!   `.cargo/config.toml`, which `cargo trainmon setup` writes.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys reports libtorch's directory (`links = "tch"`).
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda && std::env::var("CARGO_PKG_NAME").as_deref() == Ok("trainmon") {
        link_cuda_anchor();
    }
}

/// `at::cuda::warp_size()`: a plain function that `libtorch_cuda` exports.
const CUDA_SYMBOL: &str = "_ZN2at4cuda9warp_sizeEv";

fn link_cuda_anchor() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = out.join("trainmon_cuda_anchor.c");
    std::fs::write(
        &source,
        format!(
            "/* Keeps libtorch_cuda among the needed libraries of binaries that link trainmon: a\n\
              * constructor (which the linker keeps) takes the address of one of its functions\n\
              * (without calling it). */\n\
             extern int {CUDA_SYMBOL}(void);\n\
             void *volatile trainmon_cuda_anchor;\n\
             __attribute__((constructor)) static void trainmon_keep_cuda(void) {{\n\
                 trainmon_cuda_anchor = (void *)&{CUDA_SYMBOL};\n\
             }}\n"
        ),
    )
    .expect("write the CUDA anchor's source");
    cc::Build::new()
        .file(&source)
        .cargo_metadata(false)
        .compile("trainmon_cuda_anchor");
    println!("cargo:rustc-link-search=native={}", out.display());
    // Whole: nothing refers to the anchor, and an archive's unreferenced members are left out.
    // Not bundled into the rlib, so that the whole-archive applies where binaries are linked.
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=trainmon_cuda_anchor");
}
