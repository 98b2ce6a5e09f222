//! Unit tests of the execution state machine.

use super::*;

/// The job at `n` (from 1).
fn at(n: u32) -> JobPosition {
    JobPosition::parse("position", n).unwrap()
}

fn execution(manual: &[bool]) -> ExecutionState {
    ExecutionState::new(
        manual
            .iter()
            .enumerate()
            .map(|(i, m)| JobState::new(at(i as u32 + 1), format!("JOB{}", i + 1), *m))
            .collect(),
    )
}

fn phases(e: &ExecutionState) -> Vec<JobPhase> {
    e.jobs.iter().map(|j| j.phase).collect()
}

fn settle(e: &mut ExecutionState, position: u32, processed: i64, errored: i64) {
    let job = &mut e.jobs[position as usize - 1];
    job.counts.processed += processed;
    job.counts.errored += errored;
    e.advance();
}

#[test]
fn jobs_run_in_order_to_completion() {
    let mut e = execution(&[false, false]);
    assert!(e.start());
    assert!(!e.start(), "starting twice changes nothing");
    assert_eq!(phases(&e), [JobPhase::Planning, JobPhase::Waiting]);
    e.planned(at(1), 3).unwrap();
    assert_eq!(e.phase, ExecutionPhase::Running);
    settle(&mut e, 1, 3, 0);
    assert_eq!(e.jobs[0].status, Status::Completed);
    assert_eq!(phases(&e), [JobPhase::Done, JobPhase::Planning]);
    e.planned(at(2), 2).unwrap();
    settle(&mut e, 2, 2, 0);
    assert_eq!(
        (e.status, e.phase),
        (Status::Completed, ExecutionPhase::Done)
    );
}

#[test]
fn zero_items_complete_at_once() {
    let mut e = execution(&[false, false]);
    e.start();
    e.planned(at(1), 0).unwrap();
    assert_eq!(e.jobs[0].status, Status::Completed);
    e.planned(at(2), 0).unwrap();
    assert_eq!(e.status, Status::Completed);
}

#[test]
fn an_errored_job_stops_the_rest_and_retry_continues() {
    let mut e = execution(&[false, false]);
    e.start();
    e.planned(at(1), 4).unwrap();
    settle(&mut e, 1, 3, 1);
    assert_eq!(
        (e.status, e.phase),
        (Status::Error, ExecutionPhase::StoppedOnError)
    );
    assert_eq!(e.jobs[0].status, Status::Error);
    assert_eq!(e.jobs[1].phase, JobPhase::Waiting);
    assert_eq!(e.first_errored_job(), Some(at(1)));

    assert!(e.retry(at(2)).is_err(), "a PENDING job cannot be retried");
    e.retry(at(1)).unwrap();
    assert_eq!(
        (e.status, e.phase),
        (Status::Pending, ExecutionPhase::Running)
    );
    assert_eq!(e.jobs[0].counts.pending(), 1);
    settle(&mut e, 1, 1, 0);
    assert_eq!(e.jobs[0].status, Status::Completed);
    assert_eq!(e.jobs[1].phase, JobPhase::Planning);
}

#[test]
fn a_manual_job_waits_for_its_trigger() {
    let mut e = execution(&[false, true]);
    e.start();
    e.planned(at(1), 0).unwrap();
    assert_eq!(e.phase, ExecutionPhase::AwaitingTrigger);
    assert_eq!(e.jobs[1].phase, JobPhase::AwaitingTrigger);
    assert_eq!(e.jobs[1].status, Status::Pending);
    assert!(e.trigger(at(2)).unwrap());
    assert_eq!(e.jobs[1].phase, JobPhase::Planning);
    assert!(
        !e.trigger(at(2)).unwrap(),
        "a second trigger changes nothing"
    );
    e.planned(at(2), 0).unwrap();
    assert_eq!(e.status, Status::Completed);
    let done = e.trigger(at(2)).unwrap_err();
    assert!(matches!(
        done,
        Error::FailedPrecondition {
            reason: "JOB_COMPLETED",
            ..
        }
    ));
}

#[test]
fn a_manual_job_released_early_does_not_pause() {
    let mut e = execution(&[false, true]);
    assert!(e.trigger(at(2)).unwrap());
    e.start();
    e.planned(at(1), 0).unwrap();
    assert_eq!(e.jobs[1].phase, JobPhase::Planning);
}

#[test]
fn reset_returns_to_fresh() {
    let mut e = execution(&[false, true]);
    e.start();
    e.planned(at(1), 2).unwrap();
    settle(&mut e, 1, 1, 1);
    e.reset();
    assert!(e.is_fresh());
    assert_eq!(e, execution(&[false, true]));
}

#[test]
fn cancel_stops_the_active_job() {
    let mut e = execution(&[false]);
    e.start();
    e.planned(at(1), 10).unwrap();
    assert!(e.is_running());
    e.cancel();
    assert_eq!(e.phase, ExecutionPhase::Cancelling);
    assert_eq!(e.jobs[0].phase, JobPhase::Waiting);
    e.advance();
    assert_eq!(
        e.phase,
        ExecutionPhase::Cancelling,
        "advance leaves a cancelling execution"
    );
}

#[test]
fn the_exception_window_holds_and_releases() {
    let mut e = execution(&[false]);
    e.start();
    e.planned(at(1), 10).unwrap();
    assert!(e.hold_for_window(true));
    assert_eq!(e.phase, ExecutionPhase::PausedByWindow);
    assert_eq!(e.jobs[0].phase, JobPhase::PausedByWindow);
    assert!(!e.hold_for_window(true));
    assert!(e.hold_for_window(false));
    assert_eq!(e.phase, ExecutionPhase::Running);
    assert_eq!(e.jobs[0].phase, JobPhase::Running);
}

#[test]
fn unknown_positions_name_the_field() {
    let mut e = execution(&[false]);
    let err = e.trigger(at(5)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(ref v) if v[0].field == "position"));
}
