//! Natter's load-test harness: a coordinator that splits thousands to 100,000 simulated users over worker
//! processes, each below the machine's open-file limit, and merges their figures exactly into one report.
//!
//! Modules, in the order a run touches them: [`run`] (the coordinator: its flags in [`run::args`], users over
//! rooms, workers and gateways in [`run::layout`], the worker processes in [`run::workers`], then the phases, the
//! merging, the SLO verdict and the output), [`setup`] (tokens, rooms and history through the auth API), [`plan`]
//! (what coordinator and workers say to each other), [`worker`] and [`client`] (the simulated users) with [`ws`]
//! (their WebSocket, on fastwebsockets), [`accounting`] and [`latency`] (what each receiver got, and when),
//! [`counts`] (the counts workers send and the report shows), [`scrape`] (gateway metrics), [`cpu`] (CPU time from
//! `/proc`), [`report`] and [`plot`] (the output); [`saturate`] runs fan-out steps at a rising rate to find the
//! highest that holds, and [`capacity`] runs them at a rising user count on one worker to find the most it holds.

pub mod accounting;
pub mod capacity;
pub mod client;
pub mod counts;
pub mod cpu;
pub mod latency;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;
pub mod saturate;
pub mod scrape;
pub mod setup;
pub mod worker;
pub mod ws;
