//! The scheduler: starts automatic runs at their start instant in the
//! client's time zone, exactly once, holds work in exception windows, and
//! catches up after downtime.
//!
//! Every configuration stores when its next automatic run really starts
//! (`next_start`: due time, moved to the end of the exception window when
//! due inside it; NULL without automatic runs). Every tick (any number of
//! processes may tick; `SKIP LOCKED` shares the rows) takes only the
//! configurations whose next start has come, and looks at the runs due
//! since its watermark (`scheduled_through`):
//! - a run whose start, or now, falls in the exception window is held: the
//!   watermark stops before it and it starts when the window closes;
//! - a run due within the catch-up window is created and processed
//!   (oldest first); the execution's unique (configuration, date) key makes
//!   the creation happen once however many processes race;
//! - an older one is recorded as a MISSED execution, not started;
//!
//! then stores the configuration's next start. Saving a configuration makes
//! it due at once, so the next tick computes its next start.
//!
//! It also holds the running work of executions whose configuration's
//! exception window is open (no new batch is claimed; batches in flight
//! finish) and releases it when the window closes.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::transition::{self, Actor};
use super::Engine;
use crate::scheduling::domain::calendar;
use crate::scheduling::domain::config::JobScheduleConfig;
use crate::scheduling::domain::execution::{self, ActionKind};
use crate::scheduling::store::configs;
use crate::scheduling::store::executions;
use crate::scheduling::Error;

/// The actor recorded for automatic actions.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Most configurations one scheduler pass takes at a time.
pub const DUE_PER_TICK: usize = 500;

/// Configurations one scheduler pass works on at once.
const CONCURRENT_CONFIGS: usize = 8;

/// A configuration taken by a process that dies before it is done with it is
/// looked at again this long after.
const RETRY_AFTER_SECS: i64 = 60;

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Runs this tick created and started.
    pub started: Vec<(Uuid, chrono::NaiveDate)>,
    /// Runs this tick recorded as missed.
    pub missed: Vec<(Uuid, chrono::NaiveDate)>,
    /// Due runs held by an exception window.
    pub held: usize,
    /// Executions whose work was paused for a window.
    pub paused: usize,
    /// Executions whose work resumed after a window.
    pub resumed: usize,
}

impl Engine {
    /// The scheduler loop of this process: ticks until `shutdown`.
    pub async fn run_scheduler(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.schedule_tick().await {
                tracing::warn!(error = %e, "scheduler tick failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(self.settings().scheduler_tick) => {}
            }
        }
    }

    /// One scheduler pass at the clock's current instant: looks only at the
    /// configurations whose next start is due (at most [`DUE_PER_TICK`],
    /// ticking again at once when there were more), then at executions whose
    /// exception window opened or closed. An idle tick is two statements and
    /// writes nothing.
    pub async fn schedule_tick(&self) -> Result<TickReport, Error> {
        let mut report = TickReport::default();
        loop {
            let taken = self.schedule_due(&mut report).await?;
            if taken < DUE_PER_TICK {
                break;
            }
        }
        self.hold_for_windows(&mut report).await?;
        if !report.started.is_empty() || report.resumed > 0 {
            self.wake();
        }
        Ok(report)
    }

