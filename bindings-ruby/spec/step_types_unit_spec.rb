# frozen_string_literal: true

require "spec_helper"

# Decision and batch helpers, the cursor builder, the batch context and the testing helpers,
# without a database.
RSpec.describe "decision and batch helpers" do
  let(:handler) { TaskerCore::StepHandler::Base.new }

  describe TaskerCore::Batch, ".cursors" do
    it "splits total items into batches with 3-digit ids, the last one smaller" do
      cursors = described_class.cursors(total: 2500, batch_size: 1000)
      expect(cursors.map(&:to_h)).to eq(
        [{ "batch_id" => "001", "start_cursor" => 0, "end_cursor" => 1000, "batch_size" => 1000 },
         { "batch_id" => "002", "start_cursor" => 1000, "end_cursor" => 2000, "batch_size" => 1000 },
         { "batch_id" => "003", "start_cursor" => 2000, "end_cursor" => 2500, "batch_size" => 500 }]
      )
    end

    it "makes even batches, one batch, or none" do
      expect(described_class.cursors(total: 3000, batch_size: 1000).map(&:batch_size)).to eq([1000, 1000, 1000])
      expect(described_class.cursors(total: 7, batch_size: 1000).map(&:to_h))
        .to eq([{ "batch_id" => "001", "start_cursor" => 0, "end_cursor" => 7, "batch_size" => 7 }])
      expect(described_class.cursors(total: 0, batch_size: 10)).to eq([])
    end

    it "uses more digits past 999 batches, every id the same width" do
      cursors = described_class.cursors(total: 1000, batch_size: 1)
      expect(cursors.size).to eq(1000)
      expect(cursors.first.batch_id).to eq("0001")
      expect(cursors.last.batch_id).to eq("1000")
      expect(described_class.cursors(total: 999, batch_size: 1).last.batch_id).to eq("999")
    end

    it "covers every item exactly once" do
      cursors = described_class.cursors(total: 1234, batch_size: 100)
      items = cursors.flat_map { |c| (c.start_cursor...c.end_cursor).to_a }
      expect(items).to eq((0...1234).to_a)
      expect(cursors.sum(&:batch_size)).to eq(1234)
    end

    it "rejects a non-positive batch size and a negative or non-integer total" do
      expect { described_class.cursors(total: 10, batch_size: 0) }
        .to raise_error(TaskerCore::InvalidArgumentError, /batch_size must be a positive Integer, got 0/)
      expect { described_class.cursors(total: 10, batch_size: -5) }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { described_class.cursors(total: 10, batch_size: 2.5) }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { described_class.cursors(total: -1, batch_size: 10) }
        .to raise_error(TaskerCore::InvalidArgumentError, /total must be a non-negative Integer, got -1/)
      expect { described_class.cursors(total: "10", batch_size: 10) }.to raise_error(TaskerCore::InvalidArgumentError)
    end
  end

  describe "decision helpers" do
    it "builds create_steps with the other result keys kept" do
      result = handler.decision_success(steps: %w[manager_approval finance_review], result: { amount: 7500 })
      expect(result).to be_success
      expect(result.result).to eq(
        :amount => 7500,
        "decision_point_outcome" => { "type" => "create_steps", "step_names" => %w[manager_approval finance_review] }
      )
      expect(result.decision.steps).to eq(%w[manager_approval finance_review])
      expect(result.decision).not_to be_no_branches
      expect(result).to choose_steps("finance_review", "manager_approval")
      expect(result).not_to choose_steps("manager_approval")
    end

    it "takes one name, Symbols, and drops repeated names" do
      expect(handler.decision_success(steps: :auto_approve).decision.steps).to eq(["auto_approve"])
      expect(handler.decision_success(steps: %i[a b a]).decision.steps).to eq(%w[a b])
    end

    it "builds no_branches" do
      result = handler.decision_no_branches(result: { "reason" => "nothing to approve" })
      expect(result.result).to eq("reason" => "nothing to approve",
                                  "decision_point_outcome" => { "type" => "no_branches" })
      expect(result.decision).to be_no_branches
      expect(result.decision.steps).to eq([])
      expect(result).to choose_no_branches
      expect(result).not_to choose_steps("x")
    end

    it "rejects no steps, bad names and a result that is not a Hash" do
      expect { handler.decision_success(steps: []) }
        .to raise_error(TaskerCore::InvalidArgumentError, /at least one step name; use decision_no_branches/)
      expect { handler.decision_success(steps: ["ok", 3]) }.to raise_error(TaskerCore::InvalidArgumentError, /got 3/)
      expect { handler.decision_success(steps: [""]) }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { handler.decision_success(steps: ["a"], result: [1]) }
        .to raise_error(TaskerCore::InvalidArgumentError, /result must be a Hash/)
      expect { handler.decision_no_branches(result: { decision_point_outcome: 1 }) }
        .to raise_error(TaskerCore::InvalidArgumentError, /already has decision_point_outcome/)
    end

    it "is available to block handlers and lambdas (StepResult.decision_success)" do
      TaskerCore.step_handler("unit_router") { |c| decision_success(steps: c.input["pick"]) }
      context = build_step_context(input: { pick: ["b"] })
      expect(run_handler("unit_router", context)).to choose_steps("b")
      router = ->(_c) { TaskerCore::StepResult.decision_no_branches }
      expect(run_handler(router)).to choose_no_branches
    end

    it "reads a plain Hash result in the wire format back the same way" do
      plain = ->(_c) { { "decision_point_outcome" => { "type" => "create_steps", "step_names" => ["x"] }, "k" => 1 } }
      result = run_handler(plain)
      expect(result).to choose_steps("x")
      expect(result).to have_result(include("k" => 1))
      expect(run_handler(->(_c) { { "k" => 1 } }).decision).to be_nil
    end
  end

  describe "batch helpers" do
    it "builds create_batches from total and batch_size" do
      result = handler.create_batches(worker: "process_batch", total: 2500, batch_size: 1000, result: { "source" => "s3" })
      outcome = result.result["batch_processing_outcome"]
      expect(outcome).to include("type" => "create_batches", "worker_template_name" => "process_batch",
                                 "worker_count" => 3, "total_items" => 2500)
      expect(outcome["cursor_configs"].map { |c| c["end_cursor"] }).to eq([1000, 2000, 2500])
      expect(result.result["source"]).to eq("s3")
      expect(result).to have_batches(worker: "process_batch", count: 3, total: 2500)
      expect(result).not_to have_batches(count: 2)
      first = TaskerCore::Batch::Cursor.new(batch_id: "001", start_cursor: 0, end_cursor: 1000, batch_size: 1000)
      expect(result.batches.cursors.first).to eq(first)
    end

    it "builds create_batches from explicit cursors (Hashes or Cursors, String cursors too)" do
      cursors = [{ batch_id: "a", start_cursor: "2024-01-01", end_cursor: "2024-02-01", batch_size: 31 },
                 { "batch_id" => "b", "start_cursor" => 10, "end_cursor" => 25 },
                 TaskerCore::Batch::Cursor.new(batch_id: "c", start_cursor: 25, end_cursor: 30, batch_size: 5)]
      result = handler.create_batches(worker: :w, cursors: cursors)
      expect(result.batches.worker).to eq("w")
      expect(result.batches.worker_count).to eq(3)
      expect(result.batches.total_items).to eq(31 + 15 + 5)
      expect(result.batches.cursors.map(&:batch_size)).to eq([31, 15, 5])
      expect(result.result["batch_processing_outcome"]["cursor_configs"][0])
        .to eq("batch_id" => "a", "start_cursor" => "2024-01-01", "end_cursor" => "2024-02-01", "batch_size" => 31)
      expect(handler.create_batches(worker: "w", cursors: cursors.take(1), total: 40).batches.total_items).to eq(40)
    end

    it "turns nothing to process into no_batches" do
      expect(handler.create_batches(worker: "w", total: 0, batch_size: 100)).to have_no_batches
      expect(handler.create_batches(worker: "w", cursors: [])).to have_no_batches
      result = handler.no_batches(result: { "why" => "empty" })
      expect(result.result).to eq("why" => "empty", "batch_processing_outcome" => { "type" => "no_batches" })
      expect(result.batches).to be_no_batches
      expect(result).not_to have_batches
    end

    it "rejects bad arguments with clear errors" do
      error = TaskerCore::InvalidArgumentError
      expect { handler.create_batches(worker: "", total: 1, batch_size: 1) }.to raise_error(error, /worker must name/)
      expect { handler.create_batches(worker: "w", total: 10) }.to raise_error(error, /needs total: and batch_size:, or cursors:/)
      expect { handler.create_batches(worker: "w", cursors: [], batch_size: 3) }.to raise_error(error, /not both/)
      expect { handler.create_batches(worker: "w", total: 10, batch_size: 0) }.to raise_error(error, /batch_size/)
      expect { handler.create_batches(worker: "w", cursors: [{ start_cursor: 0, end_cursor: 1 }]) }
        .to raise_error(error, /cursors\[0\] needs a batch_id/)
      expect { handler.create_batches(worker: "w", cursors: [{ batch_id: "1", start_cursor: 0 }]) }
        .to raise_error(error, /needs start_cursor and end_cursor/)
      expect { handler.create_batches(worker: "w", cursors: [{ batch_id: "1", start_cursor: "a", end_cursor: "b" }]) }
        .to raise_error(error, /batch_size/)
      expect { handler.create_batches(worker: "w", cursors: [7]) }.to raise_error(error, /cursors\[0\] must be a Hash/)
      expect { handler.create_batches(worker: "w", cursors: "x") }.to raise_error(error, /must be an Array/)
      expect { handler.no_batches(result: { "batch_processing_outcome" => 1 }) }.to raise_error(error, /already has/)
    end
  end

  describe "batch worker contexts" do
    let(:worker) do
      Class.new(TaskerCore::StepHandler::Base) do
        # Sums the integers of its range from where it left off, checkpointing every
        # checkpoint_interval items.
        def call(context)
          batch = context.batch
          return { "sum" => 0, "count" => 0 } if batch.no_op?

          interval = batch.config.fetch("checkpoint_interval")
          sum = context.checkpoint&.accumulated&.fetch("sum") || 0
          (batch.resume_cursor...batch.end_cursor).each_slice(interval) do |slice|
            sum += slice.sum
            batch.checkpoint(slice.last + 1, items_done: slice.last + 1 - batch.start_cursor, accumulated: { sum: sum })
          end
          { "sum" => sum, "count" => batch.end_cursor - batch.start_cursor }
        end
      end
    end

    it "gives the handler its range and config, and records its checkpoints" do
      context = build_batch_context(start_cursor: 100, end_cursor: 350, batch_config: { checkpoint_interval: 100 })
      expect(context).to be_batch
      expect(context.batch).to have_attributes(batch_id: "001", start_cursor: 100, end_cursor: 350, batch_size: 250,
                                               config: { "checkpoint_interval" => 100 }, resume_cursor: 100)
      expect(context.batch.range).to eq(100...350)
      expect(context.batch).not_to be_no_op
      expect(context.checkpoint).to be_nil
      expect(run_handler(worker, context)).to have_result("sum" => (100...350).sum, "count" => 250)
      recorded = recorded_checkpoints(context)
      expect(recorded.map(&:cursor)).to eq([200, 300, 350])
      expect(recorded.map(&:items_done)).to eq([100, 200, 250])
      expect(recorded.last.accumulated).to eq("sum" => (100...350).sum)
      expect(recorded.map(&:attempt).uniq).to eq([1])
      expect(recorded.last.recorded_at).to be_a(Time)
    end

    it "resumes from the last checkpoint of an earlier attempt" do
      done = (0...200).sum
      context = build_batch_context(end_cursor: 300, batch_config: { checkpoint_interval: 100 }, attempt: 2,
                                    checkpoint: { cursor: 200, items_done: 200, accumulated: { sum: done } })
      expect(context.checkpoint).to have_attributes(cursor: 200, items_done: 200, accumulated: { "sum" => done },
                                                    attempt: 1)
      expect(context.batch.resume_cursor).to eq(200)
      expect(context.batch.last_checkpoint).to eq(context.checkpoint)
      expect(run_handler(worker, context)).to have_result("sum" => (0...300).sum, "count" => 300)
      expect(recorded_checkpoints(context).map(&:cursor)).to eq([300])
      expect(recorded_checkpoints(context).map(&:attempt)).to eq([2])
    end

    it "builds the no-op placeholder of no_batches" do
      context = build_batch_context(no_op: true)
      expect(context.batch).to have_attributes(batch_id: "000", start_cursor: 0, end_cursor: 0, batch_size: 0)
      expect(context.batch).to be_no_op
      expect(run_handler(worker, context)).to have_result("sum" => 0, "count" => 0)
      expect(recorded_checkpoints(context)).to eq([])
    end

    it "checks checkpoints as the engine does" do
      batch = build_batch_context(end_cursor: 10).batch
      error = TaskerCore::InvalidArgumentError
      expect { batch.checkpoint(nil) }.to raise_error(error, /needs a cursor/)
      expect { batch.checkpoint(1, items_done: -1) }.to raise_error(error, /items_done must be a non-negative Integer/)
      expect { batch.checkpoint(1, items_done: 1.5) }.to raise_error(error, /items_done/)
      expect { batch.checkpoint(1, accumulated: { "x" => Float::NAN }) }
        .to raise_error(TaskerCore::SerializationError, /checkpoint\.accumulated\.x/)
      expect(batch.checkpoint("k-9", items_done: 3)).to be_nil
      expect(batch.checkpoint({ "page" => 2 })).to be_nil
      expect(recorded_checkpoints(build_batch_context(end_cursor: 1))).to eq([])
    end

    it "makes String-cursor batches and plain contexts" do
      context = build_batch_context(start_cursor: "a", end_cursor: "m", batch_size: 12, batch_id: "007")
      expect(context.batch).to have_attributes(batch_id: "007", resume_cursor: "a", batch_size: 12, config: {})
      expect(context.step_name).to eq("batch_worker_007")
      expect { context.batch.range }.to raise_error(TaskerCore::InvalidArgumentError, /Integer cursors/)
      plain = build_step_context
      expect(plain.batch).to be_nil
      expect(plain).not_to be_batch
      expect { recorded_checkpoints(plain) }.to raise_error(TaskerCore::InvalidArgumentError, /build_batch_context/)
      expect { build_batch_context }.to raise_error(TaskerCore::InvalidArgumentError, /end_cursor/)
    end

    it "builds contexts from the engine's step event" do
      sent = []
      event = {
        "event_id" => 9, "task_uuid" => "t", "step_uuid" => "s", "step_name" => "process_batch_002", "input" => {},
        "config" => {}, "dependency_results" => {}, "attempt" => 2, "max_attempts" => 3, "callable" => "w",
        "method" => "call",
        "batch" => { "batch_id" => "002", "start_cursor" => 1000, "end_cursor" => 2000, "batch_size" => 1000,
                     "is_no_op" => false, "batch_config" => { "checkpoint_interval" => 100 } },
        "checkpoint" => { "cursor" => 1500, "items_done" => 500, "accumulated" => nil, "attempt" => 1,
                          "recorded_at" => "2025-01-02T03:04:05.123456Z" }
      }
      context = TaskerCore::StepContext.from_event(event, checkpointer: ->(payload) { sent << payload })
      expect(context.batch).to have_attributes(batch_id: "002", resume_cursor: 1500, config: { "checkpoint_interval" => 100 })
      expect(context.checkpoint).to have_attributes(cursor: 1500, items_done: 500, accumulated: nil, attempt: 1,
                                                    recorded_at: Time.utc(2025, 1, 2, 3, 4, Rational(5_123_456, 1_000_000)))
      context.batch.checkpoint(1600, items_done: 600)
      context.batch.checkpoint(1700, items_done: 700, accumulated: [1])
      expect(sent).to eq([{ "cursor" => 1600, "items_done" => 600 },
                          { "cursor" => 1700, "items_done" => 700, "accumulated" => [1] }])
      plain = TaskerCore::StepContext.from_event(event.merge("batch" => nil, "checkpoint" => nil))
      expect(plain.batch).to be_nil
      expect(plain.checkpoint).to be_nil
    end
  end
end
