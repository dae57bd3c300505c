//! kura's shadow traffic (SPEC §7, after Kage and Twitter's Diffy).
//!
//! A share of live requests is copied to candidate backends running new code; their answers
//! are compared with the primary's, and the differences are counted per endpoint and field.
//! The client only ever sees the primary's answer: shadows run in the background behind a
//! bounded queue and bounded concurrency, and are dropped (and counted) rather than wait.
//!
//! - [`compare`]: what differs between two answers (status, headers, JSON by field, text by
//!   line, binary by hash);
//! - [`report`]: per-endpoint counts and the noise rule (a second primary tells which
//!   differences happen anyway);
//! - [`html`]: the report as a page for people.

pub mod compare;
pub mod html;
pub mod report;

pub use compare::{Answer, CompareOptions, Difference, compare};
pub use report::{ReportSettings, Reports, Snapshot, Verdict};
