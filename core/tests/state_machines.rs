//! Every (state, trigger) pair of both state machines against tables written out here,
//! independently of the implementation.

use std::collections::HashMap;

use tasker_core::error::TaskerError;
use tasker_core::state::{NamedState, StepState, StepTrigger, TaskState, TaskTrigger};

/// The legal task transitions; every other pair must be refused.
fn task_table() -> HashMap<(TaskState, TaskTrigger), TaskState> {
    use TaskState as S;
    use TaskTrigger as T;
    let mut legal = vec![
        (S::Pending, T::Start, S::Initializing),
        (S::Initializing, T::Initialized, S::EnqueuingSteps),
        (S::Initializing, T::Fail, S::Error),
        (S::EnqueuingSteps, T::StepsEnqueued, S::StepsInProcess),
        (S::EnqueuingSteps, T::Fail, S::Error),
        (S::StepsInProcess, T::EvaluateResults, S::EvaluatingResults),
        (S::WaitingForDependencies, T::EvaluateResults, S::EvaluatingResults),
        (S::WaitingForRetry, T::EvaluateResults, S::EvaluatingResults),
        (S::WaitingForRetry, T::EnqueueReadySteps, S::EnqueuingSteps),
        (S::EvaluatingResults, T::EnqueueReadySteps, S::EnqueuingSteps),
        (S::EvaluatingResults, T::AwaitDependencies, S::WaitingForDependencies),
        (S::EvaluatingResults, T::AwaitRetry, S::WaitingForRetry),
        (S::EvaluatingResults, T::AllStepsComplete, S::Complete),
        (S::EvaluatingResults, T::Block, S::BlockedByFailures),
        (S::BlockedByFailures, T::Fail, S::Error),
        // Operators re-open a failed task, or close it by hand.
        (S::Error, T::Reopen, S::EnqueuingSteps),
        (S::BlockedByFailures, T::Reopen, S::EnqueuingSteps),
        (S::Error, T::ResolveManually, S::ResolvedManually),
    ];
    // Any non-terminal task can be cancelled or resolved by hand.
    for from in [
        S::Pending,
        S::Initializing,
        S::EnqueuingSteps,
        S::StepsInProcess,
        S::EvaluatingResults,
        S::WaitingForDependencies,
        S::WaitingForRetry,
        S::BlockedByFailures,
    ] {
        legal.push((from, T::Cancel, S::Cancelled));
        legal.push((from, T::ResolveManually, S::ResolvedManually));
    }
    to_map(legal)
}

/// The legal step transitions; every other pair must be refused.
fn step_table() -> HashMap<(StepState, StepTrigger), StepState> {
    use StepState as S;
    use StepTrigger as T;
    let mut legal = vec![
        (S::Pending, T::Enqueue, S::Enqueued),
        (S::WaitingForRetry, T::Enqueue, S::Enqueued),
        (S::Enqueued, T::Claim, S::InProgress),
        (S::InProgress, T::Release, S::Enqueued),
        (S::InProgress, T::SubmitResult, S::EnqueuedForOrchestration),
        (S::InProgress, T::Succeed, S::Complete),
        (S::InProgress, T::ScheduleRetry, S::WaitingForRetry),
        (S::InProgress, T::Fail, S::Error),
        (S::EnqueuedForOrchestration, T::Succeed, S::Complete),
        (S::EnqueuedForOrchestration, T::ScheduleRetry, S::WaitingForRetry),
        (S::EnqueuedForOrchestration, T::Fail, S::Error),
        // An errored step may still be resolved, completed or reset by an operator.
        (S::Error, T::ResolveManually, S::ResolvedManually),
        (S::Error, T::CompleteManually, S::Complete),
        (S::Error, T::Reset, S::Pending),
        (S::WaitingForRetry, T::Reset, S::Pending),
        (S::Enqueued, T::Reset, S::Pending),
    ];
    for from in [
        S::Pending,
        S::Enqueued,
        S::InProgress,
        S::EnqueuedForOrchestration,
        S::WaitingForRetry,
    ] {
        legal.push((from, T::Cancel, S::Cancelled));
        legal.push((from, T::ResolveManually, S::ResolvedManually));
        legal.push((from, T::CompleteManually, S::Complete));
    }
    to_map(legal)
}

