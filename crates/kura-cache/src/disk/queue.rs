//! The disk writer's queue, in order. It is bounded: a write that finds it full is dropped (a
//! cache may skip a store, and memory stays bounded). Removals, purges and flushes must not be
//! dropped: when the queue is full they wait in an overflow, in order, that one forwarder
//! thread moves into the queue as room frees. While anything waits there, nothing else enters
//! the queue (a write is dropped as if the queue were full), so no job overtakes an earlier
//! one: a store made after an invalidation is never deleted by it, and a flush returns only
//! after every removal asked before it is applied. (Each job waiting on its own blocking task
//! did not keep that order.)

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, Sender, SyncSender, TrySendError};

use super::writer::Job;

/// A handle on the writer's queue; clones share it.
#[derive(Clone)]
pub(super) struct Queue {
    jobs: SyncSender<Job>,
    overflow: Sender<Job>,
    /// Jobs in the overflow, not yet in the queue: counted before they go in, uncounted after
    /// the forwarder moved them.
    waiting: Arc<AtomicUsize>,
}

impl Queue {
    /// Wraps the writer's bounded queue and starts the overflow's forwarder, which ends when
    /// the last handle is dropped or the writer is gone.
    pub(super) fn new(jobs: SyncSender<Job>) -> io::Result<Queue> {
        let (overflow, rx) = mpsc::channel::<Job>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let (to, moved) = (jobs.clone(), waiting.clone());
        std::thread::Builder::new()
            .name("kura-disk-overflow".into())
            .spawn(move || {
                for job in rx {
                    let sent = to.send(job).is_ok();
                    moved.fetch_sub(1, SeqCst);
                    if !sent {
                        return;
                    }
                }
            })?;
        Ok(Queue {
            jobs,
            overflow,
            waiting,
        })
    }

    /// Queues a job that may be dropped: `Full` gives it back when the queue is full or
    /// earlier jobs still wait in the overflow.
    pub(super) fn try_send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        if self.waiting.load(SeqCst) > 0 {
            return Err(TrySendError::Full(job));
        }
        self.jobs.try_send(job)
    }

    /// Queues a job that must not be dropped, behind every job queued before it. Never
    /// blocks the caller (an async task): with the queue full it waits in the overflow.
    pub(super) fn send_surely(&self, job: Job) {
        // Counted before trying, so that no write slips in between a full queue and the
        // overflow.
        let before = self.waiting.fetch_add(1, SeqCst);
        let job = if before == 0 {
            match self.jobs.try_send(job) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {
                    self.waiting.fetch_sub(1, SeqCst);
                    return;
                }
                Err(TrySendError::Full(job)) => job,
            }
        } else {
            job
        };
        if self.overflow.send(job).is_err() {
            // The forwarder is gone with the writer: nothing will apply it.
            self.waiting.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(job: Job) -> String {
        match job {
            Job::Remove(k) => k,
            _ => panic!("only removals are queued here"),
        }
    }

    /// With the queue full, jobs that must not be dropped wait in order, and a write tried
    /// meanwhile never overtakes them (it is dropped, or lands behind them).
    #[test]
    fn nothing_overtakes_a_job_waiting_for_room() {
        for _ in 0..50 {
            let (tx, rx) = mpsc::sync_channel(1);
            let q = Queue::new(tx).unwrap();
            q.try_send(Job::Remove("filler".into())).unwrap();
            for k in ["a", "b", "c"] {
                q.send_surely(Job::Remove(k.into()));
            }
            assert!(matches!(
                q.try_send(Job::Remove("late".into())),
                Err(TrySendError::Full(_))
            ));
            // The writer takes jobs one by one while writes keep being tried.
            let mut seen = Vec::new();
            while seen.len() < 4 {
                seen.push(key(rx.recv().unwrap()));
                let _ = q.try_send(Job::Remove("late".into()));
            }
            assert_eq!(seen, ["filler", "a", "b", "c"]);
            // Once the overflow is empty, writes go in again.
            while q.waiting.load(SeqCst) > 0 || rx.try_recv().is_ok() {
                std::thread::yield_now();
            }
            q.try_send(Job::Remove("after".into())).unwrap();
            assert_eq!(key(rx.recv().unwrap()), "after");
        }
    }
}
