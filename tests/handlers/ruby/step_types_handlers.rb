# frozen_string_literal: true

# Ruby handlers of the cross-language decision and batch workflow
# (tests/fixtures/templates/approval_batches_polyglot.yaml, tests/e2e/test_step_types.py):
#
#   step_types.approve            a branch of the Python decision (`approver` from the template)
#   step_types.collect_approvals  deferred convergence over the branches that were created
#   step_types.plan_items         batchable: the task's `items` in batches of `batch_size`
#                                 (no batches for 0), worked by the TypeScript batch worker

require "tasker_core"

# The Ruby steps of the approval_batches template.
module StepTypesHandlers
  LANGUAGE = "ruby"
  BRANCHES = %w[auto_approve manager_approval finance_review].freeze

  APPROVE = TaskerCore.step_handler("step_types.approve") do |ctx|
    route = ctx.dependency_results.fetch("route")
    { "approver" => ctx.config.fetch("approver"), "amount" => route.fetch("amount"), "by" => LANGUAGE,
      "pid" => Process.pid }
  end

  COLLECT = TaskerCore.step_handler("step_types.collect_approvals") do |ctx|
    received = ctx.dependency_results.keys.sort
    unknown = received - BRANCHES
    raise TaskerCore::PermanentError, "unexpected dependencies #{unknown.inspect}" unless unknown.empty?

    { "approvals" => received, "approvers" => ctx.dependency_results.values.map { |r| r["approver"] }.sort,
      "by" => LANGUAGE }
  end

  PLAN = TaskerCore.step_handler("step_types.plan_items") do |ctx|
    items = Integer(ctx.input.fetch("items"))
    approvals = ctx.dependency_results.fetch("collect_approvals").fetch("approvals")
    result = { "items" => items, "approvals" => approvals, "by" => LANGUAGE }
    if items.zero?
      no_batches(result: result)
    else
      create_batches(worker: "process_items", total: items, batch_size: Integer(ctx.input.fetch("batch_size")),
                     result: result)
    end
  end

  HANDLERS = [APPROVE, COLLECT, PLAN].freeze
end