fn to_map<S, T>(legal: Vec<(S, T, S)>) -> HashMap<(S, T), S>
where
    S: std::hash::Hash + Eq + Copy + std::fmt::Debug,
    T: std::hash::Hash + Eq + Copy + std::fmt::Debug,
{
    let mut map = HashMap::new();
    for (from, trigger, to) in legal {
        assert!(
            map.insert((from, trigger), to).is_none(),
            "({from:?}, {trigger:?}) listed twice in the expected table"
        );
    }
    map
}

#[test]
fn task_transitions_match_the_table_exactly() {
    let table = task_table();
    assert_eq!(table.len(), 34);
    let mut checked = 0;
    for &state in TaskState::ALL {
        for &trigger in TaskTrigger::ALL {
            checked += 1;
            let expected = table.get(&(state, trigger)).copied();
            assert_eq!(state.next(trigger), expected, "task {state} + {}", trigger.as_str());
            match (state.apply(trigger), expected) {
                (Ok(to), Some(want)) => assert_eq!(to, want),
                (Err(TaskerError::IllegalTaskTransition { from, event }), None) => {
                    assert_eq!(from, state);
                    assert_eq!(event, trigger.as_str());
                }
                (other, _) => panic!("task {state} + {}: {other:?}", trigger.as_str()),
            }
        }
    }
    assert_eq!(checked, 12 * 13);
}

#[test]
fn step_transitions_match_the_table_exactly() {
    let table = step_table();
    assert_eq!(table.len(), 31);
    let mut checked = 0;
    for &state in StepState::ALL {
        for &trigger in StepTrigger::ALL {
            checked += 1;
            let expected = table.get(&(state, trigger)).copied();
            assert_eq!(state.next(trigger), expected, "step {state} + {}", trigger.as_str());
            match (state.apply(trigger), expected) {
                (Ok(to), Some(want)) => assert_eq!(to, want),
                (Err(TaskerError::IllegalStepTransition { from, event }), None) => {
                    assert_eq!(from, state);
                    assert_eq!(event, trigger.as_str());
                }
                (other, _) => panic!("step {state} + {}: {other:?}", trigger.as_str()),
            }
        }
    }
    assert_eq!(checked, 9 * 11);
}

#[test]
fn illegal_transition_errors_read_well() {
    let err = TaskState::Complete.apply(TaskTrigger::Start).expect_err("illegal");
    assert_eq!(err.to_string(), "illegal task transition: start from complete");
    assert_eq!(err.code(), "illegal_transition");
    let err = StepState::Pending.apply(StepTrigger::Succeed).expect_err("illegal");
    assert_eq!(err.to_string(), "illegal step transition: succeed from pending");
    assert_eq!(err.code(), "illegal_transition");
}

#[test]
fn terminal_states() {
    use StepState as S;
    use TaskState as T;
    let task_terminal: Vec<TaskState> = TaskState::ALL.iter().copied().filter(|s| s.is_terminal()).collect();
    assert_eq!(
        task_terminal,
        vec![T::Complete, T::Error, T::Cancelled, T::ResolvedManually]
    );
    for &state in &task_terminal {
        for &trigger in TaskTrigger::ALL {
            // The exceptions: an operator may re-open or resolve a failed task.
            if state == T::Error && matches!(trigger, TaskTrigger::Reopen | TaskTrigger::ResolveManually) {
                continue;
            }
            assert_eq!(state.next(trigger), None, "terminal task {state} accepted {trigger:?}");
        }
    }

    let step_terminal: Vec<StepState> = StepState::ALL.iter().copied().filter(|s| s.is_terminal()).collect();
    assert_eq!(
        step_terminal,
        vec![S::Complete, S::Error, S::Cancelled, S::ResolvedManually]
    );
    for &state in &step_terminal {
        for &trigger in StepTrigger::ALL {
            // The exceptions: an operator may resolve, complete or reset an errored step.
            if state == S::Error
                && matches!(
                    trigger,
                    StepTrigger::ResolveManually | StepTrigger::CompleteManually | StepTrigger::Reset
                )
            {
                continue;
            }
            assert_eq!(state.next(trigger), None, "terminal step {state} accepted {trigger:?}");
        }
    }
}

