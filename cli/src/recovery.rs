//! Recovering failed work from the command line: `tasker step …` (inspect a task's steps, reset,
//! resolve, complete or cancel one), `tasker task retry|resolve`, `tasker dlq …` (the dead-letter
//! queue and the staleness report) and `tasker worker list`.
//!
//! Every action records who (`--by`, default `$USER`, else `cli`) and why (`--reason`) in the
//! audit trail. Read commands print tables, or JSON with `--json`. A refused action exits 1 with
//! the engine's message, which names the current state and what is allowed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;
use tasker_core::{DlqFilter, DlqReason, DlqStatus, StepDetail, TaskSummary, Tasker, TaskerError};
use uuid::Uuid;

use crate::failure::{Context, Failure};
use crate::output;

#[derive(Subcommand)]
pub enum StepCommand {
    /// List a task's steps: state, attempts, whether their dependencies are met and whether the
    /// engine will run them again by itself.
    List {
        /// The task's uuid.
        task_uuid: Uuid,
        /// Print JSON (every step with its errors and history).
        #[arg(long)]
        json: bool,
    },
    /// Show one step: state, attempts, times, every attempt's error and its history.
    Get {
        /// The task's uuid.
        task_uuid: Uuid,
        /// The step's name or uuid.
        step: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send an `error` (or stuck `waiting_for_retry` / `enqueued`) step back to `pending` with
    /// fresh attempts; it runs again as soon as its dependencies allow, and a failed task
    /// re-opens.
    Reset(StepTarget),
    /// Mark a step `resolved_manually`: it counts as done, without a result, and the steps that
    /// depend on it run.
    Resolve(StepTarget),
    /// Complete a step with a result you give; the steps that depend on it receive it.
    Complete(CompleteArgs),
    /// Cancel a step that has not finished, and the pending steps below it.
    Cancel(StepTarget),
}

impl StepCommand {
    /// Whether the output (and so an error report) is JSON.
    pub fn json(&self) -> bool {
        match self {
            StepCommand::List { json, .. } | StepCommand::Get { json, .. } => *json,
            StepCommand::Reset(t) | StepCommand::Resolve(t) | StepCommand::Cancel(t) => t.op.json,
            StepCommand::Complete(c) => c.target.op.json,
        }
    }
}

#[derive(Args)]
pub struct StepTarget {
    /// The task's uuid.
    pub task_uuid: Uuid,
    /// The step's name or uuid.
    pub step: String,
    #[command(flatten)]
    pub op: Operator,
}

#[derive(Args)]
#[command(group(ArgGroup::new("result_source").required(true).args(["result", "result_file"])))]
pub struct CompleteArgs {
    /// The step's result, as JSON: what the steps that depend on it receive.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub result: Option<Value>,
    /// Read the result from a JSON file (`-` for stdin).
    #[arg(long, value_name = "PATH", value_parser = read_json_file)]
    pub result_file: Option<Value>,
    /// Metadata recorded with the completion in the audit trail, as JSON.
    #[arg(long, value_name = "JSON", value_parser = parse_json, default_value = "{}")]
    pub metadata: Value,
    #[command(flatten)]
    pub target: StepTarget,
}

/// Who acts and why, and how to report the outcome.
#[derive(Args)]
pub struct Operator {
    /// Who acts, recorded in the audit trail [default: $USER, else "cli"].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Why, recorded in the audit trail.
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    pub reason: String,
    /// Then wait up to this many seconds for the task to finish, and show it.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// Print the result as JSON (with --wait, the finished task).
    #[arg(long)]
    pub json: bool,
}

impl Operator {
    fn by(&self) -> String {
        operator_name(self.by.as_deref())
    }
}

/// `--by`, else `$USER`, else `cli`.
fn operator_name(by: Option<&str>) -> String {
    by.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

/// `tasker task retry` and `tasker task resolve`.
#[derive(Args)]
pub struct TaskAction {
    /// The task's uuid.
    pub task_uuid: Uuid,
    #[command(flatten)]
    pub op: Operator,
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List entries, newest first.
    List {
        /// Only entries with this investigation status.
        #[arg(long, value_parser = status_parser())]
        status: Option<DlqStatus>,
        /// Only open entries (pending or investigating).
        #[arg(long, conflicts_with = "status")]
        open: bool,
        /// Only entries with this reason.
        #[arg(long, value_parser = reason_parser())]
        reason: Option<DlqReason>,
        /// Only the entries of this task.
        #[arg(long = "task", value_name = "TASK_UUID")]
        task_uuid: Option<Uuid>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Skip this many (for paging).
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// Print JSON (snapshots and notes included).
        #[arg(long)]
        json: bool,
    },
    /// Show an entry: why the task is there, its steps when it entered, the investigation notes.
    Show {
        entry_uuid: Uuid,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add an investigation note, and with --status move the entry (closing it with
    /// manually_resolved, permanently_failed or cancelled).
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["status", "note"])))]
    Update {
        entry_uuid: Uuid,
        #[arg(long, value_parser = status_parser())]
        status: Option<DlqStatus>,
        /// The note (what was found, what was done).
        #[arg(long, visible_alias = "reason", value_name = "TEXT")]
        note: Option<String>,
        /// Who, recorded with the note [default: $USER, else "cli"].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Print the entry afterwards as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a task in the DLQ by hand (reason manual); the task itself is not changed.
    Add {
        /// The task's uuid.
        task_uuid: Uuid,
        /// Why it needs a human.
        #[arg(
            long,
            visible_alias = "reason",
            value_name = "TEXT",
            default_value = "",
            hide_default_value = true
        )]
        note: String,
        /// Who [default: $USER, else "cli"].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Print the entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Count entries by reason and status.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The open entries in investigation order (reason weight + hours waited + task priority).
    Queue {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unfinished tasks by how close they are to their staleness threshold: healthy (under 80 %),
    /// warning, stale (the detector puts them in the DLQ).
    Staleness {
        /// Only tasks at or over this fraction of their threshold (0.8: warning and stale).
        #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
        min_ratio: f64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl DlqCommand {
    /// Whether the output (and so an error report) is JSON.
    pub fn json(&self) -> bool {
        match self {
            DlqCommand::List { json, .. }
            | DlqCommand::Show { json, .. }
            | DlqCommand::Update { json, .. }
            | DlqCommand::Add { json, .. }
            | DlqCommand::Stats { json }
            | DlqCommand::Queue { json, .. }
            | DlqCommand::Staleness { json, .. } => *json,
        }
    }
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))
}

fn read_json_file(path: &str) -> Result<Value, String> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(PathBuf::from(path)).map_err(|e| format!("cannot read {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{path} is not valid JSON ({e})"))
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("a number of 0 or more (1.0: stale tasks only, 0.8: warning and stale)".into()),
    }
}

