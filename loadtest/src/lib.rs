//! Natter's load-test harness. Built so far: the delivery accounting (loss, duplicates and reordering per room and
//! receiver) and the latency recording whose histograms merge exactly across worker processes. The runner that
//! drives connections comes next; until then the binary says it is not implemented.

pub mod accounting;
pub mod latency;
