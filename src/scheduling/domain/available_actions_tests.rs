//! Unit tests of the available actions: the document's button rules, and
//! agreement with what the state machine's actions accept.

use super::*;

/// The job at `n` (from 1).
fn at(n: u32) -> JobPosition {
    JobPosition::parse("position", n).unwrap()
}
use crate::scheduling::domain::execution::JobPhase;
use crate::scheduling::domain::JobPosition;

fn execution(jobs: usize) -> ExecutionState {
    ExecutionState::new(
        (1..=jobs as u32)
            .map(|p| JobState::new(at(p), format!("JOB{p}"), false))
            .collect(),
    )
}

fn settle(e: &mut ExecutionState, position: u32, processed: i64, errored: i64) {
    let job = &mut e.jobs[position as usize - 1];
    job.counts.processed += processed;
    job.counts.errored += errored;
    e.advance();
}

/// Job 1 completed, job 2 in ERROR, job 3 waiting behind it.
fn errored() -> ExecutionState {
    let mut e = execution(3);
    e.start();
    e.planned(at(1), 2).unwrap();
    settle(&mut e, 1, 2, 0);
    e.planned(at(2), 3).unwrap();
    settle(&mut e, 2, 2, 1);
    e
}

fn menu(a: &AvailableActions) -> Vec<(bool, bool, bool)> {
    a.jobs
        .iter()
        .map(|j| (j.process_action, j.retry, j.stats))
        .collect()
}

#[test]
fn without_an_execution_only_create_and_process() {
    let a = available_actions(None);
    assert_eq!(
        a.execution,
        ExecutionActions {
            create: true,
            process: true,
            ..Default::default()
        }
    );
    assert!(a.jobs.is_empty());
}

#[test]
fn a_created_execution_can_be_recreated_processed_and_reset_not_created() {
    let e = execution(2);
    let a = available_actions(Some(&e));
    assert_eq!(
        a.execution,
        ExecutionActions {
            create: false,
            recreate: true,
            process: true,
            reprocess: false,
            reset: true,
            reset_stops_work: false,
        }
    );
    assert_eq!(menu(&a), [(true, false, true), (true, false, true)]);
}

#[test]
fn a_started_execution_cannot_be_processed_or_recreated_and_reset_stops_its_work() {
    let mut e = execution(2);
    e.start();
    e.planned(at(1), 5).unwrap();
    let a = available_actions(Some(&e));
    assert!(!a.execution.create);
    assert!(!a.execution.process, "Process disabled once started");
    assert!(!a.execution.recreate, "Recreate only while never started");
    assert!(!a.execution.reprocess);
    assert!(a.execution.reset && a.execution.reset_stops_work);
    assert_eq!(a.job(at(1)).map(|j| j.process_action), Some(true));
    assert_eq!(a.job(at(3)), None);
}

#[test]
fn an_errored_job_offers_retry_and_the_execution_reprocess() {
    let e = errored();
    let a = available_actions(Some(&e));
    assert!(a.execution.reprocess);
    assert!(!a.execution.process && !a.execution.recreate);
    assert!(a.execution.reset);
    assert!(!a.execution.reset_stops_work, "stopped on the error");
    assert_eq!(
        menu(&a),
        [
            // COMPLETED: neither Process Action nor Retry.
            (false, false, true),
            // ERROR: Retry only.
            (false, true, true),
            // PENDING behind the error: Process Action.
            (true, false, true),
        ]
    );
}

#[test]
fn nothing_is_retried_while_a_reset_cancels_the_work() {
    let mut e = errored();
    e.cancel();
    let a = available_actions(Some(&e));
    assert!(!a.execution.reprocess);
    assert!(a.jobs.iter().all(|j| !j.retry));
}

#[test]
fn a_completed_execution_offers_reset_and_stats_only() {
    let mut e = execution(1);
    e.start();
    e.planned(at(1), 0).unwrap();
    assert_eq!(e.status, Status::Completed);
    let a = available_actions(Some(&e));
    assert_eq!(
        a.execution,
        ExecutionActions {
            reset: true,
            ..Default::default()
        }
    );
    assert_eq!(menu(&a), [(false, false, true)]);
}

#[test]
fn a_missed_run_can_still_be_processed() {
    let mut e = execution(1);
    e.mark_missed();
    let a = available_actions(Some(&e));
    assert!(a.execution.process && a.execution.recreate);
}

/// A small deterministic generator, so the walk below is the same on
/// every run.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// One random transition of the state machine.
fn step(e: &mut ExecutionState, steps: &mut Steps) {
    let jobs = e.jobs.len() as u64;
    let position = steps.next(jobs) as u32 + 1;
    match steps.next(10) {
        0 => {
            e.start();
        }
        1 | 2 => {
            if e.jobs[position as usize - 1].phase == JobPhase::Planning {
                let total = steps.next(3) as i64;
                e.planned(at(position), total).unwrap();
            }
        }
        3 | 4 => {
            let job = &e.jobs[position as usize - 1];
            if job.phase == JobPhase::Running && job.counts.pending() > 0 {
                let errored = steps.next(2) as i64;
                settle(e, position, 1 - errored, errored);
            }
        }
        5 => {
            let _ = e.retry(at(position));
        }
        6 => {
            let _ = e.trigger(at(position));
        }
        7 => {
            e.hold_for_window(steps.next(2) == 0);
        }
        8 => {
            if steps.next(4) == 0 {
                e.cancel();
            } else if steps.next(4) == 0 {
                e.reset();
            }
        }
        _ => {
            if steps.next(3) == 0 {
                e.mark_missed();
            } else {
                e.designate_manual(&[at(position)]);
            }
        }
    }
}

/// Over thousands of states reached by the state machine itself, a button
/// is offered exactly when the action it stands for is accepted.
#[test]
fn every_offered_action_is_accepted_and_every_accepted_one_offered() {
    let mut steps = Steps(14);
    let mut seen_retry = false;
    let mut seen_reprocess = false;
    for _ in 0..200 {
        let mut e = execution(1 + steps.next(3) as usize);
        for _ in 0..40 {
            step(&mut e, &mut steps);
            let a = available_actions(Some(&e));
            assert!(!a.execution.create, "{e:?}");
            assert!(a.execution.reset, "{e:?}");
            assert_eq!(a.execution.process, e.clone().start(), "{e:?}");
            assert_eq!(a.execution.recreate, e.is_fresh(), "{e:?}");
            assert_eq!(a.execution.reset_stops_work, e.is_running(), "{e:?}");
            let reprocessable = e
                .first_errored_job()
                .is_some_and(|p| e.clone().retry(p).is_ok());
            assert_eq!(a.execution.reprocess, reprocessable, "{e:?}");
            assert_eq!(a.jobs.len(), e.jobs.len());
            for job in &a.jobs {
                let p = job.position;
                assert_eq!(job.process_action, e.clone().trigger(p).is_ok(), "{e:?}");
                assert_eq!(job.retry, e.clone().retry(p).is_ok(), "{e:?}");
                assert!(job.stats);
            }
            seen_retry |= a.jobs.iter().any(|j| j.retry);
            seen_reprocess |= a.execution.reprocess;
        }
    }
    assert!(
        seen_retry && seen_reprocess,
        "the walk reached errored jobs"
    );
}
