//! Operator actions on steps and tasks, and the step reads an operator works from
//! (`tasker_core::engine::recovery`), as methods of `TaskerCore::Native::Client`. Keyword
//! arguments and the `StepDetail` objects live in the Ruby layer (`lib/tasker_core/client.rb`,
//! `lib/tasker_core/recovery.rb`).

use magnus::{method, prelude::*, Error, RClass, Ruby, Value};

use crate::client::{parse_uuid, ser, wait, Client};
use crate::convert;
use crate::error::raise;

impl Client {
    fn reset_step(
        ruby: &Ruby,
        rb_self: &Self,
        task: String,
        step: String,
        by: String,
        reason: String,
    ) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let detail = wait(ruby, rb_self.tasker.reset_step(task, &step, &by, &reason))?;
        ser(ruby, &detail)
    }

    fn resolve_step_manually(
        ruby: &Ruby,
        rb_self: &Self,
        task: String,
        step: String,
        by: String,
        reason: String,
    ) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let detail = wait(ruby, rb_self.tasker.resolve_step_manually(task, &step, &by, &reason))?;
        ser(ruby, &detail)
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_step_manually(
        ruby: &Ruby,
        rb_self: &Self,
        task: String,
        step: String,
        result: Value,
        metadata: Value,
        by: String,
        reason: String,
    ) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        // Converted with the GVL held (they are Ruby objects); the core checks the JSON limits.
        let result = convert::to_json(result, "result").map_err(|e| raise(ruby, e))?;
        let metadata = convert::to_json(metadata, "metadata").map_err(|e| raise(ruby, e))?;
        let detail = wait(
            ruby,
            rb_self
                .tasker
                .complete_step_manually(task, &step, result, metadata, &by, &reason),
        )?;
        ser(ruby, &detail)
    }

    fn cancel_step(
        ruby: &Ruby,
        rb_self: &Self,
        task: String,
        step: String,
        by: String,
        reason: String,
    ) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let detail = wait(ruby, rb_self.tasker.cancel_step(task, &step, &by, &reason))?;
        ser(ruby, &detail)
    }

    fn retry_task(ruby: &Ruby, rb_self: &Self, task: String, by: String, reason: String) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let summary = wait(ruby, rb_self.tasker.retry_task(task, &by, &reason))?;
        ser(ruby, &summary)
    }

    fn resolve_task(ruby: &Ruby, rb_self: &Self, task: String, by: String, reason: String) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let summary = wait(ruby, rb_self.tasker.resolve_task(task, &by, &reason))?;
        ser(ruby, &summary)
    }

    fn get_step(ruby: &Ruby, rb_self: &Self, task: String, step: String) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let detail = wait(ruby, rb_self.tasker.get_step(task, &step))?;
        ser(ruby, &detail)
    }

    fn list_steps(ruby: &Ruby, rb_self: &Self, task: String) -> Result<Value, Error> {
        let task = parse_uuid(ruby, "task_uuid", &task)?;
        let steps = wait(ruby, rb_self.tasker.list_steps(task))?;
        ser(ruby, &steps)
    }
}

pub fn define(class: RClass) -> Result<(), Error> {
    class.define_method("reset_step", method!(Client::reset_step, 4))?;
    class.define_method("resolve_step_manually", method!(Client::resolve_step_manually, 4))?;
    class.define_method("complete_step_manually", method!(Client::complete_step_manually, 6))?;
    class.define_method("cancel_step", method!(Client::cancel_step, 4))?;
    class.define_method("retry_task", method!(Client::retry_task, 3))?;
    class.define_method("resolve_task", method!(Client::resolve_task, 3))?;
    class.define_method("get_step", method!(Client::get_step, 2))?;
    class.define_method("list_steps", method!(Client::list_steps, 1))?;
    Ok(())
}