    /// Starts (or records as missed) the due runs of up to [`DUE_PER_TICK`]
    /// due configurations and stores each one's next start. How many
    /// configurations it took.
    async fn schedule_due(&self, report: &mut TickReport) -> Result<usize, Error> {
        let now = self.clock().now();
        let catch_up = chrono::Duration::from_std(self.settings().catch_up)
            .unwrap_or(chrono::Duration::days(1));
        let retry_at = now + chrono::Duration::seconds(RETRY_AFTER_SECS);
        let due = {
            let mut conn = self.db().conn().await?;
            configs::take_due(&mut conn, now, retry_at, DUE_PER_TICK as i64).await?
        };
        let taken = due.len();
        // Configurations are independent: several at a time, each on its
        // own pooled connection, so a minute with many due runs starts
        // them all promptly.
        let mut outcomes = futures_util::stream::iter(due)
            .map(|row| self.schedule_config(row, now, catch_up))
            .buffer_unordered(CONCURRENT_CONFIGS);
        let mut first_error = None;
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(one) => {
                    report.started.extend(one.started);
                    report.missed.extend(one.missed);
                    report.held += one.held;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduling a configuration failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Starts (or records as missed) the due runs of one configuration and
    /// stores its next start; what it did.
    async fn schedule_config(
        &self,
        row: configs::ConfigRow,
        now: DateTime<Utc>,
        catch_up: chrono::Duration,
    ) -> Result<TickReport, Error> {
        let mut report = TickReport::default();
        let through = row.scheduled_through();
        let config: JobScheduleConfig = row.try_into()?;
        let mut watermark = now.max(through);
        if calendar::has_automatic_runs(&config.draft) && through < now {
            let window_open_now = calendar::in_exception_window(&config.draft, now);
            for run in calendar::runs_between(&config.draft, through, now, 1000) {
                let effective = calendar::effective_start(&config.draft, run.start);
                if window_open_now || effective > now {
                    report.held += 1;
                    watermark = run.start - chrono::Duration::microseconds(1);
                    break;
                }
                let key = (config.config_id, run.business_date);
                if now - effective > catch_up {
                    if self
                        .record_missed(&config, run.business_date, run.start)
                        .await?
                    {
                        report.missed.push(key);
                    }
                } else if self
                    .start_automatic(&config, run.business_date, run.start)
                    .await?
                {
                    report.started.push(key);
                }
            }
        }
        let next = calendar::next_start(&config.draft, watermark, now);
        let mut conn = self.db().conn().await?;
        configs::finish_schedule(&mut conn, config.config_id, config.version, watermark, next)
            .await?;
        Ok(report)
    }

    /// Holds the running work of executions whose configuration's window is
    /// open (unless an operator overrode it) and releases it when the window
    /// closes. Writes only for executions whose hold changes.
    async fn hold_for_windows(&self, report: &mut TickReport) -> Result<(), Error> {
        let now = self.clock().now();
        let running = {
            let mut conn = self.db().conn().await?;
            configs::windowed_running(&mut conn).await?
        };
        for execution in running {
            let config: JobScheduleConfig = execution.config.try_into()?;
            let held =
                !execution.window_override && calendar::in_exception_window(&config.draft, now);
            if held == execution.held {
                continue;
            }
            match self.set_window_hold(execution.execution_id, held).await? {
                Some(true) => report.paused += 1,
                Some(false) => report.resumed += 1,
                None => {}
            }
        }
        self.metrics().runs_held(report.held as u64);
        Ok(())
    }

    /// Creates and starts the automatic run of `date`, unless an execution
    /// of that date exists already (created by another process, or by
    /// hand). Whether this call created it.
    async fn start_automatic(
        &self,
        config: &JobScheduleConfig,
        date: chrono::NaiveDate,
        due: DateTime<Utc>,
    ) -> Result<bool, Error> {
        self.create_automatic(config, date, due, false).await
    }

    /// Records a run that is past the catch-up window as a MISSED execution.
    async fn record_missed(
        &self,
        config: &JobScheduleConfig,
        date: chrono::NaiveDate,
        due: DateTime<Utc>,
    ) -> Result<bool, Error> {
        self.create_automatic(config, date, due, true).await
    }

    async fn create_automatic(
        &self,
        config: &JobScheduleConfig,
        date: chrono::NaiveDate,
        due: DateTime<Utc>,
        missed: bool,
    ) -> Result<bool, Error> {
        use diesel_async::AsyncConnection;
        let jobs = execution::snapshot(&config.draft.jobs, &[])?;
        let actor = Actor {
            actor: SCHEDULER_ACTOR.to_string(),
            on_behalf_of: None,
            reason: String::new(),
        };
        let client = config.client_id.clone();
        let config_id = config.config_id;
        let name = config.draft.name.clone();
        let mut conn = self.db().conn().await?;
        let created = conn
            .transaction::<_, Error, _>(async move |conn| {
                let inserted =
                    executions::insert(conn, &client, config_id, &name, date, true, &jobs).await;
                let id = match inserted {
                    Ok(id) => id,
                    Err(e) if e.unique_violation() == Some(executions::UNIQUE_DATE) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e.into()),
                };
                let loaded = executions::load_by_id(conn, id, true)
                    .await?
                    .ok_or_else(|| Error::internal("execution vanished"))?;
                let mut after = loaded.state.clone();
                let (kind, outcome) = if missed {
                    after.mark_missed();
                    (
                        ActionKind::Create,
                        format!(
                            "missed: due at {due}, beyond the catch-up window; process it by hand \
                             if wanted"
                        ),
                    )
                } else {
                    after.start();
                    (
                        ActionKind::Process,
                        format!("automatic start (due at {due})"),
                    )
                };
                transition::save(conn, &loaded, &after).await?;
                transition::record(conn, &loaded, &actor, kind, None, outcome).await?;
                Ok(Some(id))
            })
            .await?;
        if let Some(execution) = created {
            tracing::info!(
                client = %config.client_id,
                execution = %execution,
                config = %config.config_id,
                %date,
                missed,
                "automatic run"
            );
            let lag = (self.clock().now() - due).to_std().unwrap_or_default();
            match missed {
                true => self.metrics().run_missed(),
                false => self.metrics().run_started(lag),
            }
        }
        Ok(created.is_some())
    }

    /// Pauses (`held`) or resumes an execution's running work for the
    /// exception window. `Some(held)` when something changed.
    async fn set_window_hold(&self, execution_id: Uuid, held: bool) -> Result<Option<bool>, Error> {
        use diesel_async::AsyncConnection;
        let mut conn = self.db().conn().await?;
        conn.transaction::<_, Error, _>(async move |conn| {
            let Some(loaded) = executions::load_by_id(conn, execution_id, true).await? else {
                return Ok(None);
            };
            let mut after = loaded.state.clone();
            if !after.hold_for_window(held) {
                return Ok(None);
            }
            transition::save(conn, &loaded, &after).await?;
            Ok(Some(held))
        })
        .await
    }
}
