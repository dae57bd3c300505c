//! The bounded transform pool: at most `max_concurrent` transforms run at once, each on
//! tokio's blocking threads (CPU work never blocks the request workers). A request waits for a
//! slot up to `timeout`, and the transform must finish within it; past it the client gets an
//! error while the abandoned transform finishes in the background still holding its slot, so
//! the bound on concurrent CPU and memory holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::params::{Chosen, Limits, Params};
use crate::transform::{Output, TransformError, transform};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PoolError {
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error("all {0} transform slots stayed busy")]
    Busy(usize),
    #[error("the transform did not finish within {0:?}")]
    TimedOut(Duration),
}

pub struct Transformer {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Transformer {
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

    pub async fn run(
        &self,
        src: bytes::Bytes,
        params: Params,
        chosen: Chosen,
        limits: Limits,
        timeout: Duration,
    ) -> Result<Output, PoolError> {
        let start = tokio::time::Instant::now();
        let permit = tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Busy(self.max))?
            .map_err(|_| PoolError::Busy(self.max))?;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            transform(&src, &params, chosen, &limits)
        });
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, job).await {
            Err(_) => Err(PoolError::TimedOut(timeout)),
            Ok(Err(e)) => Err(PoolError::Transform(TransformError::Encode(format!(
                "transform task failed: {e}"
            )))),
            Ok(Ok(r)) => Ok(r?),
        }
    }
}
