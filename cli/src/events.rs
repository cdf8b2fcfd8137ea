//! `tasker events …`: the catalog, a live tail of the durable event log, subscriber groups and
//! their dead letters.
//!
//! `tail` is a member of a subscriber group: with `--group G` it shares G's events with G's
//! other members and resumes where G left off; without, it joins a group of its own that starts
//! at the log's end and is deleted when the tail stops.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use tasker_core::events::{self, SubscriptionOptions};
use tasker_core::{Tasker, TaskerError};

use crate::output;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// List the catalog (one line per event), or one event in full with its name.
    Catalog {
        /// Show this event's description, payload schema and example.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print events as they are written, until Ctrl-C.
    Tail {
        /// Event name patterns (`task.*`, `payment.charged`, `*`); repeatable. [default: *]
        #[arg(long = "pattern", short = 'p')]
        patterns: Vec<String>,
        /// Join this subscriber group (shared with its other members, resumed on restart).
        #[arg(long)]
        group: Option<String>,
        /// A group this creates starts at the log's start instead of its end.
        #[arg(long)]
        from_start: bool,
        /// Only events of this task.
        #[arg(long)]
        task: Option<uuid::Uuid>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
    },
    /// List subscriber groups: members, how far behind they are, dead letters.
    Groups {
        #[arg(long)]
        json: bool,
        /// Delete this group (its position and members; dead letters stay).
        #[arg(long, value_name = "GROUP")]
        delete: Option<String>,
    },
    /// Publish a domain event of no task: to try a subscriber, or (`--count`) to load one.
    Publish {
        /// The event's name: dotted lowercase words, not one of the catalog's.
        name: String,
        /// Its payload (JSON).
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Publish it this many times (written in transactions of 500).
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
    /// List the events subscribers gave up on.
    Dead {
        /// Only this group's.
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

impl EventsCommand {
    /// Whether errors are reported as JSON.
    pub fn json(&self) -> bool {
        match self {
            EventsCommand::Catalog { json, .. }
            | EventsCommand::Tail { json, .. }
            | EventsCommand::Groups { json, .. }
            | EventsCommand::Publish { json, .. }
            | EventsCommand::Dead { json, .. } => *json,
        }
    }
}

/// Runs an `events` command that reads the database (`catalog` needs none: see [`catalog`]).
pub async fn events_command(tasker: &Tasker, cmd: EventsCommand) -> Result<ExitCode, TaskerError> {
    match cmd {
        EventsCommand::Catalog { name, json } => Ok(catalog(name.as_deref(), json)),
        EventsCommand::Tail {
            patterns,
            group,
            from_start,
            task,
            limit,
            json,
        } => tail(tasker, patterns, group, from_start, task, limit, json).await,
        EventsCommand::Groups { json, delete } => groups(tasker, json, delete).await,
        EventsCommand::Dead { group, limit, json } => dead(tasker, group.as_deref(), limit, json).await,
        EventsCommand::Publish {
            name,
            payload,
            count,
            json,
        } => publish(tasker, &name, &payload, count, json).await,
    }
}

/// `tasker events catalog [NAME] [--json]`.
pub fn catalog(name: Option<&str>, json: bool) -> ExitCode {
    let chosen = match name {
        None => events::catalog(),
        Some(n) => match events::event_info(n) {
            Some(e) => vec![e],
            None => {
                let names: Vec<String> = events::catalog().into_iter().map(|e| e.name).collect();
                eprintln!(
                    "error: no event '{n}' in the catalog; the events are: {}",
                    names.join(", ")
                );
                return ExitCode::FAILURE;
            }
        },
    };
    if json {
        let shown = if name.is_some() {
            output::print_json(&chosen[0])
        } else {
            output::print_json(&chosen)
        };
        if let Err(e) = shown {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    } else if name.is_some() {
        let e = &chosen[0];
        println!("{} ({})\n  {}", e.name, e.category, e.description);
        println!("  payload schema: {}", e.payload_schema);
        println!("  example: {}", e.example);
    } else {
        let width = chosen.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in &chosen {
            println!("{:width$}  {:<8} {}", e.name, e.category, e.description, width = width);
        }
    }
    ExitCode::SUCCESS
}

#[allow(clippy::too_many_arguments)]
async fn tail(
    tasker: &Tasker,
    patterns: Vec<String>,
    group: Option<String>,
    from_start: bool,
    task: Option<uuid::Uuid>,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode, TaskerError> {
    let patterns = if patterns.is_empty() {
        vec!["*".to_owned()]
    } else {
        patterns
    };
    let ephemeral = group.is_none();
    let group = group.unwrap_or_else(|| format!("tail-{}", uuid::Uuid::now_v7().simple()));
    let mut options = SubscriptionOptions::new(group.clone(), patterns);
    options.from_start = from_start;
    let sub = tasker.subscribe(options).await?;
    if !json {
        eprintln!(
            "tasker events tail: group '{group}' on {} (Ctrl-C to stop)",
            tasker.database()
        );
    }
    let mut shown = 0usize;
    let stop = crate::wait_for_signal();
    tokio::pin!(stop);
    let result = loop {
        let next = tokio::select! {
            _ = &mut stop => break Ok(()),
            next = sub.poll_async(Duration::from_millis(500)) => next,
        };
        let delivery = match next {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => break Err(e),
        };
        let event = &delivery.event;
        if task.is_none() || event.task_uuid == task {
            if json {
                println!("{}", event.to_json());
            } else {
                let step = event.payload.get("step_name").and_then(|s| s.as_str()).unwrap_or("");
                let task = event.task_uuid.map(|t| t.to_string()).unwrap_or_default();
                println!(
                    "{}  {:<24} {task} {step} {}",
                    output::time(&event.occurred_at),
                    event.name,
                    output::clip(&output::compact(&event.payload), 160)
                );
            }
            shown += 1;
        }
        sub.ack(delivery.delivery_id)?;
        if limit.is_some_and(|l| shown >= l) {
            break Ok(());
        }
    };
    sub.close().await?;
    if ephemeral {
        tasker.delete_event_group(&group).await?;
    }
    result.map(|()| ExitCode::SUCCESS)
}

async fn groups(tasker: &Tasker, json: bool, delete: Option<String>) -> Result<ExitCode, TaskerError> {
    if let Some(group) = delete {
        if !tasker.delete_event_group(&group).await? {
            return Err(TaskerError::InvalidArgument(format!("no subscriber group '{group}'")));
        }
        println!("deleted subscriber group '{group}'");
        return Ok(ExitCode::SUCCESS);
    }
    let groups = tasker.event_groups().await?;
    if json {
        output::print_json(&groups)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::Table::new(&[
        "group",
        "patterns",
        "members",
        "partitions",
        "lag",
        "oldest pending",
        "dead",
    ]);
    for g in &groups {
        table.row(vec![
            g.group.clone(),
            g.patterns.join(","),
            g.live_members.to_string(),
            g.leased_partitions.to_string(),
            g.lag.to_string(),
            g.oldest_pending_at
                .as_ref()
                .map(output::ago)
                .unwrap_or_else(|| "-".into()),
            g.dead_letters.to_string(),
        ]);
    }
    table.print("no subscriber groups");
    Ok(ExitCode::SUCCESS)
}

async fn publish(
    tasker: &Tasker,
    name: &str,
    payload: &str,
    count: usize,
    json: bool,
) -> Result<ExitCode, TaskerError> {
    let payload: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| TaskerError::InvalidArgument(format!("--payload is not JSON: {e}")))?;
    let started = std::time::Instant::now();
    let ids = tasker.publish_events(name, &payload, count).await?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        output::print_json(
            &serde_json::json!({"name": name, "published": ids.len(), "seconds": seconds,
            "first_event_id": ids.first(), "last_event_id": ids.last()}),
        )?;
    } else {
        println!("published {} '{name}' event(s) in {seconds:.2} s", ids.len());
    }
    Ok(ExitCode::SUCCESS)
}

async fn dead(tasker: &Tasker, group: Option<&str>, limit: usize, json: bool) -> Result<ExitCode, TaskerError> {
    let dead = tasker.event_dead_letters(group, limit).await?;
    if json {
        output::print_json(&dead)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::Table::new(&["group", "event", "name", "task", "attempts", "dead at", "error"]);
    for d in &dead {
        table.row(vec![
            d.group.clone(),
            d.event_id.to_string(),
            d.name.clone(),
            d.task_uuid.map(|t| t.to_string()).unwrap_or_default(),
            d.attempts.to_string(),
            output::time(&d.dead_at),
            output::clip(&d.error, 80),
        ]);
    }
    table.print("no dead letters");
    Ok(ExitCode::SUCCESS)
}
