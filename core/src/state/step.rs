use std::fmt;

use super::NamedState;
use crate::error::TaskerError;

/// The 9 step states: the specification's 8 plus `waiting_for_retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    Pending,
    Enqueued,
    InProgress,
    /// A worker reported a result that orchestration has not applied yet. The embedded worker
    /// applies results in the same transaction that receives them, so today this state is only
    /// reachable through the table (reserved for a decoupled result queue).
    EnqueuedForOrchestration,
    WaitingForRetry,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

/// What happened to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepTrigger {
    /// Dependencies are satisfied (or a retry is due): put a message on the step's queue.
    Enqueue,
    /// A worker claimed the step and an attempt begins.
    Claim,
    /// A claim is given back without a result: an unstarted claim released at shutdown, or a
    /// lease that expired because the worker died.
    Release,
    /// A worker reported a result for later processing.
    SubmitResult,
    Succeed,
    /// The attempt failed and another one is allowed.
    ScheduleRetry,
    /// The attempt failed for good (permanent error or attempts exhausted).
    Fail,
    Cancel,
    ResolveManually,
    /// An operator sends the step back to `pending` with a fresh retry budget.
    Reset,
    /// An operator completes the step with a result of their own.
    CompleteManually,
}

impl StepTrigger {
    pub const ALL: &'static [StepTrigger] = &[
        StepTrigger::Enqueue,
        StepTrigger::Claim,
        StepTrigger::Release,
        StepTrigger::SubmitResult,
        StepTrigger::Succeed,
        StepTrigger::ScheduleRetry,
        StepTrigger::Fail,
        StepTrigger::Cancel,
        StepTrigger::ResolveManually,
        StepTrigger::Reset,
        StepTrigger::CompleteManually,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepTrigger::Enqueue => "enqueue",
            StepTrigger::Claim => "claim",
            StepTrigger::Release => "release",
            StepTrigger::SubmitResult => "submit_result",
            StepTrigger::Succeed => "succeed",
            StepTrigger::ScheduleRetry => "schedule_retry",
            StepTrigger::Fail => "fail",
            StepTrigger::Cancel => "cancel",
            StepTrigger::ResolveManually => "resolve_manually",
            StepTrigger::Reset => "reset",
            StepTrigger::CompleteManually => "complete_manually",
        }
    }
}

impl StepState {
    /// The state's database/API name (same as [`NamedState::as_str`], without the import).
    pub fn as_str(self) -> &'static str {
        NamedState::as_str(self)
    }

    /// `complete`, `error`, `cancelled` and `resolved_manually` end a step's run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Complete | StepState::Error | StepState::Cancelled | StepState::ResolvedManually
        )
    }

    /// Only these satisfy a dependency.
    pub fn satisfies_dependency(self) -> bool {
        matches!(self, StepState::Complete | StepState::ResolvedManually)
    }

    /// The transition table. Returns the target state, or `None` if `trigger` is illegal here.
    pub fn next(self, trigger: StepTrigger) -> Option<StepState> {
        use StepState as S;
        use StepTrigger as T;
        match (self, trigger) {
            (S::Pending | S::WaitingForRetry, T::Enqueue) => Some(S::Enqueued),
            (S::Enqueued, T::Claim) => Some(S::InProgress),
            (S::InProgress, T::Release) => Some(S::Enqueued),
            (S::InProgress, T::SubmitResult) => Some(S::EnqueuedForOrchestration),
            (S::InProgress | S::EnqueuedForOrchestration, T::Succeed) => Some(S::Complete),
            (S::InProgress | S::EnqueuedForOrchestration, T::ScheduleRetry) => Some(S::WaitingForRetry),
            (S::InProgress | S::EnqueuedForOrchestration, T::Fail) => Some(S::Error),
            (
                S::Pending | S::Enqueued | S::InProgress | S::EnqueuedForOrchestration | S::WaitingForRetry,
                T::Cancel,
            ) => Some(S::Cancelled),
            (
                S::Pending | S::Enqueued | S::InProgress | S::EnqueuedForOrchestration | S::WaitingForRetry | S::Error,
                T::ResolveManually,
            ) => Some(S::ResolvedManually),
            (
                S::Pending | S::Enqueued | S::InProgress | S::EnqueuedForOrchestration | S::WaitingForRetry | S::Error,
                T::CompleteManually,
            ) => Some(S::Complete),
            (S::Error | S::WaitingForRetry | S::Enqueued, T::Reset) => Some(S::Pending),
            _ => None,
        }
    }

    /// Like [`StepState::next`], as an error for callers that need one.
    pub fn apply(self, trigger: StepTrigger) -> Result<StepState, TaskerError> {
        self.next(trigger).ok_or(TaskerError::IllegalStepTransition {
            from: self,
            event: trigger.as_str().to_owned(),
        })
    }
}

impl NamedState for StepState {
    const ALL: &'static [StepState] = &[
        StepState::Pending,
        StepState::Enqueued,
        StepState::InProgress,
        StepState::EnqueuedForOrchestration,
        StepState::WaitingForRetry,
        StepState::Complete,
        StepState::Error,
        StepState::Cancelled,
        StepState::ResolvedManually,
    ];

    fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Enqueued => "enqueued",
            StepState::InProgress => "in_progress",
            StepState::EnqueuedForOrchestration => "enqueued_for_orchestration",
            StepState::WaitingForRetry => "waiting_for_retry",
            StepState::Complete => "complete",
            StepState::Error => "error",
            StepState::Cancelled => "cancelled",
            StepState::ResolvedManually => "resolved_manually",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
