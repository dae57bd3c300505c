//! The bounded transform pool: at most `max_concurrent` transforms run at once, each on
//! tokio's blocking threads (CPU work never blocks the request workers). A request waits for a
//! slot up to `timeout`, and the transform must finish within it; past it the client gets an
//! error while the abandoned transform finishes in the background still holding its slot, so
//! the bound on concurrent CPU and memory holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::params::{Chosen, ImageLimits, Params};
use crate::transform::{Output, TransformError, transform};

/// Why the pool gave no output: no slot, no time, or the transform itself failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PoolError {
    /// The transform ran and failed (a bad or unsupported source, or an encoder error).
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// Every slot (there are this many) stayed taken for the whole timeout: the client gets a
    /// 503.
    #[error("all {0} transform slots stayed busy")]
    Busy(usize),
    /// The transform did not finish within the timeout (given here): a 504, while it goes on
    /// in the background holding its slot.
    #[error("the transform did not finish within {0:?}")]
    TimedOut(Duration),
}

/// The pool: at most `max_concurrent` transforms at once, each on tokio's blocking threads.
pub struct Transformer {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Transformer {
    /// A pool of `max_concurrent` slots (at least one).
    pub fn new(max_concurrent: usize) -> Self {
        let max = max_concurrent.max(1);
        Transformer {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Transforms in use right now.
    pub fn busy(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Takes a slot and runs one transform in it, all within `timeout`: [`Transformer::slot`]
    /// then [`Slot::run`].
    pub async fn run(
        &self,
        src: bytes::Bytes,
        params: Params,
        chosen: Chosen,
        limits: ImageLimits,
        timeout: Duration,
    ) -> Result<Output, PoolError> {
        let slot = self.slot(timeout).await?;
        slot.run(src, params, chosen, limits).await
    }

    /// Takes a slot, waiting up to `timeout`; the transform it runs must then finish within
    /// what is left of `timeout`. Taking the slot before reading a source means a source is
    /// held in memory only by a request that is about to transform it: requests waiting for a
    /// slot hold no source bytes.
    pub async fn slot(&self, timeout: Duration) -> Result<Slot, PoolError> {
        let start = tokio::time::Instant::now();
        let permit = tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Busy(self.max))?
            .map_err(|_| PoolError::Busy(self.max))?;
        Ok(Slot {
            permit,
            deadline: start + timeout,
            timeout,
        })
    }
}

/// One of the pool's slots, taken by [`Transformer::slot`].
pub struct Slot {
    permit: tokio::sync::OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl Slot {
    /// Runs one transform in this slot, within the slot's deadline.
    pub async fn run(
        self,
        src: bytes::Bytes,
        params: Params,
        chosen: Chosen,
        limits: ImageLimits,
    ) -> Result<Output, PoolError> {
        let permit = self.permit;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            transform(&src, &params, chosen, &limits)
        });
        match tokio::time::timeout_at(self.deadline, job).await {
            Err(_) => Err(PoolError::TimedOut(self.timeout)),
            Ok(Err(e)) => Err(PoolError::Transform(TransformError::Encode(format!(
                "transform task failed: {e}"
            )))),
            Ok(Ok(r)) => Ok(r?),
        }
    }
}
