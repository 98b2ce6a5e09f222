//! Job types for tests only (never shipped in the catalogue): fixed item
//! counts, items that fail by rule until "fixed", slow items, plans that fail,
//! and items that record their side effects so tests can count them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use allegro_scheduler::scheduling::job::{
    ItemOutcome, JobContext, JobError, JobRegistry, JobType, PlanStream, PlannedItem, WorkItem,
};
use async_trait::async_trait;
use futures_util::stream;

/// A switch a test flips to "resolve the underlying error".
#[derive(Clone, Default)]
pub struct Fix(Arc<AtomicBool>);

impl Fix {
    pub fn apply(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_fixed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Items `index % every == 0` (1-based) fail with `code` until fixed.
#[derive(Clone)]
pub struct FailRule {
    pub every: usize,
    pub code: &'static str,
    pub fix: Fix,
}

/// A configurable test job.
pub struct TestJob {
    pub name: &'static str,
    pub items: usize,
    pub fail: Vec<FailRule>,
    pub item_delay: Duration,
    pub plan_fails_until: Option<Fix>,
    pub record_effects: bool,
}

impl TestJob {
    pub fn new(name: &'static str, items: usize) -> Self {
        Self {
            name,
            items,
            fail: Vec::new(),
            item_delay: Duration::ZERO,
            plan_fails_until: None,
            record_effects: false,
        }
    }
}

pub fn account(i: usize) -> String {
    format!("ACC-{i:05}")
}

#[async_trait]
impl JobType for TestJob {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "test job"
    }
    fn work_item(&self) -> &str {
        "one numbered test item"
    }
    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        if let Some(fix) = &self.plan_fails_until {
            if !fix.is_fixed() {
                return Err(JobError::new(
                    "RATE_SCHEDULE_NOT_FOUND",
                    "no rate schedule for the test client",
                ));
            }
        }
        let date = ctx.business_date.to_string();
        let items: Vec<PlannedItem> = (1..=self.items)
            .map(|i| PlannedItem {
                account_id: account(i),
                payload: serde_json::json!({"index": i, "business_date": date}),
            })
            .collect();
        let chunks: Vec<Result<Vec<PlannedItem>, JobError>> =
            items.chunks(700).map(|c| Ok(c.to_vec())).collect();
        Ok(Box::pin(stream::iter(chunks)))
    }
    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        if !self.item_delay.is_zero() {
            tokio::time::sleep(self.item_delay * items.len() as u32).await;
        }
        if self.record_effects {
            record_effects(ctx, items).await?;
        }
        Ok(items
            .iter()
            .map(|item| {
                let index = item.payload["index"].as_u64().unwrap_or(0) as usize;
                for rule in &self.fail {
                    if !rule.fix.is_fixed() && index % rule.every == 0 {
                        return ItemOutcome::error(
                            rule.code,
                            format!("{} failed rule every {}", item.account_id, rule.every),
                        );
                    }
                }
                ItemOutcome::Processed
            })
            .collect())
    }
}

/// Counts, per item, how many times a side effect ran and which process ran
/// it (table `test_effects`, created by the test).
async fn record_effects(ctx: &JobContext, items: &[WorkItem]) -> Result<(), JobError> {
    let (client, conn) = tokio_postgres::connect(ctx.db.url(), tokio_postgres::NoTls)
        .await
        .map_err(|e| JobError::new("TEST_DB", e.to_string()))?;
    tokio::spawn(conn);
    let accounts: Vec<String> = items.iter().map(|i| i.account_id.clone()).collect();
    let pid = std::process::id() as i32;
    client
        .execute(
            "INSERT INTO test_effects (account_id, times, pid) SELECT a, 1, $2 FROM unnest($1::text[]) a \
             ON CONFLICT (account_id) DO UPDATE SET times = test_effects.times + 1",
            &[&accounts, &pid],
        )
        .await
        .map_err(|e| JobError::new("TEST_DB", e.to_string()))?;
    Ok(())
}

/// The switches of a test registry.
#[derive(Clone, Default)]
pub struct Controls {
    pub flaky: Fix,
    pub plan: Fix,
}

/// The catalogue plus the test job types.
pub fn registry() -> (JobRegistry, Controls) {
    let controls = Controls::default();
    let mut r = crate::support::catalogue_jobs();
    r.register(Arc::new(TestJob::new("EMPTY", 0)));
    r.register(Arc::new(TestJob::new("ITEMS_120", 120)));
    r.register(Arc::new(TestJob::new("ITEMS_75", 75)));
    r.register(Arc::new(TestJob {
        fail: vec![
            FailRule {
                every: 50,
                code: "TIER_GAP",
                fix: controls.flaky.clone(),
            },
            FailRule {
                every: 7,
                code: "ACCOUNT_INACTIVE",
                fix: controls.flaky.clone(),
            },
        ],
        ..TestJob::new("FLAKY", 200)
    }));
    r.register(Arc::new(TestJob {
        item_delay: Duration::from_millis(20),
        ..TestJob::new("SLOW", 60)
    }));
    r.register(Arc::new(TestJob {
        plan_fails_until: Some(controls.plan.clone()),
        ..TestJob::new("PLAN_FAILS", 10)
    }));
    r.register(Arc::new(TestJob {
        item_delay: Duration::from_millis(1),
        record_effects: true,
        ..TestJob::new("EFFECTS", 3000)
    }));
    (r, controls)
}
