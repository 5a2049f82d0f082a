//! Batches built on worker threads: [`Loader`] wraps a dataset and builds each epoch's batches
//! ahead of the training step, in the epoch's order, with the same bits as the dataset asked
//! batch by batch on the training thread.

use crate::data::{built, BatchDataset, Dataset, EpochBatches, Prefetched, PrefetchedBatches};
use crate::error::{samples, Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use tch::{Device, Tensor};

/// A dataset whose batches are built on worker threads while the model trains, as PyTorch's
/// `DataLoader(num_workers=…)` does: for data whose batches cost CPU time to make (decoding,
/// augmenting), so that making batch `k + 1` overlaps training on batch `k`. It is a
/// [`Dataset`]: give it to [`crate::Trainer::fit`] (or [`crate::Trainer::validation`]) as the
/// dataset it wraps.
///
/// ```
/// use tch::nn::{self, VarStore};
/// use tch::Tensor;
/// use trainmon::{Dataset, Loader, Trainer};
///
/// /// Samples kept encoded (here: bytes), decoded into tensors batch by batch.
/// struct Encoded(Vec<[u8; 4]>);
///
/// impl Dataset for Encoded {
///     fn len(&self) -> usize {
///         self.0.len()
///     }
///     fn batch(&self, indices: &[i64]) -> trainmon::Result<(Tensor, Tensor)> {
///         let rows: Vec<[u8; 4]> = indices.iter().map(|&i| self.0[i as usize]).collect();
///         let x: Vec<f32> = rows.iter().flatten().map(|&b| f32::from(b) / 255.0).collect();
///         let y: Vec<i64> = rows.iter().map(|r| i64::from(r[0] > r[1])).collect();
///         Ok((Tensor::from_slice(&x).view([-1, 4]), Tensor::from_slice(&y)))
///     }
/// }
///
/// let data = Encoded((0..256u32).map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()).collect());
/// let loader = Loader::new(data).workers(2).prefetch(4);
/// let vs = VarStore::new(tch::Device::Cpu);
/// let model = nn::linear(vs.root(), 4, 2, Default::default());
/// let history = Trainer::new(&vs, &model)
///     .optimizer(nn::Adam::default(), 1e-2)
///     .epochs(2)
///     .fit(&loader)?;
/// assert_eq!(history.len(), 2);
/// # Ok::<(), trainmon::Error>(())
/// ```
///
/// - **The same batches as without workers.** Each batch is `dataset.batch(indices)` for the
///   indices the loop would ask for, in the epoch's (shuffled) order; workers take the batches
///   by a shared counter and the loop gets them strictly in order. A fit is then bit-identical
///   for any number of workers, provided [`Dataset::batch`] depends only on its indices (see
///   there), and a fit resumed within an epoch replays the same order.
/// - **Bounded.** At most [`Loader::prefetch`] batches are built ahead of the one training
///   (built and waiting, or being built).
/// - **Errors.** A batch that fails or panics on a worker ends the fit with an
///   [`Error::Batch`] naming its samples and the cause (the panic's message), once the batches
///   before it are trained; no worker starts another batch after it.
/// - **Stopping.** The workers of an epoch (and of a validation pass) are started at its start
///   and joined at its end, or as soon as the fit stops early: a hook's stop, an error. A worker
///   in the middle of a batch finishes that batch first.
/// - **CUDA.** A worker pins each batch's memory (`pin_memory`) when the loop trains on a CUDA
///   device, and the loop copies it there without blocking.
/// - A dataset held as tensors ([`Dataset::tensors`], as [`crate::TensorDataset`]) keeps its
///   faster path: the loop cuts its batches out of the tensors on the device, and the workers
///   are not used.
///
/// The dataset is shared by the workers, hence `Send + Sync`. tch's `Tensor` is `Send` but not
/// `Sync`: a dataset that holds tensors cannot be shared so (a [`crate::TensorDataset`] needs no
/// loader anyway); keep the samples in Rust memory (vectors, a memory map, file paths) and make
/// the tensors in [`Dataset::batch`]. The workers' tensor operations use libtorch's intra-op
/// threads as the training thread does (`tch::set_num_threads`); with as many busy threads as
/// cores, keep it low.
pub struct Loader<D> {
    data: Arc<D>,
    workers: usize,
    prefetch: Option<usize>,
}

impl<D> Loader<D> {
    /// Wraps `data`, with one worker and prefetch 2.
    pub fn new(data: D) -> Self {
        Loader {
            data: Arc::new(data),
            workers: 1,
            prefetch: None,
        }
    }

    /// Threads building batches (default 1); 0: none, the loop asks the dataset for each batch
    /// on the training thread, as without a loader.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Batches built ahead of the one training, at most (default twice the workers, as
    /// PyTorch's `prefetch_factor` of 2). At least 1 with workers; with `workers(0)`, a fit
    /// refuses it (there is no one to build ahead).
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = Some(batches);
        self
    }

    /// The dataset it wraps.
    pub fn dataset(&self) -> &D {
        &self.data
    }

    /// Batches built ahead, at most.
    fn ahead(&self) -> usize {
        self.prefetch.unwrap_or(2 * self.workers)
    }
}

