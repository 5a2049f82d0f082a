//! PyTorch's distributed engine (c10d, Gloo over loopback) from trainmon: processes of this
//! test binary join a group — by hand, and launched by the real `torchrun` — and run the
//! collectives; a rank that dies, a store nobody hosts and ranks that disagree end in errors
//! that name them, never a hang.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use trainmon::dist::{ProcessGroup, Rendezvous};
use trainmon_tests::ranks::{free_port, result, results, Ranks};

/// The ranks of this module's tests: its `rank_process`.
const RANKS: Ranks = Ranks(module_path!());

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
}

/// What each child process does, by `TRAINMON_TEST_ROLE`; a test starts it, it is not one.
#[test]
#[ignore = "a rank of the tests below, started by them"]
fn rank_process() {
    let role = std::env::var("TRAINMON_TEST_ROLE").unwrap();
    let outcome = match ProcessGroup::from_env() {
        Err(e) => serde_json::json!({ "join_error": format!("{e:#}") }),
        Ok(group) => {
            let rank = group.rank();
            let r = group.rendezvous().clone();
            match role.as_str() {
                "collectives" => {
                    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (rank + 1) as f64;
                    let b = Tensor::from_slice(&[10i64, 20]) * (rank as i64 + 1);
                    group.all_reduce_sum(&[&a, &b]).unwrap();
                    let m = Tensor::from_slice(&[2.0f64, 4.0]) * (rank + 1) as f64;
                    group.all_reduce_mean(&[&m]).unwrap();
                    let w = Tensor::from_slice(&[rank as f32, 7.0]);
                    group.broadcast(&[&w], 1).unwrap();
                    group.barrier().unwrap();
                    group.agree("the model", "fc.weight [2, 20]\nfc.bias [2]").unwrap();
                    serde_json::json!({
                        "rank": rank, "world": group.world_size(), "local": group.local_rank(),
                        "prefix": r.prefix, "host_store": r.host_store,
                        "sum": values(&a), "sum_int": values(&b), "mean": values(&m), "broadcast": values(&w),
                    })
                }
                "disagree" => {
                    let model = if rank == 1 {
                        "fc.weight [2, 20]\nfc.bias [3]"
                    } else {
                        "fc.weight [2, 20]\nfc.bias [2]"
                    };
                    let error = group.agree("the model", model).unwrap_err();
                    serde_json::json!({ "rank": rank, "error": format!("{error:#}") })
                }
                "dies" => {
                    if rank == 1 {
                        // Gone without a word, as a killed process.
                        std::process::exit(3);
                    }
                    let started = Instant::now();
                    let t = Tensor::ones([4], tch::kind::FLOAT_CPU);
                    let error = group.all_reduce_sum(&[&t]).unwrap_err();
                    serde_json::json!({ "rank": rank, "error": format!("{error:#}"), "seconds": started.elapsed().as_secs_f64() })
                }
                other => panic!("unknown role {other}"),
            }
        }
    };
    println!("RESULT {outcome}");
}

#[test]
fn two_ranks_reduce_broadcast_and_agree() {
    let outs = RANKS.world("collectives", 2, &[]);
    for (rank, out) in outs.iter().enumerate() {
        let r = result(out);
        assert_eq!(r["rank"], rank, "{r}");
        assert_eq!(r["world"], 2);
        assert_eq!(r["host_store"], rank == 0, "rank 0 hosts the store");
        // (1 + 2) × [1, 2, 3]; (1 + 2) × [10, 20]; mean of [2, 4] and [4, 8]; rank 1's [1, 7].
        assert_eq!(r["sum"], serde_json::json!([3.0, 6.0, 9.0]), "{r}");
        assert_eq!(r["sum_int"], serde_json::json!([30.0, 60.0]), "{r}");
        assert_eq!(r["mean"], serde_json::json!([3.0, 6.0]), "{r}");
        assert_eq!(r["broadcast"], serde_json::json!([1.0, 7.0]), "{r}");
    }
}

#[test]
fn ranks_that_disagree_on_the_model_are_told_where() {
    for (rank, out) in RANKS.world("disagree", 2, &[]).iter().enumerate() {
        let r = result(out);
        assert_eq!(r["rank"], rank);
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("the ranks disagree on the model: rank 0 has `fc.bias [2]` where rank 1 has `fc.bias [3]`"),
            "{error}"
        );
    }
}

#[test]
fn a_rank_that_dies_fails_the_others_with_an_error_not_a_hang() {
    let outs = RANKS.world("dies", 2, &[]);
    assert_eq!(outs[1].status.code(), Some(3));
    let r = result(&outs[0]);
    let error = r["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "distributed training: rank 1 of 2 said nothing within 2s of the failure (killed, its machine or \
             network lost, or too busy to answer): "
        ),
        "{error}"
    );
    assert!(
        error.contains("an all-reduce failed on rank 0 of 2 (store 127.0.0.1:"),
        "{error}"
    );
    // Gloo sees the peer's socket close: well within the 20 s timeout.
    assert!(r["seconds"].as_f64().unwrap() < 20.0, "{r}");
}

