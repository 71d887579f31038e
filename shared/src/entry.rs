//! What an agent exports besides its router: its queue [`Consumer`] and its schedule
//! [`OnTick`], each already wrapped in the run log, so that the Lambda main, the local stack
//! and the tests mount the very same instrumented handler and none of them records runs by
//! hand.
//!
//! Both are cheap to clone (one `Arc`) and boxed: hosts hold handlers of different agents
//! side by side (the local stack's schedule table), which a generic closure type cannot do.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::lambda::schedule::Tick;
use crate::runs::{Outcome, RunLog, Trigger};

/// A handler's failure, as the hosts see it: they log it and retry or dead-letter the work.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Handle<I> = Arc<dyn Fn(I) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Handles one message of type `M` from the agent's queue.
pub struct Consumer<M> {
    handle: Handle<M>,
}

impl<M> Clone for Consumer<M> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
        }
    }
}

impl<M: Send + 'static> Consumer<M> {
    /// `work` recorded in `runs` as a queue run; an `Err` fails the message (the queue
    /// redelivers it, then dead-letters it).
    pub fn new<F, Fut, T, E>(runs: RunLog, work: F) -> Self
    where
        F: Fn(M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::judged(runs, work, |_| (Outcome::Ok, None))
    }

    /// [`Self::new`] for work whose `Ok` can still be a failure worth recording (an ETL run
    /// that failed for good is acknowledged, and the next schedule tries again).
    pub fn judged<F, Fut, T, E, J>(runs: RunLog, work: F, judge: J) -> Self
    where
        F: Fn(M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        J: Fn(&T) -> (Outcome, Option<String>) + Copy + Send + Sync + 'static,
    {
        Self {
            handle: Arc::new(move |message| {
                let (runs, work) = (runs.clone(), work(message));
                Box::pin(async move {
                    runs.observe_judged(Trigger::Queue, work, judge)
                        .await
                        .map(|_| ())
                        .map_err(HandlerError::from)
                })
            }),
        }
    }

    /// Handles one message.
    pub fn call(&self, message: M) -> BoxFuture<'static, Result<(), HandlerError>> {
        (self.handle)(message)
    }

    /// The consumer as the closure the queue adapters take.
    pub fn handler(
        &self,
    ) -> impl Fn(M) -> BoxFuture<'static, Result<(), HandlerError>> + Clone + Send + Sync + use<M>
    {
        let consumer = self.clone();
        move |message| consumer.call(message)
    }
}

/// Does the agent's work for one firing of one of its schedules.
#[derive(Clone)]
pub struct OnTick {
    handle: Handle<Tick>,
}

impl OnTick {
    /// `work` recorded in `runs` as a schedule run; its report is logged.
    pub fn new<F, Fut, T, E>(runs: RunLog, work: F) -> Self
    where
        F: Fn(Tick) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: std::fmt::Debug + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Self {
            handle: Arc::new(move |tick: Tick| {
                let (runs, schedule, work) = (runs.clone(), tick.schedule.name, work(tick));
                Box::pin(async move {
                    let report = runs
                        .observe(Trigger::Schedule, work)
                        .await
                        .map_err(HandlerError::from)?;
                    tracing::info!(schedule, ?report, "schedule ran");
                    Ok(())
                })
            }),
        }
    }

    /// Handles one firing.
    pub fn call(&self, tick: Tick) -> BoxFuture<'static, Result<(), HandlerError>> {
        (self.handle)(tick)
    }
}