impl<D: Dataset + Send + Sync + 'static> Dataset for Loader<D> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        self.data.batch(indices)
    }

    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        self.data.tensors()
    }

    fn check(&self) -> Result<()> {
        check_settings(self.workers, self.prefetch)?;
        self.data.check()
    }

    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<Prefetched<'_>>> {
        self.check()?;
        if self.workers == 0 {
            return self.data.prefetched(epoch);
        }
        let data = Arc::clone(&self.data);
        let build = move |indices: &[i64], device: Device, worker: usize| build(&*data, indices, device, worker);
        let workers = Workers::start(build, epoch, self.workers, self.ahead())?;
        Ok(Some(Box::new(workers)))
    }
}

/// Refuses a loader's `workers` and `prefetch` that cannot work together.
fn check_settings(workers: usize, prefetch: Option<usize>) -> Result<()> {
    match (workers, prefetch) {
        (0, Some(batches)) if batches > 0 => Err(Error::config(
            "Loader::prefetch",
            format!(
                "prefetch needs at least one worker: a loader with `prefetch({batches})` and `workers(0)` (with no \
             worker, the loop builds each batch when it needs it; set `workers(1)` or more)"
            ),
        )),
        (workers, Some(0)) if workers > 0 => Err(Error::config(
            "Loader::prefetch",
            format!(
                "a loader's prefetch must be at least 1 with `workers({workers})`, got 0: workers build batches only \
             ahead of the loop"
            ),
        )),
        _ => Ok(()),
    }
}

/// A [`Loader`] for a [`BatchDataset`] of batches of its own type, for a training step of
/// yours ([`crate::Trainer::fit_steps`]): its batches built on worker threads while the model
/// trains, in the epoch's order, the same bits as without workers — everything [`Loader`]
/// says, except that the batches are not pinned for CUDA (the loop copies them as they are).
///
/// ```
/// use tch::Tensor;
/// use trainmon::{BatchDataset, BatchLoader};
///
/// /// Squares of the indices, one batch a tensor.
/// struct Squares;
///
/// impl BatchDataset for Squares {
///     type Batch = Tensor;
///     fn len(&self) -> usize {
///         100
///     }
///     fn batch(&self, indices: &[i64]) -> trainmon::Result<Tensor> {
///         Ok(Tensor::from_slice(&indices.iter().map(|i| (i * i) as f32).collect::<Vec<_>>()))
///     }
/// }
///
/// let loader = BatchLoader::new(Squares).workers(2).prefetch(4);
/// assert_eq!(loader.len(), 100);
/// ```
pub struct BatchLoader<D>(Loader<D>);

impl<D> BatchLoader<D> {
    /// Wraps `data`, with one worker and prefetch 2 (as [`Loader::new`]).
    pub fn new(data: D) -> Self {
        BatchLoader(Loader::new(data))
    }

