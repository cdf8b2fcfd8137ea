//! Recovering failed work (`NativeClient`, continued): operator actions on steps and tasks,
//! step details, the dead-letter queue, the staleness report and the registry of workers.
//!
//! Each method resolves to JSON of the core's value (`StepDetail`, `TaskSummary`, `DlqEntry`,
//! …), converted to camelCase records by `ts/records.ts` (`Client` methods in `ts/client.ts`).

use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use serde_json::Value;
use tasker_core::{DlqFilter, DlqReason, DlqStatus};

use crate::client::{parse_uuid, NativeClient};
use crate::error::{from_core, invalid_argument};
use crate::promise::{spawn, to_json};

/// `listDlq` filter, as the TypeScript layer sends it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListDlqArgs {
    status: Option<String>,
    reason: Option<String>,
    task_uuid: Option<String>,
    #[serde(default)]
    open_only: bool,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn parse_status(s: &str) -> napi::Result<DlqStatus> {
    DlqStatus::parse(s).ok_or_else(|| {
        invalid_argument(
            "status",
            format!(
                "'{s}' is not a DLQ status (one of {})",
                one_of(DlqStatus::ALL.iter().map(|s| s.as_str()))
            ),
        )
    })
}

fn parse_reason(s: &str) -> napi::Result<DlqReason> {
    DlqReason::parse(s).ok_or_else(|| {
        invalid_argument(
            "reason",
            format!(
                "'{s}' is not a DLQ reason (one of {})",
                one_of(DlqReason::ALL.iter().map(|r| r.as_str()))
            ),
        )
    })
}

