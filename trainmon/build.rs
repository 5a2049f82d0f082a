//! Run-time linking of libtorch for this package's binaries (shared by `examples/` and `tests/`).
//!
//! cargo does not put libtorch on the library path of the binaries it runs, so every binary
//! gets an rpath to libtorch's directory (which torch-sys reports as `DEP_TCH_LIBTORCH_LIB`).
//! Where libtorch has CUDA, `libtorch_cuda` is linked with `--no-as-needed`: the linker would
//! otherwise drop it, as nothing references it by symbol, and CUDA would silently be missing.

fn main() {
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