    /// Threads building batches (see [`Loader::workers`]).
    pub fn workers(self, workers: usize) -> Self {
        BatchLoader(self.0.workers(workers))
    }

    /// Batches built ahead of the one training, at most (see [`Loader::prefetch`]).
    pub fn prefetch(self, batches: usize) -> Self {
        BatchLoader(self.0.prefetch(batches))
    }

    /// The dataset it wraps.
    pub fn dataset(&self) -> &D {
        self.0.dataset()
    }
}

impl<D> BatchDataset for BatchLoader<D>
where
    D: BatchDataset + Send + Sync + 'static,
    D::Batch: Send,
{
    type Batch = D::Batch;

    fn len(&self) -> usize {
        self.0.data.len()
    }

    fn batch(&self, indices: &[i64]) -> Result<D::Batch> {
        self.0.data.batch(indices)
    }

    fn check_batches(&self) -> Result<()> {
        check_settings(self.0.workers, self.0.prefetch)?;
        self.0.data.check_batches()
    }

    fn prefetched_batches(&self, epoch: &EpochBatches) -> Result<Option<PrefetchedBatches<'_, D::Batch>>> {
        self.check_batches()?;
        if self.0.workers == 0 {
            return self.0.data.prefetched_batches(epoch);
        }
        let data = Arc::clone(&self.0.data);
        let build = move |indices: &[i64], _: Device, worker: usize| -> Result<D::Batch> {
            built(indices, &format!(" on loader worker {worker}"), || data.batch(indices))
        };
        let workers = Workers::start(build, epoch, self.0.workers, self.0.ahead())?;
        Ok(Some(Box::new(workers)))
    }
}

/// How a worker builds a batch: of its indices, for the training device, as worker number N.
type Build<T> = dyn Fn(&[i64], Device, usize) -> Result<T> + Send + Sync;

/// An epoch's batches being built on worker threads, delivered in order. Dropping it stops the
/// workers and joins them.
struct Workers<T> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
    /// Batches to deliver: the epoch's from its first.
    count: usize,
    /// Whether it delivered an error: it ends there.
    failed: bool,
}

/// What the workers and the loop share.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when a batch is built or a worker ends: the loop waits on it.
    built: Condvar,
    /// Signalled when the loop takes a batch or stops: idle workers wait on it.
    room: Condvar,
}

struct State<T> {
    /// The next batch a worker takes (counted from the epoch's first).
    next: usize,
    /// Batches the loop took.
    taken: usize,
    /// Batches built and not taken yet, by position.
    ready: BTreeMap<usize, Result<T>>,
    /// Workers still running.
    running: usize,
    /// No worker takes another batch: the loop stopped, or a batch failed.
    stop: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Send + 'static> Workers<T> {
    /// Starts `workers` threads (no more than there are batches) building `epoch`'s batches
    /// with `build` (of a batch's indices, the training device and the worker's number), at
    /// most `ahead` of the loop.
    fn start<F>(build: F, epoch: &EpochBatches, workers: usize, ahead: usize) -> Result<Self>
    where
        F: Fn(&[i64], Device, usize) -> Result<T> + Send + Sync + 'static,
    {
        let build = Arc::new(build);
        let count = epoch.batches() - epoch.first();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next: 0,
                taken: 0,
                ready: BTreeMap::new(),
                running: 0,
                stop: false,
            }),
            built: Condvar::new(),
            room: Condvar::new(),
        });
        let mut started = Workers {
            shared,
            threads: Vec::new(),
            count,
            failed: false,
        };
        let threads = workers.min(count);
        for worker in 1..=threads {
            let (build, epoch, shared) = (Arc::clone(&build), epoch.clone(), Arc::clone(&started.shared));
            // Counted before it starts: the loop must not take a worker yet to start for one ended.
            started.shared.lock().running += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("trainmon-loader-{worker}"))
                .spawn(move || work(worker, &*build, &epoch, &shared, ahead, count));
            match spawned {
                Ok(thread) => started.threads.push(thread),
                Err(err) => {
                    started.shared.lock().running -= 1;
                    // Dropping `started` stops and joins those started already.
                    return Err(Error::config(
                        "Loader::workers",
                        format!("could not start loader worker {worker} of {threads}: {err}"),
                    ));
                }
            }
        }
        Ok(started)
    }
}