#[test]
fn every_non_terminal_state_can_be_cancelled() {
    for &state in TaskState::ALL.iter().filter(|s| !s.is_terminal()) {
        assert_eq!(state.next(TaskTrigger::Cancel), Some(TaskState::Cancelled));
    }
    for &state in StepState::ALL.iter().filter(|s| !s.is_terminal()) {
        assert_eq!(state.next(StepTrigger::Cancel), Some(StepState::Cancelled));
    }
}

#[test]
fn only_complete_and_resolved_satisfy_dependencies() {
    for &state in StepState::ALL {
        assert_eq!(
            state.satisfies_dependency(),
            matches!(state, StepState::Complete | StepState::ResolvedManually),
            "{state}"
        );
    }
}

#[test]
fn task_state_names_round_trip() {
    let expected = [
        "pending",
        "initializing",
        "enqueuing_steps",
        "steps_in_process",
        "evaluating_results",
        "waiting_for_dependencies",
        "waiting_for_retry",
        "blocked_by_failures",
        "complete",
        "error",
        "cancelled",
        "resolved_manually",
    ];
    let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, expected);
    for &state in TaskState::ALL {
        assert_eq!(TaskState::parse(state.as_str()), Some(state));
        assert_eq!(state.to_string(), state.as_str());
    }
    for bad in ["", "Pending", "PENDING", "done", "pending "] {
        assert_eq!(TaskState::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn step_state_names_round_trip() {
    let expected = [
        "pending",
        "enqueued",
        "in_progress",
        "enqueued_for_orchestration",
        "waiting_for_retry",
        "complete",
        "error",
        "cancelled",
        "resolved_manually",
    ];
    let names: Vec<&str> = StepState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, expected);
    for &state in StepState::ALL {
        assert_eq!(StepState::parse(state.as_str()), Some(state));
        assert_eq!(state.to_string(), state.as_str());
    }
    for bad in ["", "InProgress", "in-progress", "running"] {
        assert_eq!(StepState::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn trigger_names_are_distinct() {
    let task: std::collections::HashSet<&str> = TaskTrigger::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(task.len(), TaskTrigger::ALL.len());
    assert_eq!(TaskTrigger::ALL.len(), 13);
    let step: std::collections::HashSet<&str> = StepTrigger::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(step.len(), StepTrigger::ALL.len());
    assert_eq!(StepTrigger::ALL.len(), 11);
}

#[test]
fn happy_paths() {
    use StepTrigger as ST;
    use TaskTrigger as TT;
    let mut task = TaskState::Pending;
    for trigger in [
        TT::Start,
        TT::Initialized,
        TT::StepsEnqueued,
        TT::EvaluateResults,
        TT::AwaitRetry,
        TT::EnqueueReadySteps,
        TT::StepsEnqueued,
        TT::EvaluateResults,
        TT::AllStepsComplete,
    ] {
        task = task.apply(trigger).expect("legal");
    }
    assert_eq!(task, TaskState::Complete);

    let mut step = StepState::Pending;
    for trigger in [
        ST::Enqueue,
        ST::Claim,
        ST::Release,
        ST::Claim,
        ST::ScheduleRetry,
        ST::Enqueue,
        ST::Claim,
        ST::SubmitResult,
        ST::Succeed,
    ] {
        step = step.apply(trigger).expect("legal");
    }
    assert_eq!(step, StepState::Complete);
}
