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
//! - **trainmon's own C++** (`csrc/*.cpp`, trainmon's package only): what libtorch has and tch
//!   does not bind (autocast on the CPU…), compiled against libtorch's headers as torch-sys
//!   compiles its own, called through `src/native.rs`.
//! - **c10d** (`csrc/c10d/`, trainmon's package only): PyTorch's distributed engine
//!   (`src/dist.rs`), compiled where gloo's headers are found — `TRAINMON_GLOO_INCLUDE` (which
//!   this workspace's `.cargo/config.toml` points at the `.gloo` link `cargo xtask` makes), or
//!   `/usr/include` with Debian's `libgloo-dev` — and then flagged `cfg(trainmon_c10d)`; the
//!   torch wheel ships c10d's headers and gloo's code, but not gloo's headers. Without them
//!   `ProcessGroup` says what is missing. Where libtorch has CUDA and CUDA's and NCCL's headers
//!   are found ([`cuda_includes`]), it is compiled with NCCL too, for CUDA tensors, and
//!   flagged `cfg(trainmon_nccl)`.

use std::path::{Path, PathBuf};

fn main() {
    // Not every file of the package: only this script (and what is named below) makes cargo run it
    // again. Named by its own path, as `build.rs` would be a file that examples/ and tests/ lack,
    // and cargo runs a script whose watched file is missing at every build.
    println!("cargo:rerun-if-changed={}", source().display());
    // torch-sys reports libtorch's directory (`links = "tch"`).
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let trainmon = std::env::var("CARGO_PKG_NAME").as_deref() == Ok("trainmon");
    println!("cargo:rustc-check-cfg=cfg(trainmon_c10d)");
    println!("cargo:rustc-check-cfg=cfg(trainmon_nccl)");
    if trainmon {
        compile_native(&lib);
        compile_c10d(&lib);
    }
    if trainmon && lib.join("libtorch_cuda.so").exists() {
        link_cuda_anchor();
    }
}

/// This script's source file: `file!()`, the path cargo gave the compiler, is absolute or
/// relative to the workspace root, which is the package's directory or one above it. (Not found
/// there, it is trainmon's own `build.rs`.)
fn source() -> PathBuf {
    let file = Path::new(file!());
    let package = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find_map(|dir| std::fs::canonicalize(dir.join(file)).ok())
        .unwrap_or_else(|| package.join("build.rs"))
}

/// Where gloo's headers are: a directory holding `gloo/algorithm.h`.
fn gloo_include() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=TRAINMON_GLOO_INCLUDE");
    let candidates = std::env::var_os("TRAINMON_GLOO_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/include")]);
    // Only paths that exist are watched: cargo runs a build script again at every build while
    // a watched path is missing.
    candidates.into_iter().find(|dir| {
        let header = dir.join("gloo/algorithm.h");
        let found = header.exists();
        if found {
            println!("cargo:rerun-if-changed={}", header.display());
        }
        found
    })
}

/// Compiles `csrc/c10d/*.cpp` where gloo's headers are, and sets `cfg(trainmon_c10d)`.
fn compile_c10d(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/c10d");
    let Some(gloo) = gloo_include() else {
        return;
    };
    let include = lib.parent().expect("libtorch's lib/ has a parent").join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/c10d/c10d.cpp")
        .include(&gloo)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .define("USE_C10D_GLOO", None)
        .warnings(false);
    let nccl = lib.join("libtorch_cuda.so").exists()
        && include
            .join("torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp")
            .exists();
    let cuda = nccl.then(|| cuda_includes(lib)).flatten();
    if let Some(dirs) = &cuda {
        build.includes(dirs).define("USE_C10D_NCCL", None);
    }
    build.compile("trainmon_c10d");
    println!("cargo:rustc-cfg=trainmon_c10d");
    if cuda.is_some() {
        println!("cargo:rustc-cfg=trainmon_nccl");
    }
}

/// CUDA's and NCCL's headers, which c10d's NCCL headers include: those of the `nvidia-*` wheels
/// beside a pip-installed torch (`site-packages/nvidia/cu*/include`, `nvidia/nccl/include`;
/// the bootstrap installs `nvidia-cuda-crt` and `nvidia-cuda-cccl` there, which torch does not
/// bring), else `$CUDA_HOME/include` or `/usr/local/cuda/include` with NCCL's in
/// `/usr/include`. `None` where any is missing.
fn cuda_includes(lib: &std::path::Path) -> Option<Vec<PathBuf>> {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let nvidia = std::fs::canonicalize(lib).ok()?.parent()?.parent()?.join("nvidia");
    let wheels = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .filter(|dir| dir.join("cuda_runtime_api.h").exists());
    let toolkits = std::env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("include"))
        .into_iter()
        .chain([PathBuf::from("/usr/local/cuda/include")]);
    let is_whole = |dir: &PathBuf| {
        ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"]
            .iter()
            .all(|header| dir.join(header).exists())
    };
    let cuda = wheels.chain(toolkits).find(is_whole)?;
    let nccl = [nvidia.join("nccl/include"), PathBuf::from("/usr/include")]
        .into_iter()
        .find(|dir| dir.join("nccl.h").exists())?;
    for found in [cuda.join("crt/host_config.h"), nccl.join("nccl.h")] {
        println!("cargo:rerun-if-changed={}", found.display());
    }
    Some(vec![cuda, nccl])
}

/// Compiles `csrc/*.cpp` into a static library linked into trainmon, with libtorch's headers
/// (`lib/../include`) and flags as torch-sys uses them.
fn compile_native(lib: &std::path::Path) {
    let include = lib.parent().expect("libtorch's lib/ has a parent").join("include");
    let mut sources: Vec<PathBuf> = std::fs::read_dir("csrc")
        .expect("read trainmon's csrc/")
        .map(|e| e.expect("read csrc/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    sources.sort();
    println!("cargo:rerun-if-changed=csrc");
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    cc::Build::new()
        .cpp(true)
        .files(&sources)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("trainmon_native");
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
