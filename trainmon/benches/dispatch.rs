//! What firing one event costs per registered hook: hooks filtered out (they should cost a few
//! integer operations) and no-op hooks that fire with two parameters, for 0, 1, 10 and 100
//! hooks of the event. Run: `cargo bench -p trainmon --bench dispatch`.
//!
//! The hooks are registered by the attribute, as users' are; groups pick how many take part.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use trainmon::__private::DispatchBench;
use trainmon::prelude::*;
use trainmon::Hooks;

macro_rules! hooks {
    ($every:literal, $group:literal: $($name:ident)*) => {$(
        #[on_batch_end(every = $every, group = $group)]
        fn $name(batch: &BatchLogs, state: &TrainState) {
            black_box(batch.loss() + state.epoch() as f64);
        }
    )*};
}
// filtered: 1 + 9 + 90 hooks.
hooks!(1_000_003, "filtered_1": f000);
hooks!(1_000_003, "filtered_10": f001 f002 f003 f004 f005 f006 f007 f008 f009);
hooks!(1_000_003, "filtered_100": f010 f011 f012 f013 f014 f015 f016 f017 f018 f019 f020 f021 f022 f023 f024 f025 f026 f027 f028 f029 f030 f031 f032 f033 f034 f035 f036 f037 f038 f039 f040 f041 f042 f043 f044 f045 f046 f047 f048 f049 f050 f051 f052 f053 f054 f055 f056 f057 f058 f059 f060 f061 f062 f063 f064 f065 f066 f067 f068 f069 f070 f071 f072 f073 f074 f075 f076 f077 f078 f079 f080 f081 f082 f083 f084 f085 f086 f087 f088 f089 f090 f091 f092 f093 f094 f095 f096 f097 f098 f099);
// firing: 1 + 9 + 90 hooks.
hooks!(1, "firing_1": r000);
hooks!(1, "firing_10": r001 r002 r003 r004 r005 r006 r007 r008 r009);
hooks!(1, "firing_100": r010 r011 r012 r013 r014 r015 r016 r017 r018 r019 r020 r021 r022 r023 r024 r025 r026 r027 r028 r029 r030 r031 r032 r033 r034 r035 r036 r037 r038 r039 r040 r041 r042 r043 r044 r045 r046 r047 r048 r049 r050 r051 r052 r053 r054 r055 r056 r057 r058 r059 r060 r061 r062 r063 r064 r065 r066 r067 r068 r069 r070 r071 r072 r073 r074 r075 r076 r077 r078 r079 r080 r081 r082 r083 r084 r085 r086 r087 r088 r089 r090 r091 r092 r093 r094 r095 r096 r097 r098 r099);

fn groups(kind: &str, hooks: usize) -> Hooks {
    let all = [format!("{kind}_1"), format!("{kind}_10"), format!("{kind}_100")];
    let take = match hooks {
        0 => 0,
        1 => 1,
        10 => 2,
        _ => 3,
    };
    Hooks::groups(all.into_iter().take(take))
}

fn dispatch(c: &mut Criterion) {
    for kind in ["filtered", "firing"] {
        let mut group = c.benchmark_group(format!("batch_end_{kind}"));
        for hooks in [0usize, 1, 10, 100] {
            let mut bench = DispatchBench::new(&groups(kind, hooks));
            group.throughput(Throughput::Elements(hooks.max(1) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(hooks), &hooks, |b, _| {
                // Batch 7: not a multiple of the filtered hooks' `every`.
                b.iter(|| bench.fire_batch_end(black_box(7)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
