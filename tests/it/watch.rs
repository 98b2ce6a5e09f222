//! The live status stream: full life in order, resume, across processes,
//! slow watchers, resync, and shutdown with open streams.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use pb::watch_event::Kind;
use tonic::codec::Streaming;

use crate::executions::{setup, Fixture};
use crate::support::*;

const DATE: &str = "2026-11-24";

async fn watch(
    fx_channel: &KeyedChannel,
    config_id: &str,
    after: u64,
) -> Streaming<pb::WatchEvent> {
    pb::execution_service_client::ExecutionServiceClient::new(fx_channel.clone())
        .watch_executions(pb::WatchExecutionsRequest {
            client_id: CLIENT.into(),
            config_id: config_id.into(),
            business_date: String::new(),
            after_sequence: after,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Reads events until `done` holds for one (guard: 60 s).
async fn read_until(
    stream: &mut Streaming<pb::WatchEvent>,
    done: impl Fn(&pb::WatchEvent) -> bool,
) -> Vec<pb::WatchEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        let stop = done(&event);
        out.push(event);
        if stop {
            return out;
        }
    }
}

fn execution_completed(e: &pb::WatchEvent) -> bool {
    matches!(&e.kind, Some(Kind::ExecutionChanged(c)) if c.status == pb::Status::Completed as i32)
}

/// A readable line per status change (counts left out).
fn describe(e: &pb::WatchEvent) -> Option<String> {
    match e.kind.as_ref()? {
        Kind::ExecutionChanged(c) => Some(format!(
            "execution {:?}/{:?}",
            pb::Status::try_from(c.status).unwrap(),
            pb::ExecutionPhase::try_from(c.phase).unwrap()
        )),
        Kind::JobChanged(j) => Some(format!(
            "job {} {:?}/{:?}",
            j.position,
            pb::Status::try_from(j.status).unwrap(),
            pb::JobPhase::try_from(j.phase).unwrap()
        )),
        Kind::ActionTaken(a) => Some(format!(
            "action {:?} by {}",
            pb::ActionKind::try_from(a.action.as_ref().unwrap().kind).unwrap(),
            a.action.as_ref().unwrap().actor
        )),
        _ => None,
    }
}

async fn trigger(fx: &Fixture, position: u32) {
    fx.server
        .executions()
        .trigger_job(pb::TriggerJobRequest {
            override_exception_window: false,
            client_id: CLIENT.into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position,
            reason: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_watcher_sees_the_whole_life_in_order_and_can_resume_from_the_middle() {
    let fx = setup(&[("ITEMS_120", false), ("EMPTY", true)]).await;
    let mut stream = watch(&fx.server.channel, &fx.config_id, 0).await;
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.kind, Some(Kind::Snapshot(ref s)) if s.executions.is_empty()));

    fx.process(DATE, vec![]).await;
    let mut events = read_until(&mut stream, |e| {
        matches!(&e.kind, Some(Kind::ExecutionChanged(c)) if c.phase == pb::ExecutionPhase::AwaitingTrigger as i32)
    })
    .await;
    trigger(&fx, 2).await;
    events.extend(read_until(&mut stream, execution_completed).await);

    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "sequences increase: {sequences:?}"
    );
    let life: Vec<String> = events.iter().filter_map(describe).collect();
    assert_eq!(
        life,
        [
            "execution Pending/NotStarted",
            "job 1 Pending/Planning",
            "execution Pending/Running",
            "action ActionProcess by ops@aria",
            "job 1 Pending/Running",
            "job 1 Completed/Done",
            "job 2 Pending/AwaitingTrigger",
            "execution Pending/AwaitingTrigger",
            "job 2 Pending/Planning",
            "execution Pending/Running",
            "action ActionTriggerJob by ops@aria",
            "job 2 Completed/Done",
            "execution Completed/Done",
        ]
    );
    let last_counts = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            Some(Kind::CountsChanged(c)) if c.position == 1 => c.counts,
            Some(Kind::JobChanged(j)) if j.position == 1 => j.counts,
            _ => None,
        })
        .unwrap();
    assert_eq!((last_counts.total, last_counts.processed), (120, 120));

    // Resume from the middle: exactly the rest, no snapshot.
    let middle = events.len() / 2;
    let mut resumed = watch(&fx.server.channel, &fx.config_id, events[middle].sequence).await;
    let rest = read_until(&mut resumed, execution_completed).await;
    let expected: Vec<u64> = events[middle + 1..].iter().map(|e| e.sequence).collect();
    let got: Vec<u64> = rest.iter().map(|e| e.sequence).collect();
    // Counts updates may be coalesced differently; status changes never.
    let status_only = |xs: &[pb::WatchEvent]| {
        xs.iter()
            .filter(|e| describe(e).is_some())
            .map(|e| e.sequence)
            .collect::<Vec<_>>()
    };
    assert_eq!(status_only(&rest), status_only(&events[middle + 1..]));
    assert!(
        got.iter().all(|s| expected.contains(s)),
        "nothing repeated or invented"
    );
    fx.server.stop().await;
}

