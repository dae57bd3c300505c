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
//! - [`latency`]: the primary's and each candidate's times to the response head, their
//!   quantiles per endpoint and the Prometheus buckets per target;
//! - [`html`]: the report as a page for people;
//! - [`rule`]: a rule's selection (method, path, header, sample) and targets;
//! - [`capture`]: copies of the request body and the primary's answer, taken as they stream;
//! - [`engine`]: the bounded queue, the background exchanges, and the counters;
//! - [`difflog`]: the JSON-lines file of differing exchanges.

#![deny(missing_docs)]

pub mod capture;
pub mod compare;
pub mod difflog;
pub mod engine;
pub mod html;
pub mod latency;
pub mod report;
pub mod rule;

pub use capture::{BodyCopy, BodyTee, Capture, PrimaryAnswer};
pub use compare::{Answer, CompareOptions, Difference, compare};
pub use engine::{BodySource, CountersSnapshot, DropReason, Job, Shadow, TargetCounts};
pub use latency::{LatencyReport, Speed, TargetLatency, Timing};
pub use report::{ReportSettings, Reports, Snapshot, Verdict};
pub use rule::{ShadowBody, ShadowRule, Target, Upstream};
