//! Training across processes on PyTorch's own distributed engine, c10d: a TCPStore rendezvous,
//! a Gloo process group for CPU tensors and an NCCL one for CUDA tensors ([`has_nccl`]; made at
//! the first collective on them) (`csrc/c10d/`), joined from the environment that `torchrun`,
//! Kubernetes' PyTorchJob or SLURM set, with the collectives data-parallel training needs —
//! on tch's tensors, in place, without copies.
//!
//! ```no_run
//! # fn main() -> trainmon::Result<()> {
//! // torchrun --no-python --nproc-per-node 2 target/release/my_training
//! let group = trainmon::dist::ProcessGroup::from_env()?;
//! let grads = tch::Tensor::ones([4], tch::kind::FLOAT_CPU) * (group.rank() + 1) as f64;
//! group.all_reduce_mean(&[&grads])?; // every rank: 1.5 (2 ranks)
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tch::Tensor;

/// How long joining the group and each collective may take, unless
/// `TRAINMON_DIST_TIMEOUT_S` or [`Rendezvous::timeout`] says otherwise (PyTorch's default for
/// Gloo is 30 minutes; a rank that died should fail the others much sooner).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and as which rank a process joins its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    /// The store's host (`MASTER_ADDR`).
    pub master_addr: String,
    /// The store's port (`MASTER_PORT`).
    pub master_port: u16,
    /// This process's rank, 0-based (`RANK`, `SLURM_PROCID`).
    pub rank: usize,
    /// The number of processes (`WORLD_SIZE`, `SLURM_NTASKS`).
    pub world_size: usize,
    /// This process's rank on its machine (`LOCAL_RANK`, `SLURM_LOCALID`): the GPU it uses.
    pub local_rank: usize,
    /// Whether this process hosts the store (rank 0, unless torchrun's agent hosts it).
    pub host_store: bool,
    /// The store's key prefix (torchrun's agent store: `/worker/attempt_N`), or empty.
    pub prefix: String,
    /// The address of this machine that the other ranks reach (`TRAINMON_GLOO_HOST`; by
    /// default loopback when the master is, else this machine's host name).
    pub bind: String,
    /// How long joining and each collective may take.
    pub timeout: Duration,
}

/// Reads `name`, if set.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::config("Rendezvous", format!("{name} is `{value}`, not a number")))
}

