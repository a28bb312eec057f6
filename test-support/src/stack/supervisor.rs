//! Starting again what died, as an orchestrator would: a test kills processes at will and the supervisor brings
//! each back on its port after a delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Program, lock};

/// A list of processes that can grow while a supervisor watches it.
pub(crate) type Members = Arc<Mutex<Vec<Arc<Program>>>>;

/// How often the supervisor looks at every process.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Restarts dead processes until dropped.
pub(crate) struct Supervisor {
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Watches every process in `lists` (as they grow): one that is wanted, not running and not being started is
    /// started again `restart_after` after it was first seen dead. Needs a Tokio runtime.
    pub fn start(lists: Vec<Members>, restart_after: Duration) -> Self {
        let task = tokio::spawn(async move {
            // Restarts in progress; aborted with this task when the supervisor is dropped.
            let mut restarts = tokio::task::JoinSet::new();
            // When each dead process (by address) is due to be started again.
            let mut due: HashMap<usize, Instant> = HashMap::new();
            loop {
                let programs: Vec<Arc<Program>> = lists.iter().flat_map(|list| lock(list).clone()).collect();
                for program in programs {
                    let key = Arc::as_ptr(&program) as usize;
                    if !program.is_wanted() || program.is_running() || program.is_starting() {
                        due.remove(&key);
                        continue;
                    }
                    let at = *due.entry(key).or_insert_with(|| Instant::now() + restart_after);
                    if Instant::now() >= at {
                        due.remove(&key);
                        restarts.spawn(async move {
                            if let Err(err) = program.revive().await {
                                eprintln!("supervisor: {} did not come back: {err}", program.name());
                            }
                        });
                    }
                }
                while restarts.try_join_next().is_some() {}
                tokio::time::sleep(LOOK_EVERY).await;
            }
        });
        Self { task }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
