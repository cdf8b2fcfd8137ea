//! Step handlers compiled into the CLI: the demo's example handlers, and small utilities used by
//! the benchmark and the multi-process and dashboard tests (`noop`, `math`, `sleep`, `split_batches`,
//! `decide`, `fail`).

use std::time::Duration;

use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::{StepEvent, StepFailure};

/// Every built-in handler.
pub fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("noop", |_step| async move { Ok(Value::Null) });
    // Splits `context.items` into batches of `context.batch_size` for the `batch_worker` named by
    // `initialization.worker` (the benchmark's W4).
    r.register_fn("split_batches", |step| async move {
        let total = step.task_context["items"].as_u64().unwrap_or(0);
        let size = step.task_context["batch_size"].as_u64().unwrap_or(1);
        let worker = step.config()["worker"].as_str().unwrap_or("work").to_owned();
        let cursors = tasker_core::outcome::batch_cursors(total, size)
            .map_err(|e| StepFailure::permanent("bad_input", e.to_string()))?;
        Ok(tasker_core::outcome::step_results::batches(
            &worker,
            &cursors,
            Value::Null,
        ))
    });
    r.register_fn("math", |step| async move { math(&step) });
    // A decision that creates the steps named by `initialization.choose` (none: no branches),
    // after `initialization.ms` (so that a page can be seen before and after it decides).
    r.register_fn("decide", |step| async move {
        let config = step.config();
        tokio::time::sleep(Duration::from_millis(config["ms"].as_u64().unwrap_or(0))).await;
        let chosen: Vec<&str> = config["choose"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Ok(if chosen.is_empty() {
            tasker_core::outcome::step_results::no_branches(Value::Null)
        } else {
            tasker_core::outcome::step_results::decision(&chosen, Value::Null)
        })
    });
    // Fails every attempt with `initialization.error_type`/`message` (retryable when
    // `retryable` is true) and the handler's backtrace, to show failures end to end.
    r.register_fn("fail", |step| async move {
        let config = step.config();
        let error_type = config["error_type"].as_str().unwrap_or("DemoFailure").to_owned();
        let message = config["message"]
            .as_str()
            .unwrap_or("this step always fails")
            .to_owned();
        let mut failure = if config["retryable"] == json!(true) {
            StepFailure::retryable(error_type, message)
        } else {
            StepFailure::permanent(error_type, message)
        };
        failure.backtrace = Some(std::backtrace::Backtrace::force_capture().to_string());
        Err::<Value, _>(failure)
    });
    r.register_fn("sleep", |step| async move {
        let ms = step.config()["ms"].as_u64().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "slept_ms": ms, "pid": std::process::id() }))
    });
    r.register_fn("ecommerce.validate_order", |step| async move { validate_order(&step) });
    r.register_fn("ecommerce.reserve_inventory", |step| async move {
        let order = order_id(&step)?;
        let warehouse = step.config()["warehouse"].as_str().unwrap_or("main").to_owned();
        Ok(json!({ "reservation_id": format!("res-{order}"), "warehouse": warehouse }))
    });
    r.register_fn("ecommerce.charge_payment", |step| async move {
        let order = order_id(&step)?;
        // Orders flagged in their context fail their first charge, to show retries.
        if step.task_context["simulate_gateway_timeout"] == json!(true) && step.attempt == 1 {
            return Err(StepFailure::retryable(
                "GatewayTimeout",
                "payment gateway did not answer",
            ));
        }
        let total = step
            .dependency_result("validate_order")
            .map(|v| v["total"].clone())
            .unwrap_or(Value::Null);
        Ok(json!({ "payment_id": format!("pay-{order}-{}", step.attempt), "amount": total }))
    });
    r.register_fn("ecommerce.ship_order", |step| async move {
        let order = order_id(&step)?;
        let reservation = step
            .dependency_result("reserve_inventory")
            .map(|v| v["reservation_id"].clone());
        let payment = step
            .dependency_result("charge_payment")
            .map(|v| v["payment_id"].clone());
        Ok(json!({ "tracking_number": format!("TRK{order:06}"), "reservation": reservation, "payment": payment }))
    });
    r.register_fn("ecommerce.notify_customer", |step| async move {
        let email = step.task_context["customer_email"]
            .as_str()
            .unwrap_or("customer")
            .to_owned();
        let tracking = step
            .dependency_result("ship_order")
            .map(|v| v["tracking_number"].clone())
            .unwrap_or(Value::Null);
        Ok(json!({ "sent_to": email, "message": format!("Your order shipped: {}", tracking.as_str().unwrap_or("?")) }))
    });
    r.register_fn("data.extract", |step| async move {
        let rows = step.task_context["rows"].as_u64().unwrap_or(100);
        Ok(json!({ "rows": (1..=rows).collect::<Vec<u64>>() }))
    });
    r.register_fn("data.normalize", |step| async move {
        let rows = rows_of(&step);
        let max = rows.iter().copied().max().unwrap_or(1).max(1);
        Ok(json!({ "normalized_count": rows.len(), "scale": max }))
    });
    r.register_fn("data.aggregate", |step| async move {
        let rows = rows_of(&step);
        Ok(json!({ "sum": rows.iter().sum::<u64>(), "count": rows.len() }))
    });
    r.register_fn("data.load", |step| async move {
        let sum = step
            .dependency_result("aggregate")
            .map(|v| v["sum"].clone())
            .unwrap_or(Value::Null);
        let table = step.config()["table"].as_str().unwrap_or("summary").to_owned();
        Ok(json!({ "table": table, "loaded_sum": sum }))
    });
    r
}

/// (sum of dependency `value`s, or the context's `value` for a root) * mul + add.
fn math(step: &StepEvent) -> Result<Value, StepFailure> {
    let base = if step.dependency_results.is_empty() {
        step.task_context["value"]
            .as_i64()
            .ok_or_else(|| StepFailure::permanent("InvalidInput", "context.value must be an integer"))?
    } else {
        step.dependency_results
            .values()
            .map(|r| r["value"].as_i64().unwrap_or(0))
            .sum()
    };
    let mul = step.config()["mul"].as_i64().unwrap_or(1);
    let add = step.config()["add"].as_i64().unwrap_or(0);
    Ok(json!({ "value": base * mul + add, "pid": std::process::id() }))
}

fn order_id(step: &StepEvent) -> Result<i64, StepFailure> {
    step.task_context["order_id"]
        .as_i64()
        .ok_or_else(|| StepFailure::permanent("InvalidOrder", "context.order_id must be an integer"))
}

fn validate_order(step: &StepEvent) -> Result<Value, StepFailure> {
    let items = step.task_context["items"]
        .as_array()
        .ok_or_else(|| StepFailure::permanent("InvalidOrder", "context.items must be a list"))?;
    let mut total = 0.0;
    for item in items {
        let qty = item["quantity"].as_f64().unwrap_or(0.0);
        let price = item["price"].as_f64().unwrap_or(0.0);
        total += qty * price;
    }
    Ok(json!({ "order_id": order_id(step)?, "item_count": items.len(), "total": (total * 100.0).round() / 100.0 }))
}

fn rows_of(step: &StepEvent) -> Vec<u64> {
    step.dependency_result("extract")
        .and_then(|v| v["rows"].as_array())
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}
