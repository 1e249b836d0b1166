//! The action thread: where tool calls run, exactly as `run` runs an action.
//!
//! Action futures are not `Send` (the registry erases them as local futures, and
//! stores hold SQLite connections across awaits), while the MCP SDK wants `Send`
//! handlers. So actions run on one thread of their own, on a current-thread
//! runtime like `run`'s, each call a local task; the MCP side hands a job over and
//! awaits its answer. One Graph client serves every call, so tokens and
//! connections are reused. Actions that advance local state (a sign-in cursor,
//! the presence store) take turns: two syncs at once would read the same
//! sign-ins twice.

use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::actions::{ActionEntry, CheckedInputs, Context, LocalWrites};
use crate::error::{Error, Result};
use crate::graph::GraphClient;
use crate::progress::Progress;

/// One tool call for the action thread.
pub struct Job {
    pub action: &'static ActionEntry,
    pub inputs: CheckedInputs,
    pub progress: Progress,
    /// Cancelled when the client cancels the request (or goes away).
    pub cancel: CancellationToken,
    /// The result object as one line of JSON, or the error.
    pub reply: oneshot::Sender<Outcome>,
}

/// What a job ends with.
pub enum Outcome {
    Done(Result<String>),
    Cancelled,
}

/// The handle the MCP side keeps; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Worker {
    /// Start the action thread.
    pub fn start(graph: Option<GraphClient>, state_dir: Option<PathBuf>) -> Result<Worker> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the action runtime: {e}")))?;
        std::thread::Builder::new()
            .name("mcp-actions".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                let advancing = Rc::new(Mutex::new(()));
                local.block_on(&runtime, async move {
                    while let Some(job) = queue.recv().await {
                        let ctx = Context::new(graph.clone(), None, state_dir.clone());
                        tokio::task::spawn_local(run(job, ctx, advancing.clone()));
                    }
                });
            })
            .map_err(|e| Error::internal(format!("cannot start the action thread: {e}")))?;
        Ok(Worker { jobs })
    }

    /// Hand a job over; `None` when the action thread is gone (a defect).
    pub fn submit(&self, job: Job) -> Option<()> {
        self.jobs.send(job).ok()
    }
}

async fn run(job: Job, ctx: Context, advancing: Rc<Mutex<()>>) {
    let Job {
        action,
        inputs,
        progress,
        cancel,
        reply,
    } = job;
    let ctx = ctx.with_progress(progress);
    let work = async {
        let _turn = match action.meta.writes_local_state {
            LocalWrites::Advances => Some(advancing.lock().await),
            _ => None,
        };
        let finished = action.run(&ctx, inputs).await?;
        let mut text = Vec::with_capacity(256);
        finished
            .write(&mut text, false)
            .map_err(|e| Error::internal(format!("the result does not serialise: {e}")))?;
        String::from_utf8(text)
            .map_err(|e| Error::internal(format!("the result is not UTF-8: {e}")))
    };
    // Dropping the action's future stops it at its next await: no further request
    // leaves, and stores commit in one transaction at the end or not at all.
    let outcome = tokio::select! {
        done = work => Outcome::Done(done),
        () = cancel.cancelled() => Outcome::Cancelled,
    };
    let _ = reply.send(outcome);
}
