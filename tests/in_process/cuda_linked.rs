//! Where libtorch has CUDA, `libtorch_cuda` is loaded by the binaries that link trainmon, so that
//! a GPU machine really gets CUDA: the linker's `--as-needed` would drop it, as nothing refers to
//! it by symbol. trainmon keeps it (its build script), for a user's binaries too.

use tch::{Device, Kind, Tensor};
// A binary that trains links trainmon; this one does so without training.
use trainmon as _;

#[test]
fn libtorch_cuda_is_loaded_where_libtorch_has_it() {
    // Touch libtorch so that its libraries are certainly mapped.
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let cpu = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .expect("libtorch_cpu.so is mapped");
    let lib = std::path::Path::new(cpu).parent().unwrap();
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    let cuda_loaded = maps.contains("/libtorch_cuda.so");
    assert_eq!(
        cuda_loaded,
        has_cuda,
        "libtorch in {} has CUDA: {has_cuda}; loaded: {cuda_loaded}",
        lib.display()
    );
    if !tch::Cuda::is_available() {
        assert_eq!(
            tch::Cuda::device_count(),
            0,
            "no GPU here, and CPU training still works"
        );
    }
}