impl<T> Iterator for Workers<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut state = self.shared.lock();
        if self.failed || state.taken >= self.count {
            return None;
        }
        loop {
            let position = state.taken;
            if let Some(built) = state.ready.remove(&position) {
                state.taken += 1;
                drop(state);
                self.shared.room.notify_all();
                self.failed = built.is_err();
                return Some(built);
            }
            if state.running == 0 {
                self.failed = true;
                return Some(Err(Error::Data(format!(
                    "the loader's workers ended before building batch {} of the {} to come",
                    position + 1,
                    self.count
                ))));
            }
            state = self.shared.built.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Drop for Workers<T> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.room.notify_all();
        for thread in self.threads.drain(..) {
            // A worker's panics are caught around the dataset; nothing else of it panics.
            let _ = thread.join();
        }
    }
}

/// Counts a worker out when it ends, however it ends, and wakes the loop.
struct Running<'a, T>(&'a Shared<T>);

impl<T> Drop for Running<'_, T> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.built.notify_all();
    }
}

/// A worker: takes the next batch while there is room ahead of the loop, builds it, hands it
/// over; until the epoch's batches are all taken, or the loop stops, or a batch fails.
fn work<T>(worker: usize, build: &Build<T>, epoch: &EpochBatches, shared: &Shared<T>, ahead: usize, count: usize) {
    let _running = Running(shared);
    loop {
        let position = {
            let mut state = shared.lock();
            loop {
                if state.stop || state.next >= count {
                    return;
                }
                if state.next < state.taken + ahead {
                    break;
                }
                state = shared.room.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.next += 1;
            state.next - 1
        };
        let built = build(epoch.indices(epoch.first() + position), epoch.device(), worker);
        let mut state = shared.lock();
        state.stop |= built.is_err();
        state.ready.insert(position, built);
        drop(state);
        shared.built.notify_all();
    }
}

/// The batch of `indices`, its memory pinned for a copy to a CUDA `device`.
fn build<D: Dataset>(data: &D, indices: &[i64], device: Device, worker: usize) -> Result<(Tensor, Tensor)> {
    let (x, y) = built(indices, &format!(" on loader worker {worker}"), || data.batch(indices))?;
    if !device.is_cuda() {
        return Ok((x, y));
    }
    let pin = |t: Tensor| {
        if t.device() != Device::Cpu {
            return Ok(t);
        }
        t.f_pin_memory(device).map_err(|e| {
            Error::torch(
                format!(
                    "pinning the memory of the batch of samples {} for {device:?}",
                    samples(indices)
                ),
                e,
            )
        })
    };
    Ok((pin(x)?, pin(y)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Sample `i` is the value `i`; a batch takes `delay(first index)`, and counts how many
    /// batches are built and not yet taken by the test.
    struct Counted {
        built: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        delay: fn(i64) -> Duration,
    }

    impl Dataset for Counted {
        fn len(&self) -> usize {
            40
        }
        fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
            std::thread::sleep((self.delay)(indices[0]));
            let now = self.built.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            if indices.contains(&13) {
                return Err(Error::Data("sample 13 is corrupt".into()));
            }
            let t = Tensor::from_slice(indices);
            Ok((t.shallow_clone(), t))
        }
    }

    fn epoch(first: usize) -> EpochBatches {
        let order: Arc<[i64]> = (0..40).rev().collect();
        EpochBatches::new(order, 3, 14, first, Device::Cpu)
    }

    fn loader(delay: fn(i64) -> Duration) -> (Loader<Counted>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (built, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let data = Counted {
            built: Arc::clone(&built),
            most: Arc::clone(&most),
            delay,
        };
        (Loader::new(data), built, most)
    }

    #[test]
    fn batches_come_in_order_at_most_prefetch_ahead_and_stop_at_a_failure() {
        // Uneven delays: later batches are often built before earlier ones.
        let (loader, built, most) = loader(|i| Duration::from_micros((i as u64 * 7919) % 5 * 300));
        let loader = loader.workers(3).prefetch(2);
        let batches = loader.prefetched(&epoch(2)).unwrap().expect("workers");
        let mut seen = Vec::new();
        for batch in batches {
            match batch {
                Ok((x, _)) => {
                    seen.push(Vec::<i64>::try_from(&x).unwrap());
                    // The test is the training step: the batches it holds do not count.
                    built.fetch_sub(1, Ordering::SeqCst);
                }
                Err(err) => {
                    let message = format!("{err:#}");
                    assert!(
                        message.contains("samples [15, 14, 13] (3 samples)")
                            && message.contains("sample 13 is corrupt"),
                        "{message}"
                    );
                    seen.push(vec![-1]);
                }
            }
        }
        let want: Vec<Vec<i64>> = vec![vec![33, 32, 31], vec![30, 29, 28], vec![27, 26, 25], vec![24, 23, 22]];
        assert_eq!(&seen[..4], want, "from batch 2 on, in order");
        assert_eq!(
            seen.len(),
            7,
            "batches 2..=7, then the failing batch 8 ends it: {seen:?}"
        );
        assert_eq!(seen[6], [-1]);
        assert!(
            most.load(Ordering::SeqCst) <= 3,
            "at most prefetch (2) built ahead, plus the one being handed over: {}",
            most.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn dropping_the_batches_stops_the_workers() {
        let (loader, built, _) = loader(|_| Duration::from_millis(20));
        let loader = loader.workers(2).prefetch(2);
        let mut batches = loader.prefetched(&epoch(0)).unwrap().expect("workers");
        let _taken = batches.next().unwrap().unwrap();
        assert_eq!(
            Arc::strong_count(&loader.data),
            2,
            "the loader's and the workers' (their builder's)"
        );
        drop(batches);
        assert_eq!(Arc::strong_count(&loader.data), 1, "the workers ended when dropped");
        let built = built.load(Ordering::SeqCst);
        assert!(built <= 3, "the one taken and at most 2 ahead: {built}");
    }

    #[test]
    fn no_worker_prefetches_nothing_and_bad_settings_are_refused() {
        let (loader, ..) = loader(|_| Duration::ZERO);
        let plain = loader.workers(0);
        assert!(plain.check().is_ok());
        assert!(
            plain.prefetched(&epoch(0)).unwrap().is_none(),
            "the loop asks batch by batch"
        );
        let err = plain.prefetch(3).check().unwrap_err().to_string();
        assert!(err.contains("prefetch needs at least one worker"), "{err}");
        let (loader, ..) = self::loader(|_| Duration::ZERO);
        let err = loader.workers(2).prefetch(0).check().unwrap_err().to_string();
        assert!(
            err.contains("prefetch must be at least 1 with `workers(2)`, got 0"),
            "{err}"
        );
    }

    #[test]
    fn a_panic_on_a_worker_names_the_samples_and_the_message() {
        struct Panics;
        impl Dataset for Panics {
            fn len(&self) -> usize {
                40
            }
            fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
                assert!(!indices.contains(&39), "cannot decode sample 39");
                let t = Tensor::from_slice(indices);
                Ok((t.shallow_clone(), t))
            }
        }
        let loader = Loader::new(Panics).workers(2);
        let mut batches = loader.prefetched(&epoch(0)).unwrap().expect("workers");
        let err = batches.next().unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::Batch { indices, .. } if indices == &[39, 38, 37]),
            "{err:?}"
        );
        let message = format!("{err:#}");
        assert!(
            message.contains("panicked on loader worker ") && message.contains(": cannot decode sample 39"),
            "{message}"
        );
        assert!(batches.next().is_none(), "it ends at the error");
    }
}
