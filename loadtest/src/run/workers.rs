//! The worker processes: how many clients one may run, starting them (this same binary, `worker`), and the JSON
//! lines to and from them (see [`crate::plan`]).

use std::process::{ExitStatus, Stdio};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::plan::{FromWorker, ToWorker, WorkerPlan};

/// Most clients one worker process runs: the machines this is measured on allow 20,000 open files per process.
pub const MAX_CLIENTS_PER_WORKER: usize = 18_000;

/// This process's open-file limit, its soft limit first raised to the hard one (once; the workers it starts
/// inherit it): a stock machine's soft limit of 1024 would fail a run of a few thousand users with errors that
/// say nothing of the cause.
pub fn open_file_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        rlimit::increase_nofile_limit(u64::MAX)
            .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
            .unwrap_or(1024)
    })
}

/// Most clients one worker runs here: [`MAX_CLIENTS_PER_WORKER`], or fewer when the open-file limit is lower
/// (each client holds one file; a worker keeps 200 for itself).
pub fn clients_per_worker() -> usize {
    let room = usize::try_from(open_file_limit().saturating_sub(200)).unwrap_or(usize::MAX);
    MAX_CLIENTS_PER_WORKER.min(room).max(1)
}

/// A line from worker `.0`, or `None` once its stdout has closed.
pub(crate) type Event = (usize, Option<FromWorker>);

/// A worker process and the pipe to it.
struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
}

/// The running worker processes, and the lines they write, tagged with each one's index.
pub(crate) struct Workers {
    procs: Vec<WorkerProc>,
    /// Every worker's lines as they come.
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
}

impl Workers {
    /// Starts one worker process per plan and hands each its plan.
    pub(crate) async fn start(plans: Vec<WorkerPlan>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the harness binary to start workers")?;
        let (events_tx, events) = mpsc::unbounded_channel::<Event>();
        let mut procs = Vec::new();
        for (index, plan) in plans.into_iter().enumerate() {
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                bail!("a worker has no stdin or stdout");
            };
            let tx = events_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<FromWorker>(&line) {
                        Ok(event) => {
                            if tx.send((index, Some(event))).is_err() {
                                return;
                            }
                        }
                        Err(err) => eprintln!("natter-loadtest: worker {index} said something unreadable: {err}"),
                    }
                }
                let _ = tx.send((index, None));
            });
            let mut proc = WorkerProc { child, stdin };
            write_line(&mut proc.stdin, &plan)
                .await
                .context("cannot hand a worker its plan")?;
            procs.push(proc);
        }
        Ok(Self { procs, events })
    }

    /// How many workers run.
    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }

    /// Tells every worker the same thing.
    pub(crate) async fn tell_all(&mut self, command: &ToWorker) -> anyhow::Result<()> {
        for proc in &mut self.procs {
            write_line(&mut proc.stdin, command)
                .await
                .context("a worker went away")?;
        }
        Ok(())
    }

    /// Waits for worker `index` to exit, and how it did.
    pub(crate) async fn exit_status(&mut self, index: usize) -> Option<ExitStatus> {
        self.procs[index].child.wait().await.ok()
    }

    /// Waits for every worker to exit.
    pub(crate) async fn wait_all(&mut self) {
        for proc in &mut self.procs {
            let _ = proc.child.wait().await;
        }
    }
}

/// Writes one JSON line to a worker.
async fn write_line(stdin: &mut ChildStdin, value: &impl Serialize) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(())
}
