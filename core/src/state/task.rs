use std::fmt;

use super::NamedState;
use crate::error::TaskerError;

/// The 12 task states. The last four are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Initializing,
    EnqueuingSteps,
    StepsInProcess,
    EvaluatingResults,
    WaitingForDependencies,
    WaitingForRetry,
    BlockedByFailures,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskTrigger {
    /// Creation began (`pending → initializing`).
    Start,
    /// Steps were created; root steps are about to be enqueued.
    Initialized,
    /// Ready steps are enqueued; execution is under way.
    StepsEnqueued,
    /// A step finished in a way that may change the task's outcome.
    EvaluateResults,
    /// Evaluation found newly ready steps to enqueue.
    EnqueueReadySteps,
    /// Evaluation found steps running, nothing new to enqueue.
    AwaitDependencies,
    /// Evaluation found only steps waiting for a retry.
    AwaitRetry,
    /// Every step is complete.
    AllStepsComplete,
    /// A step failed for good and nothing else can make progress.
    Block,
    /// The task is given up as failed.
    Fail,
    Cancel,
    ResolveManually,
    /// An operator action lets a failed task progress again.
    Reopen,
}

impl TaskTrigger {
    pub const ALL: &'static [TaskTrigger] = &[
        TaskTrigger::Start,
        TaskTrigger::Initialized,
        TaskTrigger::StepsEnqueued,
        TaskTrigger::EvaluateResults,
        TaskTrigger::EnqueueReadySteps,
        TaskTrigger::AwaitDependencies,
        TaskTrigger::AwaitRetry,
        TaskTrigger::AllStepsComplete,
        TaskTrigger::Block,
        TaskTrigger::Fail,
        TaskTrigger::Cancel,
        TaskTrigger::ResolveManually,
        TaskTrigger::Reopen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskTrigger::Start => "start",
            TaskTrigger::Initialized => "initialized",
            TaskTrigger::StepsEnqueued => "steps_enqueued",
            TaskTrigger::EvaluateResults => "evaluate_results",
            TaskTrigger::EnqueueReadySteps => "enqueue_ready_steps",
            TaskTrigger::AwaitDependencies => "await_dependencies",
            TaskTrigger::AwaitRetry => "await_retry",
            TaskTrigger::AllStepsComplete => "all_steps_complete",
            TaskTrigger::Block => "block",
            TaskTrigger::Fail => "fail",
            TaskTrigger::Cancel => "cancel",
            TaskTrigger::ResolveManually => "resolve_manually",
            TaskTrigger::Reopen => "reopen",
        }
    }
}

impl TaskState {
    /// The state's database/API name (same as [`NamedState::as_str`], without the import).
    pub fn as_str(self) -> &'static str {
        NamedState::as_str(self)
    }

    /// Terminal states accept no trigger.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Complete | TaskState::Error | TaskState::Cancelled | TaskState::ResolvedManually
        )
    }

    /// The transition table. Returns the target state, or `None` if `trigger` is illegal here.
    pub fn next(self, trigger: TaskTrigger) -> Option<TaskState> {
        use TaskState as S;
        use TaskTrigger as T;
        match (self, trigger) {
            // An operator re-opens a failed task (a step reset, resolved or completed by hand),
            // or closes it for good.
            (S::Error | S::BlockedByFailures, T::Reopen) => Some(S::EnqueuingSteps),
            (S::Error, T::ResolveManually) => Some(S::ResolvedManually),
            _ if self.is_terminal() => None,
            (_, T::Cancel) => Some(S::Cancelled),
            (_, T::ResolveManually) => Some(S::ResolvedManually),
            (S::Pending, T::Start) => Some(S::Initializing),
            (S::Initializing, T::Initialized) => Some(S::EnqueuingSteps),
            (S::Initializing | S::EnqueuingSteps, T::Fail) => Some(S::Error),
            (S::EnqueuingSteps, T::StepsEnqueued) => Some(S::StepsInProcess),
            (S::StepsInProcess | S::WaitingForDependencies | S::WaitingForRetry, T::EvaluateResults) => {
                Some(S::EvaluatingResults)
            }
            (S::EvaluatingResults | S::WaitingForRetry, T::EnqueueReadySteps) => Some(S::EnqueuingSteps),
            (S::EvaluatingResults, T::AwaitDependencies) => Some(S::WaitingForDependencies),
            (S::EvaluatingResults, T::AwaitRetry) => Some(S::WaitingForRetry),
            (S::EvaluatingResults, T::AllStepsComplete) => Some(S::Complete),
            (S::EvaluatingResults, T::Block) => Some(S::BlockedByFailures),
            (S::BlockedByFailures, T::Fail) => Some(S::Error),
            _ => None,
        }
    }

    /// Like [`TaskState::next`], as an error for callers that need one.
    pub fn apply(self, trigger: TaskTrigger) -> Result<TaskState, TaskerError> {
        self.next(trigger).ok_or(TaskerError::IllegalTaskTransition {
            from: self,
            event: trigger.as_str().to_owned(),
        })
    }
}

impl NamedState for TaskState {
    const ALL: &'static [TaskState] = &[
        TaskState::Pending,
        TaskState::Initializing,
        TaskState::EnqueuingSteps,
        TaskState::StepsInProcess,
        TaskState::EvaluatingResults,
        TaskState::WaitingForDependencies,
        TaskState::WaitingForRetry,
        TaskState::BlockedByFailures,
        TaskState::Complete,
        TaskState::Error,
        TaskState::Cancelled,
        TaskState::ResolvedManually,
    ];

    fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Initializing => "initializing",
            TaskState::EnqueuingSteps => "enqueuing_steps",
            TaskState::StepsInProcess => "steps_in_process",
            TaskState::EvaluatingResults => "evaluating_results",
            TaskState::WaitingForDependencies => "waiting_for_dependencies",
            TaskState::WaitingForRetry => "waiting_for_retry",
            TaskState::BlockedByFailures => "blocked_by_failures",
            TaskState::Complete => "complete",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::ResolvedManually => "resolved_manually",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