impl Rendezvous {
    /// The rendezvous the launcher set in the environment: torchrun's (and PyTorchJob's)
    /// `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` — with
    /// `TORCHELASTIC_USE_AGENT_STORE=True`, the agent's store under
    /// `/worker/attempt_{TORCHELASTIC_RESTART_COUNT}` —, or SLURM's `SLURM_PROCID`,
    /// `SLURM_NTASKS`, `SLURM_LOCALID` with a given `MASTER_ADDR`/`MASTER_PORT`.
    pub fn from_env() -> Result<Rendezvous> {
        let (rank_var, size_var, local_var) = if var("RANK").is_some() || var("SLURM_PROCID").is_none() {
            ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        } else {
            ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        };
        let missing: Vec<&str> = [rank_var, size_var, "MASTER_ADDR", "MASTER_PORT"]
            .into_iter()
            .filter(|v| var(v).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::config(
                "Rendezvous::from_env",
                format!(
                    "no distributed launch: {} not set; start the processes with `torchrun --no-python \
                 --nproc-per-node N <binary>` (or set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)",
                    missing.join(", ")
                ),
            ));
        }
        let get = |name: &str| var(name).unwrap_or_default();
        let rank: usize = number(rank_var, &get(rank_var))?;
        let world_size: usize = number(size_var, &get(size_var))?;
        let local_rank = match var(local_var) {
            Some(v) => number(local_var, &v)?,
            None => 0,
        };
        let agent = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let prefix = if agent {
            format!(
                "/worker/attempt_{}",
                var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into())
            )
        } else {
            String::new()
        };
        let timeout = match var("TRAINMON_DIST_TIMEOUT_S") {
            Some(v) => Duration::from_secs_f64(number("TRAINMON_DIST_TIMEOUT_S", &v)?),
            None => DEFAULT_TIMEOUT,
        };
        let mut rendezvous = Rendezvous::new(
            get("MASTER_ADDR"),
            number("MASTER_PORT", &get("MASTER_PORT"))?,
            rank,
            world_size,
        )?;
        rendezvous.local_rank = local_rank;
        rendezvous.host_store = !agent && rank == 0;
        rendezvous.prefix = prefix;
        rendezvous.timeout = timeout;
        if let Some(bind) = var("TRAINMON_GLOO_HOST") {
            rendezvous.bind = bind;
        }
        Ok(rendezvous)
    }

    /// Rank `rank` of `world_size`, meeting at the store `master_addr:master_port`, which rank 0
    /// hosts.
    pub fn new(master_addr: impl Into<String>, master_port: u16, rank: usize, world_size: usize) -> Result<Rendezvous> {
        let master_addr = master_addr.into();
        if world_size == 0 || rank >= world_size {
            return Err(Error::config(
                "Rendezvous::new",
                format!("rank {rank} of a world of {world_size}: ranks go from 0 to the world size − 1"),
            ));
        }
        let loopback = master_addr == "localhost" || master_addr.starts_with("127.") || master_addr == "::1";
        let bind = if loopback {
            "127.0.0.1".to_owned()
        } else {
            crate::output::host_name()
        };
        Ok(Rendezvous {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank: 0,
            host_store: rank == 0,
            prefix: String::new(),
            bind,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// How long joining and each collective may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// How long a rank whose collective failed looks in the store for another rank's reason
/// before it names the ranks that said nothing as gone.
const HEARD_WITHIN: Duration = Duration::from_secs(2);
/// How long the store's host, leaving after a failure, keeps the store up for the other ranks
/// to read why.
const LINGER: Duration = Duration::from_secs(10);

/// The store key under which rank `rank` says why it failed.
fn failed_key(rank: usize) -> String {
    format!("trainmon/failed/{rank}")
}

/// The store key under which rank `rank` says that a collective failed under it.
fn lost_key(rank: usize) -> String {
    format!("trainmon/lost/{rank}")
}

/// The store key under which rank `rank` says that it read why the group failed: the store's
/// host, leaving, waits for it.
fn heard_key(rank: usize) -> String {
    format!("trainmon/heard/{rank}")
}

/// A group of processes training together, on c10d's backends: Gloo for collectives on CPU
/// tensors, NCCL for CUDA tensors (where trainmon has it, [`has_nccl`]), in place. Dropping it
/// leaves the group.
///
/// When a rank fails, the others learn why (Gloo): a rank that ends with an error of its own
/// leaves the group with it ([`ProcessGroup::leave_after`], which a data-parallel fit does), and
/// the others' collectives with it fail at once with an error that names the rank and gives its
/// error; a rank that says nothing within 2 s of the failure (killed) is named.
pub struct ProcessGroup {
    rendezvous: Rendezvous,
    raw: imp::Raw,
    failure: Mutex<Failure>,
}

/// What this rank knows of a failure in the group.
#[derive(Default)]
struct Failure {
    /// A collective failed under this rank (it told the others so).
    lost: bool,
    /// This rank left the group.
    left: bool,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rendezvous.rank)
            .field("world_size", &self.rendezvous.world_size)
            .finish()
    }
}

impl ProcessGroup {
    /// Joins the group the launcher set up ([`Rendezvous::from_env`]).
    pub fn from_env() -> Result<ProcessGroup> {
        ProcessGroup::join(Rendezvous::from_env()?)
    }

    /// Joins the group: connects to the store (hosting it, for rank 0) and waits, up to the
    /// timeout, for every rank.
    pub fn join(rendezvous: Rendezvous) -> Result<ProcessGroup> {
        let raw = imp::Raw::join(&rendezvous)?;
        Ok(ProcessGroup {
            rendezvous,
            raw,
            failure: Mutex::default(),
        })
    }

    /// This process's rank, 0-based.
    pub fn rank(&self) -> usize {
        self.rendezvous.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.rendezvous.world_size
    }

    /// This process's rank on its machine.
    pub fn local_rank(&self) -> usize {
        self.rendezvous.local_rank
    }

    /// The device this rank trains on: the GPU of its local rank (`cuda:LOCAL_RANK`, one rank
    /// per GPU) where CUDA is available, else the CPU. Make the model's variables there.
    ///
    /// Where each process sees only its own GPUs (`CUDA_VISIBLE_DEVICES` set per process, as
    /// SLURM does), the local rank counts modulo the GPUs it sees: one GPU, `cuda:0`.
    pub fn device(&self) -> tch::Device {
        let gpus = tch::Cuda::device_count();
        if tch::Cuda::is_available() && gpus > 0 {
            tch::Device::Cuda(self.local_rank() % gpus as usize)
        } else {
            tch::Device::Cpu
        }
    }

    /// How the group was joined.
    pub fn rendezvous(&self) -> &Rendezvous {
        &self.rendezvous
    }

    /// Sums each tensor over the ranks, in place. The tensors must be on one device (the CPU,
    /// or this rank's GPU where trainmon has NCCL), contiguous, and of the same shapes and kinds
    /// on every rank; tensors of one kind go in one collective
    /// (flattened into one buffer, then copied back).
    pub fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        check(tensors, "all-reduce")?;
        fused(tensors, |t| {
            self.raw.all_reduce_sum(t).map_err(|e| self.failed("an all-reduce", e))
        })
    }

    /// Averages each tensor over the ranks, in place (a sum, then a division: Gloo has no mean).
    pub fn all_reduce_mean(&self, tensors: &[&Tensor]) -> Result<()> {
        self.all_reduce_sum(tensors)?;
        let ranks = self.world_size() as f64;
        for t in tensors {
            let mut t = (*t).shallow_clone();
            let _ = t
                .f_div_scalar_(ranks)
                .map_err(|e| Error::torch("averaging an all-reduce", e))?;
        }
        Ok(())
    }

    /// Copies rank `root`'s tensors into every rank's, in place (one collective per kind).
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        check(tensors, "broadcast")?;
        fused(tensors, |t| {
            self.raw
                .broadcast(t, root)
                .map_err(|e| self.failed(&format!("a broadcast from rank {root}"), e))
        })
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) -> Result<()> {
        self.raw.barrier().map_err(|e| self.failed("a barrier", e))
    }

    /// Checks that every rank has the same `value` of `what` (e.g. the model's variables and
    /// shapes): an error on every rank that names the first rank whose value differs from rank
    /// 0's, and the first line where they differ. Each call of a group must come in the same
    /// order on every rank.
    pub fn agree(&self, what: &str, value: &str) -> Result<()> {
        let round = self.raw.next_round();
        let key = |rank: usize| format!("trainmon/agree/{round}/{what}/{rank}");
        self.raw
            .set(&key(self.rank()), value.as_bytes())
            .map_err(|e| self.failed(&format!("sharing {what}"), e))?;
        let theirs = self.wait_for(&key(0), 0, what)?;
        let rank0 = String::from_utf8_lossy(&theirs);
        for rank in 1..self.world_size() {
            let other = self.wait_for(&key(rank), rank, what)?;
            let other = String::from_utf8_lossy(&other);
            if other != rank0 {
                let (a, b) = first_difference(&rank0, &other);
                return Err(Error::Distributed(format!(
                    "the ranks disagree on {what}: rank 0 has `{a}` where rank {rank} has `{b}`"
                )));
            }
        }
        Ok(())
    }

    /// Leaves the group after `error` ended this rank's training, so that the other ranks end
    /// too, with it: the error goes into the store (unless a collective failed under this rank:
    /// then it has nothing of its own to tell), the Gloo group closes (the others' collectives
    /// with this rank fail at once instead of at the timeout), and the store's host keeps the
    /// store up, for up to 10 s, until every other rank has said it read why. Collectives after
    /// this fail.
    ///
    /// This is Gloo's protocol. On NCCL a collective whose peer left waits for NCCL's timeout
    /// (the group's), and PyTorch's watchdog then ends the process: the other ranks end, without
    /// this rank's error.
    pub fn leave_after(&self, error: &Error) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.left {
            return;
        }
        failure.left = true;
        if !failure.lost {
            if let Err(e) = self.raw.set(&failed_key(self.rank()), format!("{error:#}").as_bytes()) {
                tracing::warn!("could not tell the other ranks why rank {} failed: {e}", self.rank());
            }
        }
        // This rank has nothing more to read.
        let _ = self.raw.set(&heard_key(self.rank()), b"");
        self.raw.close();
        if !self.rendezvous.host_store {
            return;
        }
        // Every other rank, even one named gone: a rank only slow to answer reads why too.
        let waited_for: Vec<usize> = (0..self.world_size()).filter(|r| *r != self.rank()).collect();
        let deadline = Instant::now() + LINGER.min(self.rendezvous.timeout);
        while Instant::now() < deadline {
            // A store that cannot answer has no reader left to wait for.
            let heard = |r: &usize| self.raw.check(&heard_key(*r)).unwrap_or(true);
            if waited_for.iter().all(heard) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error of a collective (or a store access) `what` that failed with `message`: why,
    /// as the store tells — a rank that failed with an error of its own (the first found), or
    /// the ranks that said nothing within [`HEARD_WITHIN`].
    ///
    /// This rank says at once that a collective failed under it (`lost`: it is alive, the
    /// others do not name it), looks for a rank's own error, and says it is done reading
    /// (`heard`: the store's host may go) only after it looked.
    fn failed(&self, what: &str, message: String) -> Error {
        let r = &self.rendezvous;
        let here = format!(
            "{what} failed on rank {} of {} (store {}:{}, timeout {:?}): {message}",
            r.rank, r.world_size, r.master_addr, r.master_port, r.timeout
        );
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.left {
            return Error::Distributed(here);
        }
        failure.lost = true;
        let store_gone = || {
            let host = if r.prefix.is_empty() {
                "rank 0"
            } else {
                "torchrun's agent"
            };
            Error::Distributed(format!("{here}; the store is gone too: its host, {host}, ended"))
        };
        if self.raw.set(&lost_key(r.rank), message.as_bytes()).is_err() {
            return store_gone();
        }
        let others: Vec<usize> = (0..r.world_size).filter(|k| *k != r.rank).collect();
        let error = match self.first_failure(&others, HEARD_WITHIN.min(r.timeout)) {
            Err(()) => return store_gone(),
            Ok(Some(error)) => error,
            Ok(None) => {
                let gone: Vec<usize> = others
                    .into_iter()
                    .filter(|k| self.raw.check(&lost_key(*k)) == Ok(false))
                    .collect();
                match &gone[..] {
                    [] => Error::Distributed(here),
                    gone => {
                        let names: Vec<String> = gone.iter().map(usize::to_string).collect();
                        let s = if gone.len() > 1 { "s" } else { "" };
                        Error::Distributed(format!(
                            "rank{s} {} of {} said nothing within {HEARD_WITHIN:?} of the failure (killed, its \
                             machine or network lost, or too busy to answer): {here}",
                            names.join(", "),
                            r.world_size,
                        ))
                    }
                }
            }
        };
        let _ = self.raw.set(&heard_key(r.rank), b"");
        error
    }

    /// The error of the first of `ranks` that failed with one of its own, as soon as one says
    /// (polling the store for up to `within`); `Err` when the store cannot answer.
    fn first_failure(&self, ranks: &[usize], within: Duration) -> std::result::Result<Option<Error>, ()> {
        let deadline = Instant::now() + within;
        loop {
            for &k in ranks {
                if self.raw.check(&failed_key(k)).map_err(|_| ())? {
                    let theirs = self.raw.get(&failed_key(k)).map_err(|_| ())?;
                    return Ok(Some(Error::Distributed(format!(
                        "rank {k} of {} failed: {}",
                        self.world_size(),
                        String::from_utf8_lossy(&theirs)
                    ))));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads rank `rank`'s value of `what` under `key`, waiting for it up to the timeout — and
    /// failing with the error of a rank that failed meanwhile (it will never write it).
    fn wait_for(&self, key: &str, rank: usize, what: &str) -> Result<Vec<u8>> {
        let reading = format!("reading rank {rank}'s {what}");
        let deadline = Instant::now() + self.rendezvous.timeout;
        let others: Vec<usize> = (0..self.world_size()).filter(|k| *k != self.rank()).collect();
        loop {
            match self.raw.check(key) {
                Ok(true) => return self.raw.get(key).map_err(|e| self.failed(&reading, e)),
                Ok(false) => {}
                Err(e) => return Err(self.failed(&reading, e)),
            }
            match self.first_failure(&others, Duration::ZERO) {
                Ok(None) => {}
                Ok(Some(error)) => {
                    let _ = self.raw.set(&heard_key(self.rank()), b"");
                    self.failure.lock().unwrap_or_else(PoisonError::into_inner).lost = true;
                    return Err(error);
                }
                Err(()) => return Err(self.failed(&reading, "the store does not answer".into())),
            }
            if Instant::now() >= deadline {
                return Err(self.failed(&reading, format!("not there within {:?}", self.rendezvous.timeout)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs `collective` once per kind of `tensors`: on the tensor itself when it is the only one
/// of its kind, else on one buffer of them all, flattened, copied back after. (Gloo takes a list
/// of tensors as copies of one on several devices: they must match in shape.)
fn fused(tensors: &[&Tensor], collective: impl Fn(&[&Tensor]) -> Result<()>) -> Result<()> {
    let mut kinds: Vec<tch::Kind> = Vec::new();
    for t in tensors {
        if !kinds.contains(&t.kind()) {
            kinds.push(t.kind());
        }
    }
    let failed = |e| Error::torch("gathering tensors into one buffer for a collective", e);
    for kind in kinds {
        let of_kind: Vec<&Tensor> = tensors.iter().copied().filter(|t| t.kind() == kind).collect();
        if let [one] = of_kind[..] {
            collective(&[one])?;
            continue;
        }
        let _no_grad = tch::no_grad_guard();
        let flats: Vec<Tensor> = of_kind.iter().map(|t| t.reshape([-1])).collect();
        let buffer = Tensor::f_cat(&flats, 0).map_err(failed)?;
        collective(&[&buffer])?;
        let mut offset = 0;
        for t in of_kind {
            let n = t.numel() as i64;
            let part = buffer
                .f_narrow(0, offset, n)
                .and_then(|p| p.f_view_as(t))
                .map_err(failed)?;
            t.shallow_clone().f_copy_(&part).map_err(failed)?;
            offset += n;
        }
    }
    Ok(())
}

/// The first line where `a` and `b` differ (`<none>` past the end of one).
fn first_difference<'s>(a: &'s str, b: &'s str) -> (&'s str, &'s str) {
    let mut la = a.lines();
    let mut lb = b.lines();
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => return ("", ""),
            (x, y) => return (x.unwrap_or("<none>"), y.unwrap_or("<none>")),
        }
    }
}

/// Whether this trainmon has NCCL, for collectives on CUDA tensors (it was built against a
/// libtorch with CUDA, with CUDA's and NCCL's headers at hand). Gloo, for CPU tensors, is there
/// wherever [`ProcessGroup`] is.
pub fn has_nccl() -> bool {
    imp::has_nccl()
}

/// The tensors of one collective: contiguous, on one device — the CPU (Gloo), or a GPU where
/// trainmon has NCCL.
fn check(tensors: &[&Tensor], what: &str) -> Result<()> {
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let device = first.device();
    for (i, t) in tensors.iter().enumerate() {
        if !t.is_contiguous() {
            return Err(Error::config(
                "ProcessGroup",
                format!("a {what} takes contiguous tensors; tensor {i} is not"),
            ));
        }
        if t.device() != device {
            return Err(Error::config(
                "ProcessGroup",
                format!(
                    "a {what} takes tensors on one device; tensor 0 is on {device:?}, tensor {i} on {:?}",
                    t.device()
                ),
            ));
        }
    }
    if device != tch::Device::Cpu && !has_nccl() {
        return Err(Error::config(
            "ProcessGroup",
            format!(
                "a {what} on {device:?} needs NCCL, and this trainmon was built without it: it is built with \
             NCCL where libtorch has CUDA and CUDA's and NCCL's headers are found (the bootstrap's venv has them)"
            ),
        ));
    }
    Ok(())
}

#[cfg(trainmon_c10d)]
mod imp {
    use super::Rendezvous;
    use crate::error::{Error, Result};
    use std::ffi::{c_char, c_int, c_long, c_void, CString};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tch::Tensor;

    type Tensors = *const *mut torch_sys::C_tensor;

    extern "C" {
        fn trainmon_c10d_new(
            host: *const c_char,
            port: c_int,
            rank: c_int,
            size: c_int,
            host_store: c_int,
            prefix: *const c_char,
            bind: *const c_char,
            timeout_ms: c_long,
            err: *mut c_char,
            len: usize,
        ) -> *mut c_void;
        fn trainmon_c10d_free(group: *mut c_void);
        fn trainmon_c10d_close(group: *mut c_void);
        fn trainmon_c10d_has_nccl() -> c_int;
        fn trainmon_c10d_store_check(group: *mut c_void, key: *const c_char, err: *mut c_char, len: usize) -> c_int;
        fn trainmon_c10d_all_reduce_sum(
            group: *mut c_void,
            t: Tensors,
            n: usize,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        fn trainmon_c10d_broadcast(
            group: *mut c_void,
            t: Tensors,
            n: usize,
            root: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        fn trainmon_c10d_barrier(group: *mut c_void, err: *mut c_char, len: usize) -> c_int;
        fn trainmon_c10d_store_set(
            group: *mut c_void,
            key: *const c_char,
            value: *const u8,
            n: usize,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        fn trainmon_c10d_store_get(
            group: *mut c_void,
            key: *const c_char,
            out: *mut u8,
            cap: usize,
            n: *mut usize,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
    }

    /// Room for libtorch's messages.
    const ERR: usize = 2048;

    pub(super) fn has_nccl() -> bool {
        // SAFETY: reads a constant.
        unsafe { trainmon_c10d_has_nccl() != 0 }
    }

    fn message(buffer: &[u8]) -> String {
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        let text = String::from_utf8_lossy(&buffer[..end]);
        // libtorch's messages go on with a C++ stack: the first lines say it.
        text.lines()
            .take_while(|l| !l.starts_with("Exception raised from"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn c_string(what: &str, s: &str) -> Result<CString> {
        CString::new(s).map_err(|_| Error::config("ProcessGroup", format!("{what} `{s}` holds a NUL byte")))
    }

    pub(super) struct Raw {
        group: *mut c_void,
        rounds: AtomicU64,
    }

    // SAFETY: the group is a c10d backend and its store, which c10d uses from any thread; the
    // pointer is only freed in `drop`.
    unsafe impl Send for Raw {}
    unsafe impl Sync for Raw {}

    impl Raw {
        pub(super) fn join(r: &Rendezvous) -> Result<Raw> {
            let host = c_string("MASTER_ADDR", &r.master_addr)?;
            let prefix = c_string("the store prefix", &r.prefix)?;
            let bind = c_string("the address to bind", &r.bind)?;
            let mut err = vec![0u8; ERR];
            let timeout_ms = c_long::try_from(r.timeout.as_millis()).unwrap_or(c_long::MAX);
            // SAFETY: valid C strings and an error buffer of `ERR` bytes; a null result says
            // it failed.
            let group = unsafe {
                trainmon_c10d_new(
                    host.as_ptr(),
                    c_int::from(r.master_port),
                    r.rank as c_int,
                    r.world_size as c_int,
                    c_int::from(r.host_store),
                    prefix.as_ptr(),
                    bind.as_ptr(),
                    timeout_ms,
                    err.as_mut_ptr().cast(),
                    ERR,
                )
            };
            if group.is_null() {
                return Err(Error::Distributed(format!(
                    "rank {} of {} could not join the group at the store {}:{}{} within {:?}: {}",
                    r.rank,
                    r.world_size,
                    r.master_addr,
                    r.master_port,
                    if r.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" (prefix {})", r.prefix)
                    },
                    r.timeout,
                    message(&err)
                )));
            }
            Ok(Raw {
                group,
                rounds: AtomicU64::new(0),
            })
        }

        pub(super) fn next_round(&self) -> u64 {
            self.rounds.fetch_add(1, Ordering::Relaxed)
        }

        fn call(&self, f: impl FnOnce(*mut c_char) -> c_int) -> std::result::Result<(), String> {
            let mut err = vec![0u8; ERR];
            match f(err.as_mut_ptr().cast()) {
                0 => Ok(()),
                _ => Err(message(&err)),
            }
        }

        fn pointers(tensors: &[&Tensor]) -> Vec<*mut torch_sys::C_tensor> {
            tensors.iter().map(|t| t.as_ptr() as *mut _).collect()
        }

        pub(super) fn all_reduce_sum(&self, tensors: &[&Tensor]) -> std::result::Result<(), String> {
            let ptrs = Self::pointers(tensors);
            // SAFETY: live tensors (borrowed for the call); c10d writes into their storage.
            self.call(|err| unsafe { trainmon_c10d_all_reduce_sum(self.group, ptrs.as_ptr(), ptrs.len(), err, ERR) })
        }

        pub(super) fn broadcast(&self, tensors: &[&Tensor], root: usize) -> std::result::Result<(), String> {
            let ptrs = Self::pointers(tensors);
            // SAFETY: as in `all_reduce_sum`.
            self.call(|err| unsafe {
                trainmon_c10d_broadcast(self.group, ptrs.as_ptr(), ptrs.len(), root as c_int, err, ERR)
            })
        }

        pub(super) fn barrier(&self) -> std::result::Result<(), String> {
            // SAFETY: the group is live.
            self.call(|err| unsafe { trainmon_c10d_barrier(self.group, err, ERR) })
        }

        pub(super) fn set(&self, key: &str, value: &[u8]) -> std::result::Result<(), String> {
            let key = CString::new(key).map_err(|e| e.to_string())?;
            // SAFETY: a C string and a byte slice, read during the call.
            self.call(|err| unsafe {
                trainmon_c10d_store_set(self.group, key.as_ptr(), value.as_ptr(), value.len(), err, ERR)
            })
        }

        /// Leaves the Gloo group; the store stays.
        pub(super) fn close(&self) {
            // SAFETY: the group is live; closing twice is harmless.
            unsafe { trainmon_c10d_close(self.group) }
        }

        /// Whether `key` is in the store now.
        pub(super) fn check(&self, key: &str) -> std::result::Result<bool, String> {
            let key = CString::new(key).map_err(|e| e.to_string())?;
            let mut err = vec![0u8; ERR];
            // SAFETY: a C string and an error buffer of `ERR` bytes.
            match unsafe { trainmon_c10d_store_check(self.group, key.as_ptr(), err.as_mut_ptr().cast(), ERR) } {
                1 => Ok(true),
                0 => Ok(false),
                _ => Err(message(&err)),
            }
        }

        pub(super) fn get(&self, key: &str) -> std::result::Result<Vec<u8>, String> {
            let key = CString::new(key).map_err(|e| e.to_string())?;
            let mut out = vec![0u8; 4096];
            loop {
                let mut n = 0usize;
                let cap = out.len();
                // SAFETY: `out` has `cap` bytes; the whole length comes back in `n`.
                self.call(|err| unsafe {
                    trainmon_c10d_store_get(self.group, key.as_ptr(), out.as_mut_ptr(), cap, &mut n, err, ERR)
                })?;
                if n <= cap {
                    out.truncate(n);
                    return Ok(out);
                }
                out.resize(n, 0);
            }
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: made by `trainmon_c10d_new`, freed once.
            unsafe { trainmon_c10d_free(self.group) }
        }
    }
}

#[cfg(not(trainmon_c10d))]
mod imp {
    use super::Rendezvous;
    use crate::error::{Error, Result};
    use tch::Tensor;

    /// trainmon was compiled without c10d: joining says why.
    pub(super) enum Raw {}

    pub(super) fn has_nccl() -> bool {
        false
    }

    impl Raw {
        pub(super) fn join(_: &Rendezvous) -> Result<Raw> {
            Err(Error::config(
                "ProcessGroup",
                "this trainmon was built without PyTorch's distributed engine: gloo's headers were not \
                 found when it was compiled (the torch wheel does not ship them). Run `cargo xtask \
                 bootstrap` in trainmon's workspace or `cargo trainmon setup` in your crate (they fetch \
                 Debian's libgloo-dev headers and set TRAINMON_GLOO_INCLUDE), or install libgloo-dev, \
                 then build again"
                    .into(),
            ))
        }

        pub(super) fn next_round(&self) -> u64 {
            match *self {}
        }

        pub(super) fn all_reduce_sum(&self, _: &[&Tensor]) -> std::result::Result<(), String> {
            match *self {}
        }

        pub(super) fn broadcast(&self, _: &[&Tensor], _: usize) -> std::result::Result<(), String> {
            match *self {}
        }

        pub(super) fn barrier(&self) -> std::result::Result<(), String> {
            match *self {}
        }

        pub(super) fn set(&self, _: &str, _: &[u8]) -> std::result::Result<(), String> {
            match *self {}
        }

        pub(super) fn close(&self) {
            match *self {}
        }

        pub(super) fn check(&self, _: &str) -> std::result::Result<bool, String> {
            match *self {}
        }

        pub(super) fn get(&self, _: &str) -> std::result::Result<Vec<u8>, String> {
            match *self {}
        }
    }
}
