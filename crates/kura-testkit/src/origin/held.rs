//! An origin that holds its answers until the test lets them go ([`TestOrigin::held`]), for
//! tests that need a backend busy for exactly as long as they look, however slow the machine.

use std::sync::Arc;

use super::{TestOrigin, full};

impl TestOrigin {
    /// Holds every request until the test calls [`Release::release`] (or drops it), then
    /// answers 200 with `body`: a backend that is busy for exactly as long as the test needs,
    /// however slow the machine, where [`TestOrigin::slow`] guesses a delay.
    pub async fn held(name: &str, body: &'static str) -> (TestOrigin, Release) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let origin = Self::start(
            name,
            Arc::new(move |_| {
                let mut rx = rx.clone();
                Box::pin(async move {
                    // An error means the release was dropped: answer too.
                    let _ = rx.wait_for(|released| *released).await;
                    full(200, body)
                })
            }),
        )
        .await;
        (origin, Release(tx))
    }
}

/// Lets the requests a [`TestOrigin::held`] origin holds be answered (and every later one at
/// once); dropping it does the same.
pub struct Release(tokio::sync::watch::Sender<bool>);

impl Release {
    /// Answers the held requests, and every later one without waiting.
    pub fn release(&self) {
        self.0.send_replace(true);
    }
}
