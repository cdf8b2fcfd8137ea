//! The dead-letter queue, the staleness report and the registry of workers
//! (`tasker_core::engine::dlq`), as methods of `TaskerCore::Native::Client`. The Ruby layer turns
//! the records into `DlqEntry`, `DlqStats`, `TaskHealth`, `WorkerInfo` (`lib/tasker_core/dlq.rb`).

use magnus::{method, prelude::*, Error, RClass, Ruby, Value};
use tasker_core::{DlqFilter, DlqReason, DlqStatus};

use crate::client::{parse_uuid, ser, wait, Client};
use crate::error::invalid_argument;

/// The largest row count passed on: the core sizes its read as a multiple of the limit, which must
/// not overflow. Nobody reads more rows than this.
const MAX_LIMIT: i64 = 1 << 40;

fn parse_status(ruby: &Ruby, s: &str) -> Result<DlqStatus, Error> {
    DlqStatus::parse(s).ok_or_else(|| {
        let all: Vec<&str> = DlqStatus::ALL.iter().map(|s| s.as_str()).collect();
        invalid_argument(ruby, format!("status must be one of {}, got '{s}'", all.join(", ")))
    })
}

fn parse_reason(ruby: &Ruby, s: &str) -> Result<DlqReason, Error> {
    DlqReason::parse(s).ok_or_else(|| {
        let all: Vec<&str> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
        invalid_argument(ruby, format!("reason must be one of {}, got '{s}'", all.join(", ")))
    })
}

/// A row count of at least `min`, capped at [`MAX_LIMIT`].
fn count(ruby: &Ruby, what: &str, value: i64, min: i64) -> Result<i64, Error> {
    if value < min {
        return Err(invalid_argument(
            ruby,
            format!("{what} must be at least {min}, got {value}"),
        ));
    }
    Ok(value.min(MAX_LIMIT))
}

impl Client {
    #[allow(clippy::too_many_arguments)]
    fn list_dlq(
        ruby: &Ruby,
        rb_self: &Self,
        status: Option<String>,
        reason: Option<String>,
        task: Option<String>,
        open_only: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Value, Error> {
        let filter = DlqFilter {
            status: status.map(|s| parse_status(ruby, &s)).transpose()?,
            open_only,
            reason: reason.map(|r| parse_reason(ruby, &r)).transpose()?,
            task_uuid: task.map(|t| parse_uuid(ruby, "task_uuid", &t)).transpose()?,
            limit: Some(count(ruby, "limit", limit, 1)?),
            offset: Some(count(ruby, "offset", offset, 0)?),
        };
        let entries = wait(ruby, rb_self.tasker.list_dlq(&filter))?;
        ser(ruby, &entries)
    }

    fn dlq_entry(ruby: &Ruby, rb_self: &Self, entry: String) -> Result<Value, Error> {
        let entry = parse_uuid(ruby, "entry_uuid", &entry)?;
        let found = wait(ruby, rb_self.tasker.get_dlq_entry(entry))?;
        ser(ruby, &found)
    }

    fn update_dlq_entry(
        ruby: &Ruby,
        rb_self: &Self,
        entry: String,
        status: Option<String>,
        note: String,
        by: String,
    ) -> Result<Value, Error> {
        let entry = parse_uuid(ruby, "entry_uuid", &entry)?;
        let status = status.map(|s| parse_status(ruby, &s)).transpose()?;
        let updated = wait(ruby, rb_self.tasker.update_dlq_entry(entry, status, &note, &by))?;
        ser(ruby, &updated)
    }

    fn add_to_dlq(ruby: &Ruby, rb_self: &Self, task: String, by: String, note: String) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let entry = wait(ruby, rb_self.tasker.add_to_dlq(task, &by, &note))?;
        ser(ruby, &entry)
    }

    fn dlq_stats(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let stats = wait(ruby, rb_self.tasker.dlq_stats())?;
        ser(ruby, &stats)
    }

    fn dlq_queue(ruby: &Ruby, rb_self: &Self, limit: i64) -> Result<Value, Error> {
        let limit = count(ruby, "limit", limit, 1)?;
        let queue = wait(
            ruby,
            rb_self.tasker.dlq_queue(usize::try_from(limit).unwrap_or(usize::MAX)),
        )?;
        ser(ruby, &queue)
    }

    fn staleness_report(ruby: &Ruby, rb_self: &Self, min_ratio: f64, limit: i64) -> Result<Value, Error> {
        // A NaN or infinite ratio is a caller's mistake: say so (the core would read NaN as 0).
        if !(min_ratio.is_finite() && min_ratio >= 0.0) {
            return Err(invalid_argument(
                ruby,
                format!("min_ratio must be a finite number >= 0, got {min_ratio}"),
            ));
        }
        let limit = count(ruby, "limit", limit, 1)?;
        let report = wait(
            ruby,
            rb_self
                .tasker
                .staleness_report(min_ratio, usize::try_from(limit).unwrap_or(usize::MAX)),
        )?;
        ser(ruby, &report)
    }

    fn list_workers(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let workers = wait(ruby, rb_self.tasker.list_workers())?;
        ser(ruby, &workers)
    }
}

pub fn define(class: RClass) -> Result<(), Error> {
    class.define_method("list_dlq", method!(Client::list_dlq, 6))?;
    class.define_method("dlq_entry", method!(Client::dlq_entry, 1))?;
    class.define_method("update_dlq_entry", method!(Client::update_dlq_entry, 4))?;
    class.define_method("add_to_dlq", method!(Client::add_to_dlq, 3))?;
    class.define_method("dlq_stats", method!(Client::dlq_stats, 0))?;
    class.define_method("dlq_queue", method!(Client::dlq_queue, 1))?;
    class.define_method("staleness_report", method!(Client::staleness_report, 2))?;
    class.define_method("list_workers", method!(Client::list_workers, 0))?;
    Ok(())
}