#[tokio::test]
async fn a_change_through_one_process_reaches_a_watcher_on_another() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    let (registry, _) = crate::test_jobs::registry();
    let other = TestServer::start_with(test_settings(&fx.server.database_url), registry).await;
    let mut stream = watch(&other.channel, &fx.config_id, 0).await;
    let _snapshot = stream.message().await.unwrap().unwrap();
    fx.process(DATE, vec![]).await;
    let events = read_until(&mut stream, execution_completed).await;
    assert!(events.iter().any(|e| matches!(&e.kind, Some(Kind::ActionTaken(a)) if a.action.as_ref().unwrap().actor == "ops@aria")));
    other.stop().await;
    fx.server.stop().await;
}

#[tokio::test]
async fn a_slow_watcher_does_not_delay_a_fast_one() {
    let fx = setup(&[("ITEMS_120", false), ("ITEMS_75", false)]).await;
    // The slow watcher opens its stream and reads nothing for now.
    let mut slow = watch(&fx.server.channel, &fx.config_id, 0).await;
    let mut fast = watch(&fx.server.channel, &fx.config_id, 0).await;
    let _ = fast.message().await.unwrap();
    fx.process(DATE, vec![]).await;
    let fast_events = read_until(&mut fast, execution_completed).await;
    assert!(fast_events.len() > 5);
    // The slow one still gets every status change, in order, afterwards.
    let slow_events = read_until(&mut slow, execution_completed).await;
    let statuses = |xs: &[pb::WatchEvent]| xs.iter().filter_map(describe).collect::<Vec<_>>();
    assert_eq!(statuses(&slow_events), statuses(&fast_events));
    fx.server.stop().await;
}

#[tokio::test]
async fn a_position_older_than_the_retained_events_is_told_to_resync() {
    let fx = setup(&[("EMPTY", false)]).await;
    // A snapshot shows finished executions of the last days only: use today.
    let today = chrono::Utc::now().date_naive().to_string();
    fx.process(&today, vec![]).await;
    fx.wait_for(&today, crate::executions::finished).await;
    let (db, conn) = tokio_postgres::connect(&fx.server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.execute("DELETE FROM execution_events WHERE sequence <= 3", &[])
        .await
        .unwrap();
    let mut stream = watch(&fx.server.channel, &fx.config_id, 1).await;
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.kind, Some(Kind::ResyncRequired(r)) if r.oldest_retained_sequence == 4));
    let second = stream.message().await.unwrap().unwrap();
    let Some(Kind::Snapshot(snapshot)) = second.kind else {
        panic!("snapshot follows")
    };
    assert_eq!(snapshot.executions.len(), 1);
    assert_eq!(snapshot.executions[0].status, pb::Status::Completed as i32);
    fx.server.stop().await;
}

#[tokio::test]
async fn an_open_stream_does_not_hold_up_shutdown() {
    let fx = setup(&[("EMPTY", false)]).await;
    let mut stream = watch(&fx.server.channel, &fx.config_id, 0).await;
    let _ = stream.message().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), fx.server.stop())
        .await
        .expect("shutdown completes with a stream open");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("stream ends");
    assert!(!matches!(end, Ok(Some(_))), "no more events after shutdown");
}

#[tokio::test]
async fn resuming_after_a_sequence_never_written_is_out_of_range() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    let client =
        || pb::execution_service_client::ExecutionServiceClient::new(fx.server.channel.clone());
    let request = |after: u64| pb::WatchExecutionsRequest {
        client_id: "acme".into(),
        config_id: fx.config_id.clone(),
        business_date: String::new(),
        after_sequence: after,
    };
    // No event yet: any position is beyond the latest (0).
    let refused = client().watch_executions(request(5)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    use tonic_types::StatusExt;
    let violation = &refused.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "after_sequence");

    fx.process(DATE, vec![]).await;
    let mut stream = watch(&fx.server.channel, &fx.config_id, 0).await;
    let events = read_until(&mut stream, execution_completed).await;
    let latest = events.last().unwrap().sequence;

    let refused = client()
        .watch_executions(request(latest + 1_000))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange);
    assert!(
        refused.message().contains(&latest.to_string()),
        "{refused:?}"
    );
    // Resuming at the latest sequence itself is fine: it waits for more.
    client().watch_executions(request(latest)).await.unwrap();
    fx.server.stop().await;
}
