# frozen_string_literal: true

# Ruby handlers of the cross-language fixtures (reserve_inventory, notify_customer, math).
# Behaviour switches come from the task context; see tests/handlers/python/polyglot_handlers.py.

require "json"
require "tasker_core"

module PolyglotHandlers
  LANGUAGE = "ruby"

  module_function

  def record(ctx, started, outcome)
    elapsed_ms = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000
    entry = {
      language: LANGUAGE, pid: Process.pid, task_uuid: ctx.task_uuid.to_s, step_uuid: ctx.step_uuid.to_s,
      step: ctx.step_name, attempt: ctx.attempt, outcome: outcome, ms: elapsed_ms.round(2)
    }
    if (ledger = ENV["TASKER_LEDGER"]) && !ledger.empty?
      File.open(ledger, "a") { |f| f.puts(JSON.generate(entry)) }
    end
    return if ENV["TASKER_QUIET"]

    order = ctx.input["order_id"] || "-"
    $stdout.puts format("  [%-10s pid %6d] %-18s order %s  attempt %d  %6.2f ms  %s",
                        LANGUAGE, Process.pid, ctx.step_name, order, ctx.attempt, elapsed_ms, outcome)
    $stdout.flush
  end

  # Applies the behaviour switches around a handler body and records the run.
  def traced(name)
    TaskerCore.step_handler(name) do |ctx|
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      begin
        slow = ctx.input["slow_ms"]
        sleep(slow / 1000.0) if slow
        if ctx.input["fail_permanently_at"] == ctx.step_name
          raise TaskerCore::PermanentError.new("#{ctx.step_name} rejected the order", error_type: "OrderRejected")
        end
        if Array(ctx.input["fail_once_at"]).include?(ctx.step_name) && ctx.attempt == 1
          raise TaskerCore::RetryableError.new("#{LANGUAGE} dependency unavailable", error_type: "TemporaryOutage")
        end

        result = yield(ctx)
      rescue StandardError => e
        PolyglotHandlers.record(ctx, started, "failed: #{e.class.name}")
        raise
      end
      PolyglotHandlers.record(ctx, started, "ok")
      result
    end
  end

  RESERVE_INVENTORY = traced("polyglot.reserve_inventory") do |ctx|
    validated = ctx.dependency_result("validate_order")
    {
      "reservation_id" => "RES-#{validated['order_id']}",
      "skus" => ctx.input["items"].map { |i| i["sku"] }.sort,
      "warehouse" => ctx.config["warehouse"],
      "by" => LANGUAGE
    }
  end

  NOTIFY_CUSTOMER = traced("polyglot.notify_customer") do |ctx|
    shipped = ctx.dependency_result("ship_order")
    {
      "sent_to" => ctx.input["customer_email"],
      "message" => "Order #{ctx.input['order_id']} shipped: #{shipped['tracking_number']} (payment #{shipped['payment_id']})",
      "by" => LANGUAGE
    }
  end

  MATH = traced("polyglot.math") do |ctx|
    deps = ctx.dependency_results
    base = deps.empty? ? ctx.input["value"] : deps.values.sum { |r| r["value"] }
    { "value" => (base * (ctx.config["mul"] || 1)) + (ctx.config["add"] || 0), "by" => LANGUAGE }
  end

  HANDLERS = [RESERVE_INVENTORY, NOTIFY_CUSTOMER, MATH].freeze
end
