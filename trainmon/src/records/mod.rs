//! What a fit measures and keeps: the history (each epoch's logs, what hooks logged, what
//! rollbacks skipped, what hooks cost), the running loss and metrics of the batches, the loss
//! functions, and the states that resume points keep of hooks and metrics.

pub(crate) mod history;
pub(crate) mod key;
pub(crate) mod loss;
pub(crate) mod metrics;
pub(crate) mod saved;