#[test]
fn a_store_nobody_hosts_is_an_error_naming_it_within_the_timeout() {
    let port = free_port();
    let started = Instant::now();
    // Rank 1 of 2: a client of a store rank 0 never hosts.
    let rendezvous = Rendezvous::new("127.0.0.1", port, 1, 2)
        .unwrap()
        .timeout(Duration::from_secs(2));
    let error = ProcessGroup::join(rendezvous).unwrap_err();
    let seconds = started.elapsed().as_secs_f64();
    let message = format!("{error:#}");
    assert!(
        message.starts_with(&format!(
            "distributed training: rank 1 of 2 could not join the group at the store 127.0.0.1:{port} within 2s: "
        )),
        "{message}"
    );
    assert!(seconds < 30.0, "took {seconds} s");
}

#[test]
fn without_a_launcher_the_error_says_how_to_launch() {
    // This test process has no RANK…: `from_env` names what is missing.
    let out = RANKS
        .child("collectives", &[])
        .env_remove("RANK")
        .env_remove("MASTER_ADDR")
        .output()
        .unwrap();
    let r = result(&out);
    let error = r["join_error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid trainer setup (`Rendezvous::from_env`): no distributed launch: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set; start the processes with `torchrun --no-python"),
        "{error}"
    );
    let bad = Rendezvous::new("127.0.0.1", 1, 2, 2).unwrap_err();
    assert!(bad.to_string().contains("rank 2 of a world of 2"), "{bad}");
}

#[test]
fn slurm_sets_the_ranks_with_a_given_master() {
    let port = free_port();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            RANKS
                .child(
                    "collectives",
                    &[
                        ("SLURM_PROCID", rank.to_string()),
                        ("SLURM_NTASKS", "2".into()),
                        ("SLURM_LOCALID", rank.to_string()),
                        ("MASTER_ADDR", "127.0.0.1".into()),
                        ("MASTER_PORT", port.to_string()),
                    ],
                )
                .env_remove("RANK")
                .env_remove("WORLD_SIZE")
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, c) in children.into_iter().enumerate() {
        let r = result(&c.wait_with_output().unwrap());
        assert_eq!(
            (r["rank"].as_u64(), r["local"].as_u64()),
            (Some(rank as u64), Some(rank as u64)),
            "{r}"
        );
        assert_eq!(r["sum"], serde_json::json!([3.0, 6.0, 9.0]));
    }
}

/// The real `torchrun` (the bootstrap venv's) launches two ranks of this binary with
/// `--no-python`: they join through its agent's store, under `/worker/attempt_0`.
#[test]
fn torchrun_launches_the_ranks() {
    let python = trainmon_tests::bootstrap_python();
    let torchrun = python.with_file_name("torchrun");
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--nproc-per-node", "2", "--master-port"])
        .arg(free_port().to_string())
        .arg(&exe)
        .args(RANKS.args())
        .env("TRAINMON_TEST_ROLE", "collectives")
        .env("OMP_NUM_THREADS", "1")
        .env("TRAINMON_DIST_TIMEOUT_S", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", torchrun.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results = results(&out.stdout);
    assert_eq!(results.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    let mut seen: Vec<u64> = results.iter().map(|r| r["rank"].as_u64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, [0, 1]);
    for r in &results {
        assert_eq!(
            r["prefix"], "/worker/attempt_0",
            "torchrun's agent hosts the store: {r}"
        );
        assert_eq!(r["host_store"], false);
        assert_eq!(r["sum"], serde_json::json!([3.0, 6.0, 9.0]), "{r}");
        assert_eq!(r["broadcast"], serde_json::json!([1.0, 7.0]), "{r}");
    }
}

/// Where libtorch has CUDA (the bootstrap's has), trainmon is built with NCCL too, for
/// collectives on CUDA tensors: c10d's NCCL headers compiled, its process group linked from
/// `libtorch_cuda` (this binary would not link otherwise). Without a GPU it cannot run here.
#[test]
fn built_with_nccl_where_libtorch_has_cuda() {
    let _ = Tensor::zeros([1], tch::kind::FLOAT_CPU);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let has_cuda = maps.contains("/libtorch_cuda.so");
    assert_eq!(trainmon::dist::has_nccl(), has_cuda, "libtorch has CUDA: {has_cuda}");
    if !tch::Cuda::is_available() {
        // No GPU: every rank trains on the CPU, over Gloo.
        let group = ProcessGroup::join(Rendezvous::new("127.0.0.1", free_port(), 0, 1).unwrap()).unwrap();
        assert_eq!(group.device(), tch::Device::Cpu);
    }
}
