//! The recommended daily sequence (BILLTIME_USAGE_RATING → SYNC_TRANSACTION →
//! BILLING → SYNC_BILLING_TRANSACTIONS) through the engine and gRPC over the
//! demo ledger, with the stand-in core rejecting some accounts: the
//! drill-down shows them, fixing and retrying completes the schedule, and
//! the stand-in then holds each transaction exactly once.

use std::collections::{BTreeSet, HashMap};

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::demo::load_demo_ledger;
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::core_v1::core_stand_in_control_client::CoreStandInControlClient;
use allegro_scheduler::proto::core_v1::SetFaultsRequest;
use allegro_scheduler::proto::v1 as pb;
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

use crate::executions::{finished, job_status, status, Fixture};
use crate::support::*;

const DATE: &str = "2026-11-24";

async fn retry(fx: &Fixture, position: u32) {
    fx.server
        .executions()
        .retry_job(pb::RetryJobRequest {
            override_exception_window: false,
            client_id: CLIENT.into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position,
            reason: "resolved".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_daily_sequence_runs_over_the_demo_ledger_and_recovers_from_core_rejections() {
    let url = fresh_database().await;
    let db = Db::new(&url, 4).unwrap();
    let date = NaiveDate::parse_from_str(DATE, "%Y-%m-%d").unwrap();
    load_demo_ledger(&db, CLIENT, 2000, date).await.unwrap();
    let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // This test is about core Aria's rejections: take the demo's broken
    // accounts out (suspended ones reactivated, those whose subscription was
    // cancelled closed, so BILLING does not plan them).
    pg.batch_execute(
        "UPDATE ledger.accounts SET status = 'ACTIVE' WHERE client_id = 'acme' AND status = 'SUSPENDED'; \
         UPDATE ledger.accounts a SET status = 'CLOSED' FROM ledger.subscriptions s \
         WHERE s.client_id = a.client_id AND s.account_id = a.account_id AND s.status = 'CANCELLED' \
           AND a.client_id = 'acme';",
    )
    .await
    .unwrap();

    let synced_keys = || async {
        pg.query(
            "SELECT idempotency_key FROM ledger.transactions WHERE client_id = 'acme' \
             AND sync_status = 'SYNCED' AND transaction_type <> 'TRUE_UP'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<BTreeSet<String>>()
    };
    // History the demo loaded as synced before today.
    let synced_before = synced_keys().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standin_url = format!("http://{}", listener.local_addr().unwrap());
    let stop_standin = CancellationToken::new();
    tokio::spawn(serve_standin(
        db.clone(),
        listener,
        true,
        stop_standin.clone(),
    ));
    let registry =
        allegro_scheduler::billing::catalogue_registry(CoreAriaClient::lazy(&standin_url).unwrap());
    let server = TestServer::start_with(test_settings(&url), registry).await;

    // Core Aria rejects three accounts that have usage to sync.
    let rejected: Vec<String> = pg
        .query(
            "SELECT DISTINCT account_id FROM ledger.transactions \
             WHERE client_id = 'acme' AND sync_status = 'PENDING' ORDER BY account_id LIMIT 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rejected.len(), 3);
    let mut control = CoreStandInControlClient::connect(standin_url.clone())
        .await
        .unwrap();
    control
        .set_faults(SetFaultsRequest {
            client_id: CLIENT.into(),
            unavailable: false,
            reject_accounts: rejected
                .iter()
                .map(|a| (a.clone(), "CORE_ACCOUNT_LOCKED".to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
        .unwrap();

    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(daily(
                "eod",
                &[
                    "BILLTIME_USAGE_RATING",
                    "SYNC_TRANSACTION",
                    "BILLING",
                    "SYNC_BILLING_TRANSACTIONS",
                ],
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    let fx = Fixture {
        server,
        controls: Default::default(),
        config_id,
    };
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Error);
    assert_eq!(job_status(&e, 1), pb::Status::Completed);
    assert_eq!(job_status(&e, 2), pb::Status::Error);
    assert_eq!(
        job_status(&e, 3),
        pb::Status::Pending,
        "BILLING waits behind the errored sync"
    );

    // The drill-down shows exactly the rejected accounts under the core's code.
    let codes = fx.error_codes(2).await;
    assert_eq!(codes, [("CORE_ACCOUNT_LOCKED".to_string(), 3)]);
    let items = fx.errored_items(2, "CORE_ACCOUNT_LOCKED", 100).await;
    let accounts: BTreeSet<String> = items.iter().map(|i| i.account_id.clone()).collect();
    assert_eq!(accounts, rejected.iter().cloned().collect::<BTreeSet<_>>());
    // Each drill-down payload says which account and transactions the call
    // sent.
    for item in &items {
        let payload: serde_json::Value = serde_json::from_str(&item.payload_json).unwrap();
        assert_eq!(payload["account_id"], item.account_id.as_str(), "{payload}");
        let ids = payload["transaction_ids"]
            .as_array()
            .expect("transaction ids");
        assert!(!ids.is_empty(), "{payload}");
        assert_eq!(payload["transactions"], ids.len(), "{payload}");
    }

    // Fix core Aria and retry: the schedule continues to BILLING.
    control
        .set_faults(SetFaultsRequest {
            client_id: CLIENT.into(),
            unavailable: false,
            reject_accounts: HashMap::new(),
        })
        .await
        .unwrap();
    retry(&fx, 2).await;
    let e = fx
        .wait_for(DATE, |e| {
            finished(e) && job_status(e, 2) == pb::Status::Completed
        })
        .await;
    assert_eq!(status(&e), pb::Status::Completed, "{e:#?}");

    // Each ledger transaction synced once: the stand-in holds every key of
    // the ledger's synced transactions exactly once.
    let ledger_keys: BTreeSet<String> = synced_keys()
        .await
        .difference(&synced_before)
        .cloned()
        .collect();
    assert!(!ledger_keys.is_empty());
    let pending: i64 = pg
        .query_one(
            "SELECT count(*) FROM ledger.transactions WHERE client_id = 'acme' AND sync_status <> 'SYNCED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "everything synced after the retries");
    let held = pg
        .query(
            "SELECT idempotency_key FROM core_standin.usage_transactions WHERE client_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    let held_keys: Vec<String> = held.iter().map(|r| r.get(0)).collect();
    assert_eq!(held_keys.len(), ledger_keys.len());
    assert_eq!(held_keys.into_iter().collect::<BTreeSet<_>>(), ledger_keys);
    let true_ups: i64 = pg
        .query_one(
            "SELECT count(*) FROM ledger.transactions WHERE client_id = 'acme' AND transaction_type = 'TRUE_UP'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let orders: i64 = pg
        .query_one(
            "SELECT count(*) FROM core_standin.true_up_orders WHERE client_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(true_ups > 0);
    assert_eq!(orders, true_ups, "one order per TRUE_UP");
    fx.server.stop().await;
    stop_standin.cancel();
}
