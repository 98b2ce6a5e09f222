//! Operator ergonomics: action ids numbered per client, and resolved
//! failures in the drill-down on request.

use allegro_scheduler::proto::v1 as pb;

use crate::executions::{finished, setup};
use crate::support::*;

async fn process(server: &TestServer, client: &str, config_id: &str, date: &str) {
    server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: client.into(),
            config_id: config_id.into(),
            business_date: date.into(),
            manual_job_positions: vec![],
            reason: "test".into(),
        })
        .await
        .unwrap();
}

async fn action_ids(
    server: &TestServer,
    client: &str,
    config_id: &str,
    dates: &[&str],
) -> Vec<i64> {
    let mut ids = Vec::new();
    for date in dates {
        let actions = server
            .executions()
            .list_execution_actions(pb::ListExecutionActionsRequest {
                client_id: client.into(),
                config_id: config_id.into(),
                business_date: date.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .actions;
        ids.extend(actions.iter().map(|a| a.action_id));
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn action_ids_are_numbered_per_client() {
    let fx = setup(&[("EMPTY", false)]).await;
    let server = &fx.server;
    let globex = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "globex".into(),
            config: Some(daily("eod", &["EMPTY"])),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    let dates = ["2026-11-20", "2026-11-21", "2026-11-22"];
    // Interleaved: each client's ids still run 1, 2, 3.
    for date in dates {
        process(server, "acme", &fx.config_id, date).await;
        process(server, "globex", &globex, date).await;
    }
    assert_eq!(
        action_ids(server, "acme", &fx.config_id, &dates).await,
        vec![1, 2, 3]
    );
    assert_eq!(
        action_ids(server, "globex", &globex, &dates).await,
        vec![1, 2, 3]
    );
    for date in dates {
        fx.wait_for(date, finished).await;
    }
    fx.server.stop().await;
}
