//! The background worker every `serve` runs beside the server, stopping with it: one loop that
//! leases due work from the database and runs it — event deliveries (`src/delivery.rs`) and
//! jobs (text extraction, `src/extraction.rs`), each with its own number of slots, so a slow
//! endpoint never holds up extraction nor the other way round.
//!
//! Work is leased, never owned: with several replicas each item is run by one of them at a
//! time, and an item whose worker died is taken by another once its lease runs out.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;

/// How often an idle worker looks for due work.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the worker of this process.
pub fn start(app: App) -> Worker {
    let (stop, stopping) = watch::channel(false);
    let task = tokio::spawn(run(app, stopping));
    Worker { stop, task }
}

impl Worker {
    /// Stops leasing work and waits (up to `deadline`) for what is in flight; anything still
    /// in flight then is abandoned, and its lease lets another worker take it.
    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            tracing::warn!("background work was still in flight at the shutdown deadline");
            abort.abort();
        }
    }
}

/// One kind of work: its slots and what is in flight.
struct Lane {
    slots: usize,
    in_flight: JoinSet<()>,
}

impl Lane {
    fn new(slots: usize) -> Self {
        Lane {
            slots,
            in_flight: JoinSet::new(),
        }
    }

    /// Free slots, once finished work is reaped.
    fn free(&mut self) -> usize {
        while self.in_flight.try_join_next().is_some() {}
        self.slots.saturating_sub(self.in_flight.len())
    }

    /// Whether half the slots (at least one) are free: worth a claim for a batch.
    fn half_free(&mut self) -> bool {
        self.free() >= (self.slots / 2).max(1)
    }
}

fn until(lease: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX)
}

/// Leases up to `free` due deliveries and starts them; how many were leased.
async fn start_deliveries(app: &App, lane: &mut Lane, free: usize) -> usize {
    let lease = crate::delivery::lease(app.events().timeout);
    match app
        .repo()
        .claim_deliveries(
            Utc::now(),
            until(lease),
            free as i64,
            app.events().endpoint_concurrency,
        )
        .await
    {
        Ok(due) => {
            let claimed = due.len();
            for delivery in due {
                let app = app.clone();
                lane.in_flight.spawn(async move {
                    if let Err(e) = crate::delivery::deliver(&app, delivery).await {
                        tracing::warn!(error = %e, "recording an event delivery");
                    }
                });
            }
            claimed
        }
        Err(e) => {
            tracing::warn!(error = %e, "looking for due event deliveries");
            0
        }
    }
}

/// Leases up to `free` due jobs and starts them; how many were leased.
async fn start_jobs(app: &App, lane: &mut Lane, free: usize) -> usize {
    match app
        .repo()
        .claim_jobs(Utc::now(), until(app.text().lease()), free as i64)
        .await
    {
        Ok(due) => {
            let claimed = due.len();
            for job in due {
                let app = app.clone();
                lane.in_flight
                    .spawn(async move { crate::jobs::run(&app, job).await });
            }
            claimed
        }
        Err(e) => {
            tracing::warn!(error = %e, "looking for due jobs");
            0
        }
    }
}

/// Keeps the repository's key cache in step with the database: on while a listener is
/// connected, emptied at every change, off (and retried every few seconds) when it is lost.
async fn follow_key_changes(app: App, mut stopping: watch::Receiver<bool>) {
    const RETRY: Duration = Duration::from_secs(5);
    loop {
        let mut changes = match app.repo().key_changes().await {
            Ok(Some(changes)) => changes,
            // The database cannot signal changes: keys are read at every request.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for key changes; keys are read at every request meanwhile");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    _ = stopping.changed() => return,
                }
            }
        };
        loop {
            tokio::select! {
                next = changes.next() => if let Err(e) = next {
                    tracing::warn!(error = %e, "lost the key-change listener; keys are read at every request until it is back");
                    break;
                },
                _ = stopping.changed() => return,
            }
        }
    }
}

async fn run(app: App, mut stopping: watch::Receiver<bool>) {
    let keys = tokio::spawn(follow_key_changes(app.clone(), stopping.clone()));
    let mut deliveries = Lane::new(crate::delivery::CONCURRENCY);
    // A text job parses in one of the replica's extraction processes, shared with upload-time
    // checks (`TextPolicy::concurrency`); more jobs than processes are in flight, so that
    // reading documents and recording texts overlap the parsing.
    let mut jobs = Lane::new(app.text().job_slots());
    // When to look again before the next poll: when a delivery ends (an endpoint at its cap of
    // deliveries in flight may take the next one; a look that found nothing may only have met
    // that cap), and when a job ends if the last look at jobs found some (more may be due than
    // the slots took) and half the job slots are free: a backlog is then claimed half the slots
    // at a time, not one claim per job, and the other half keeps the processes busy meanwhile.
    // Only the lane whose work ended is looked at then: a delivery's end says nothing new
    // about jobs, nor the reverse.
    let mut jobs_found = false;
    let (mut look_at_deliveries, mut look_at_jobs) = (true, true);
    // Both lanes are looked at every poll interval however often work ends in one of them.
    let mut poll_at = tokio::time::Instant::now() + POLL_INTERVAL;
    loop {
        if *stopping.borrow() {
            break;
        }
        let mut saturated = false;
        let free = deliveries.free();
        if look_at_deliveries && free > 0 {
            saturated |= start_deliveries(&app, &mut deliveries, free).await == free;
        }
        let free = jobs.free();
        if look_at_jobs && free > 0 {
            let started = start_jobs(&app, &mut jobs, free).await;
            saturated |= started == free;
            jobs_found = started > 0;
        }
        // More may be due at once when every free slot was used; otherwise wait a little, or
        // for work in flight to end.
        if saturated {
            tokio::task::yield_now().await;
            (look_at_deliveries, look_at_jobs) = (true, true);
            continue;
        }
        let deliveries_wake = !deliveries.in_flight.is_empty();
        let jobs_wake = jobs_found || jobs.in_flight.len() >= jobs.slots;
        (look_at_deliveries, look_at_jobs) = tokio::select! {
            () = tokio::time::sleep_until(poll_at) => (true, true),
            _ = stopping.changed() => (true, true),
            Some(_) = deliveries.in_flight.join_next(), if deliveries_wake => (true, false),
            Some(_) = jobs.in_flight.join_next(), if jobs_wake => (false, jobs.half_free()),
        };
        if tokio::time::Instant::now() >= poll_at {
            (look_at_deliveries, look_at_jobs) = (true, true);
            poll_at = tokio::time::Instant::now() + POLL_INTERVAL;
        }
    }
    while deliveries.in_flight.join_next().await.is_some() {}
    while jobs.in_flight.join_next().await.is_some() {}
    let _ = keys.await;
}