fn status_parser() -> impl TypedValueParser<Value = DlqStatus> {
    PossibleValuesParser::new(DlqStatus::ALL.iter().map(|s| s.as_str()))
        .map(|s| DlqStatus::parse(&s).unwrap_or(DlqStatus::Pending))
}

fn reason_parser() -> impl TypedValueParser<Value = DlqReason> {
    PossibleValuesParser::new(DlqReason::ALL.iter().map(|r| r.as_str()))
        .map(|r| DlqReason::parse(&r).unwrap_or(DlqReason::Manual))
}

/// The hint for an error of an action on (or a read of) `step` of `task_uuid`.
fn step_hint(task_uuid: Uuid, step: &str) -> impl FnOnce(&TaskerError) -> Option<String> + '_ {
    move |e| match e {
        TaskerError::InvalidState(_) => Some(format!(
            "`tasker step get {task_uuid} {step}` shows the step's state and history"
        )),
        _ => None,
    }
}

fn task_hint(task_uuid: Uuid) -> impl FnOnce(&TaskerError) -> Option<String> {
    move |e| match e {
        TaskerError::InvalidState(_) => Some(format!(
            "`tasker task get {task_uuid}` shows the task; `tasker step list {task_uuid}` its steps"
        )),
        _ => None,
    }
}

fn no_hint(_: &TaskerError) -> Option<String> {
    None
}