impl ListDlqArgs {
    fn into_filter(self) -> napi::Result<DlqFilter> {
        if let Some(limit) = self.limit {
            if limit < 1 {
                return Err(invalid_argument("limit", format!("must be at least 1, got {limit}")));
            }
        }
        if let Some(offset) = self.offset {
            if offset < 0 {
                return Err(invalid_argument(
                    "offset",
                    format!("must not be negative, got {offset}"),
                ));
            }
        }
        Ok(DlqFilter {
            status: self.status.as_deref().map(parse_status).transpose()?,
            open_only: self.open_only,
            reason: self.reason.as_deref().map(parse_reason).transpose()?,
            task_uuid: self
                .task_uuid
                .as_deref()
                .map(|u| parse_uuid("taskUuid", u))
                .transpose()?,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

fn parse_json(what: &str, json: &str) -> napi::Result<Value> {
    serde_json::from_str(json).map_err(|e| invalid_argument(what, e))
}

/// A count parameter: a positive whole number (the TypeScript layer checks it first).
fn count(what: &str, n: u32) -> napi::Result<usize> {
    if n == 0 {
        return Err(invalid_argument(what, "must be at least 1, got 0"));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Which operator action on a step.
#[derive(Clone, Copy)]
enum StepAction {
    Reset,
    Resolve,
    Cancel,
}

impl NativeClient {
    fn step_action<'e>(
        &self,
        env: &'e Env,
        action: StepAction,
        task_uuid: String,
        step: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let detail = match action {
                StepAction::Reset => tasker.reset_step(uuid, &step, &by, &reason).await,
                StepAction::Resolve => tasker.resolve_step_manually(uuid, &step, &by, &reason).await,
                StepAction::Cancel => tasker.cancel_step(uuid, &step, &by, &reason).await,
            };
            to_json(&detail.map_err(from_core)?)
        })
    }
}

#[napi]
impl NativeClient {
    /// Sends an `error` (or stuck `waiting_for_retry` / `enqueued`) step back to `pending`;
    /// resolves to JSON of its `StepDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn reset_step<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        step: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        self.step_action(env, StepAction::Reset, task_uuid, step, by, reason)
    }

    /// Marks a step `resolved_manually`; resolves to JSON of its `StepDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn resolve_step_manually<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        step: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        self.step_action(env, StepAction::Resolve, task_uuid, step, by, reason)
    }

    /// Completes a step with the operator's result (JSON) and audit metadata (JSON); resolves
    /// to JSON of its `StepDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn complete_step_manually<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        step: String,
        result_json: String,
        metadata_json: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let result = parse_json("result", &result_json)?;
        let metadata = parse_json("metadata", &metadata_json)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let detail = tasker
                .complete_step_manually(uuid, &step, result, metadata, &by, &reason)
                .await
                .map_err(from_core)?;
            to_json(&detail)
        })
    }

    /// Cancels a step that has not finished (and the pending steps below it); resolves to JSON
    /// of its `StepDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn cancel_step<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        step: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        self.step_action(env, StepAction::Cancel, task_uuid, step, by, reason)
    }

    /// Resets every `error` step of an `error` task; resolves to JSON of its `TaskSummary`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn retry_task<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.retry_task(uuid, &by, &reason).await.map_err(from_core)?)
        })
    }

    /// Closes a task by hand (`resolved_manually`); resolves to JSON of its `TaskSummary`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn resolve_task<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        by: String,
        reason: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.resolve_task(uuid, &by, &reason).await.map_err(from_core)?)
        })
    }

    /// A step (by name or uuid); resolves to JSON of its `StepDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_step<'e>(&self, env: &'e Env, task_uuid: String, step: String) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.get_step(uuid, &step).await.map_err(from_core)?)
        })
    }

    /// Every step of a task; resolves to JSON of `StepDetail[]`, in template order.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_steps<'e>(&self, env: &'e Env, task_uuid: String) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.list_steps(uuid).await.map_err(from_core)?)
        })
    }

    /// DLQ entries matching a JSON filter, newest first; resolves to JSON of `DlqEntry[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_dlq<'e>(&self, env: &'e Env, filter_json: String) -> napi::Result<Object<'e>> {
        let args: ListDlqArgs = serde_json::from_str(&filter_json).map_err(|e| invalid_argument("listDlq", e))?;
        let filter = args.into_filter()?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.list_dlq(&filter).await.map_err(from_core)?)
        })
    }

    /// One DLQ entry; resolves to JSON of its `DlqEntry`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_dlq_entry<'e>(&self, env: &'e Env, entry_uuid: String) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("entryUuid", &entry_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.get_dlq_entry(uuid).await.map_err(from_core)?)
        })
    }

    /// Adds a note by `by` to a DLQ entry and, with `status`, moves it there; resolves to JSON
    /// of the `DlqEntry`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn update_dlq_entry<'e>(
        &self,
        env: &'e Env,
        entry_uuid: String,
        status: Option<String>,
        note: String,
        by: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("entryUuid", &entry_uuid)?;
        let status = status.as_deref().map(parse_status).transpose()?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(
                &tasker
                    .update_dlq_entry(uuid, status, &note, &by)
                    .await
                    .map_err(from_core)?,
            )
        })
    }

    /// Puts a task in the DLQ by hand (reason `manual`); resolves to JSON of the `DlqEntry`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn add_to_dlq<'e>(
        &self,
        env: &'e Env,
        task_uuid: String,
        by: String,
        note: String,
    ) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.add_to_dlq(uuid, &by, &note).await.map_err(from_core)?)
        })
    }

    /// Resolves to JSON of `DlqStats` (counts by reason and status).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn dlq_stats<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(
            env,
            async move { to_json(&tasker.dlq_stats().await.map_err(from_core)?) },
        )
    }

    /// The open DLQ entries, most urgent first; resolves to JSON of `QueuedDlqEntry[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn dlq_queue<'e>(&self, env: &'e Env, limit: u32) -> napi::Result<Object<'e>> {
        let limit = count("limit", limit)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.dlq_queue(limit).await.map_err(from_core)?)
        })
    }

    /// Unfinished tasks whose idle time reached `minRatio` of their threshold, most overdue
    /// first; resolves to JSON of `TaskHealth[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn staleness_report<'e>(&self, env: &'e Env, min_ratio: f64, limit: u32) -> napi::Result<Object<'e>> {
        if !min_ratio.is_finite() || min_ratio < 0.0 {
            return Err(invalid_argument(
                "minRatio",
                format!("must be a finite, non-negative number, got {min_ratio}"),
            ));
        }
        let limit = count("limit", limit)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.staleness_report(min_ratio, limit).await.map_err(from_core)?)
        })
    }

    /// Workers seen within the last hour, live ones first; resolves to JSON of `WorkerInfo[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_workers<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(
            env,
            async move { to_json(&tasker.list_workers().await.map_err(from_core)?) },
        )
    }
}