pub async fn step_command(tasker: &Tasker, cmd: StepCommand) -> Result<ExitCode, Failure> {
    match cmd {
        StepCommand::List { task_uuid, json } => {
            let steps = tasker.list_steps(task_uuid).await.context(json, no_hint)?;
            if json {
                output::print_json(&steps).context(json, no_hint)?;
            } else {
                output::print_step_list(&steps);
            }
        }
        StepCommand::Get { task_uuid, step, json } => {
            let detail = tasker.get_step(task_uuid, &step).await.context(json, no_hint)?;
            if json {
                output::print_json(&detail).context(json, no_hint)?;
            } else {
                output::print_step(task_uuid, &detail);
                print_next_actions(task_uuid, &detail);
            }
        }
        StepCommand::Reset(t) => {
            let by = t.op.by();
            let step = tasker.reset_step(t.task_uuid, &t.step, &by, &t.op.reason).await;
            after_step_action(tasker, &t, step, "reset").await?;
        }
        StepCommand::Resolve(t) => {
            let by = t.op.by();
            let step = tasker
                .resolve_step_manually(t.task_uuid, &t.step, &by, &t.op.reason)
                .await;
            after_step_action(tasker, &t, step, "resolved manually").await?;
        }
        StepCommand::Complete(args) => {
            let t = &args.target;
            let by = t.op.by();
            let result = args.result.or(args.result_file).unwrap_or(Value::Null);
            let step = tasker
                .complete_step_manually(t.task_uuid, &t.step, result, args.metadata, &by, &t.op.reason)
                .await;
            after_step_action(tasker, t, step, "completed manually").await?;
        }
        StepCommand::Cancel(t) => {
            let by = t.op.by();
            let step = tasker.cancel_step(t.task_uuid, &t.step, &by, &t.op.reason).await;
            after_step_action(tasker, &t, step, "cancelled").await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For a step that needs a human, the commands that would move it on.
fn print_next_actions(task_uuid: Uuid, detail: &StepDetail) {
    let name = &detail.step.name;
    match detail.step.state.as_str() {
        "error" => {
            println!("next:");
            println!("  tasker step reset {task_uuid} {name} --reason …     run it again (fix the cause first)");
            println!("  tasker step complete {task_uuid} {name} --result '<json>' --reason …");
            println!("  tasker step resolve {task_uuid} {name} --reason …   count it done without a result");
        }
        "waiting_for_retry" => {
            println!(
                "next: it runs again by itself; `tasker step reset {task_uuid} {name}` runs it now with fresh attempts"
            );
        }
        _ => {}
    }
}

/// Reports an action on a step: the step and the task afterwards (or, with `--wait`, the
/// finished task).
async fn after_step_action(
    tasker: &Tasker,
    t: &StepTarget,
    step: Result<StepDetail, TaskerError>,
    done: &str,
) -> Result<(), Failure> {
    let json = t.op.json;
    let step = step.context(json, step_hint(t.task_uuid, &t.step))?;
    if let Some(secs) = t.op.wait {
        return wait_and_show(tasker, t.task_uuid, secs, json).await;
    }
    if json {
        return output::print_json(&step).context(json, no_hint);
    }
    let task = tasker.task_summary(t.task_uuid).await.context(json, no_hint)?;
    let s = &step.step;
    println!(
        "step '{}' {done}: now {} (attempts {}/{})",
        s.name, s.state, s.attempts, s.max_attempts
    );
    print_task_line(&task);
    Ok(())
}

fn print_task_line(task: &TaskSummary) {
    println!(
        "task {} is {} ({}/{} steps complete)",
        task.task_uuid, task.state, task.completed_steps, task.total_steps
    );
}

async fn wait_and_show(tasker: &Tasker, task_uuid: Uuid, secs: u64, json: bool) -> Result<(), Failure> {
    let detail = tasker
        .wait_for_task(task_uuid, Duration::from_secs(secs))
        .await
        .context(json, |e| match e {
            TaskerError::Timeout(_) => Some(format!(
                "the action was applied; the task has not finished yet: `tasker task get {task_uuid}`"
            )),
            _ => None,
        })?;
    if json {
        output::print_json(&detail).context(json, no_hint)
    } else {
        output::print_task(&detail);
        Ok(())
    }
}

pub async fn task_retry(tasker: &Tasker, a: TaskAction) -> Result<ExitCode, Failure> {
    let by = a.op.by();
    let task = tasker
        .retry_task(a.task_uuid, &by, &a.op.reason)
        .await
        .context(a.op.json, task_hint(a.task_uuid))?;
    after_task_action(tasker, &a, &task, "retried: its failed steps were reset").await
}

pub async fn task_resolve(tasker: &Tasker, a: TaskAction) -> Result<ExitCode, Failure> {
    let by = a.op.by();
    let task = tasker
        .resolve_task(a.task_uuid, &by, &a.op.reason)
        .await
        .context(a.op.json, task_hint(a.task_uuid))?;
    after_task_action(tasker, &a, &task, "resolved manually").await
}

async fn after_task_action(
    tasker: &Tasker,
    a: &TaskAction,
    task: &TaskSummary,
    done: &str,
) -> Result<ExitCode, Failure> {
    let json = a.op.json;
    if let Some(secs) = a.op.wait {
        wait_and_show(tasker, a.task_uuid, secs, json).await?;
    } else if json {
        output::print_json(task).context(json, no_hint)?;
    } else {
        println!("task {} {done}", task.task_uuid);
        print_task_line(task);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_command(tasker: &Tasker, cmd: DlqCommand) -> Result<ExitCode, Failure> {
    match cmd {
        DlqCommand::List {
            status,
            open,
            reason,
            task_uuid,
            limit,
            offset,
            json,
        } => {
            let entries = tasker
                .list_dlq(&DlqFilter {
                    status,
                    open_only: open,
                    reason,
                    task_uuid,
                    limit: Some(limit),
                    offset: Some(offset),
                })
                .await
                .context(json, no_hint)?;
            if json {
                output::print_json(&entries).context(json, no_hint)?;
            } else {
                output::print_dlq_list(&entries);
            }
        }
        DlqCommand::Show { entry_uuid, json } => {
            let entry = tasker.get_dlq_entry(entry_uuid).await.context(json, no_hint)?;
            if json {
                output::print_json(&entry).context(json, no_hint)?;
            } else {
                output::print_dlq_entry(&entry);
                let next_status = match DlqStatus::parse(&entry.status) {
                    Some(DlqStatus::Pending) => Some("investigating"),
                    Some(DlqStatus::Investigating) => Some("manually_resolved|permanently_failed|cancelled"),
                    _ => None,
                };
                if let Some(next_status) = next_status {
                    println!("next:");
                    println!("  tasker step list {}   (the task's steps now)", entry.task_uuid);
                    println!(
                        "  tasker dlq update {} --status {next_status} --note …",
                        entry.entry_uuid
                    );
                }
            }
        }
        DlqCommand::Update {
            entry_uuid,
            status,
            note,
            by,
            json,
        } => {
            let by = operator_name(by.as_deref());
            let entry = tasker
                .update_dlq_entry(entry_uuid, status, note.as_deref().unwrap_or(""), &by)
                .await
                .context(json, |e| match e {
                    TaskerError::InvalidState(_) => {
                        Some("`tasker dlq list --open --task <task-uuid>` shows the task's open entry".into())
                    }
                    _ => None,
                })?;
            if json {
                output::print_json(&entry).context(json, no_hint)?;
            } else {
                let notes = entry.notes.len();
                println!(
                    "DLQ entry {} is {} ({notes} note{})",
                    entry.entry_uuid,
                    entry.status,
                    if notes == 1 { "" } else { "s" }
                );
            }
        }
        DlqCommand::Add {
            task_uuid,
            note,
            by,
            json,
        } => {
            let by = operator_name(by.as_deref());
            let entry = tasker
                .add_to_dlq(task_uuid, &by, &note)
                .await
                .context(json, |e| match e {
                    TaskerError::InvalidState(_) => Some(format!(
                        "`tasker dlq list --open --task {task_uuid}` shows it; add a note with `tasker dlq update`"
                    )),
                    _ => None,
                })?;
            if json {
                output::print_json(&entry).context(json, no_hint)?;
            } else {
                println!("{}", entry.entry_uuid);
            }
        }
        DlqCommand::Stats { json } => {
            let stats = tasker.dlq_stats().await.context(json, no_hint)?;
            if json {
                output::print_json(&stats).context(json, no_hint)?;
            } else {
                output::print_dlq_stats(&stats);
            }
        }
        DlqCommand::Queue { limit, json } => {
            let queue = tasker.dlq_queue(limit).await.context(json, no_hint)?;
            if json {
                output::print_json(&queue).context(json, no_hint)?;
            } else {
                output::print_dlq_queue(&queue);
            }
        }
        DlqCommand::Staleness { min_ratio, limit, json } => {
            let report = tasker.staleness_report(min_ratio, limit).await.context(json, no_hint)?;
            if json {
                output::print_json(&report).context(json, no_hint)?;
            } else {
                output::print_staleness(&report);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn worker_list(tasker: &Tasker, json: bool) -> Result<ExitCode, Failure> {
    let workers = tasker.list_workers().await.context(json, no_hint)?;
    if json {
        output::print_json(&workers).context(json, no_hint)?;
    } else {
        output::print_workers(&workers);
    }
    Ok(ExitCode::SUCCESS)
}
