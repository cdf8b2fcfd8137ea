# frozen_string_literal: true

require "spec_helper"

# The outcome boundary. The core normalises every outcome the same way for every language:
# "\u0000" becomes U+FFFD, a result over 1 MiB or nested deeper than 64 levels fails the step
# permanently (result_too_large / result_too_deep). What the gem's converter cannot write (NaN,
# values nested past its own bound) fails the step clearly too; the worker keeps serving.
RSpec.describe "outcome limits" do
  limit_bytes = 1024 * 1024
  limit_depth = 64

  # An Array nested `depth` levels deep, built without recursion.
  def nested(depth)
    value = []
    (depth - 1).times { value = [value] }
    value
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    # Runs the single-step fixture with `handler`; returns [the step, the worker's linear check].
    def run_single(handler)
      ns = register_fixture(client, "single.yaml")
      linear = register_fixture(client, "linear.yaml")
      with_worker(client, queues: [ns, linear], handlers: { "single.only" => handler }) do |worker|
        step = client.create_task(namespace: ns, name: "single_workflow", context: {}).wait(timeout: 30).step("only")
        good = client.create_task(namespace: linear, name: "linear_workflow", context: { "even_number" => 2 })
        expect(good.wait(timeout: 60)).to be_complete
        expect(worker).to be_running
        step
      end
    end

    def expect_permanent_failure(step, error_type)
      expect(step).to have_attributes(state: "error", attempts: 1)
      expect(step.last_error).to include("error_type" => error_type, "retryable" => false)
    end

    it "stores NUL in a result's strings and keys as U+FFFD" do
      step = run_single(lambda { |_c|
        TaskerCore::StepResult::Success.new(result: { "a\u0000b" => "x\u0000y", "list" => ["\u0000", { "k\u0000" => 1 }] },
                                            metadata: { "m" => "\u0000" })
      })
      expect(step.state).to eq("complete")
      expect(step.results).to eq("a\u{FFFD}b" => "x\u{FFFD}y", "list" => ["\u{FFFD}", { "k\u{FFFD}" => 1 }])
    end

    it "stores NUL in an error message and type as U+FFFD" do
      step = run_single(->(_c) { raise TaskerCore::PermanentError.new("bad\u0000input", error_type: "bad\u0000kind") })
      expect(step.state).to eq("error")
      expect(step.last_error).to include("message" => "bad\u{FFFD}input", "error_type" => "bad\u{FFFD}kind")
    end

    it "fails an oversize result with result_too_large" do
      step = run_single(->(_c) { { "blob" => "x" * (limit_bytes + 1) } })
      expect_permanent_failure(step, "result_too_large")
      expect(step.last_error["message"]).to include(limit_bytes.to_s)
      expect(step.results).to be_nil
    end

    it "cuts a huge error message to 64 KiB" do
      step = run_single(->(_c) { raise TaskerCore::PermanentError, "e" * 200_000 })
      message = step.last_error["message"]
      expect(message).to start_with("eeee").and include("[cut: 200000 bytes")
      expect(message.bytesize).to be < (64 * 1024) + 100
    end

    it "stores a result exactly at the depth limit" do
      step = run_single(->(_c) { nested(limit_depth) })
      expect(step.state).to eq("complete")
      expect(step.results).to eq(nested(limit_depth))
    end

    [limit_depth + 1, 100, 200, 100_000].each do |depth|
      it "fails a #{depth}-level result with result_too_deep" do
        step = run_single(->(_c) { nested(depth) })
        expect_permanent_failure(step, "result_too_deep")
        expect(step.last_error["message"]).to include(limit_depth.to_s)
      end
    end

    it "fails a result that references itself with result_not_serializable" do
      step = run_single(lambda { |_c|
        cycle = { "name" => "loop" }
        cycle["self"] = cycle
        cycle
      })
      expect_permanent_failure(step, "result_not_serializable")
      expect(step.last_error["message"]).to include("references itself")
    end

    [Float::NAN, Float::INFINITY, -Float::INFINITY].each do |value|
      it "fails a result holding #{value} with result_not_serializable" do
        step = run_single(->(_c) { { "ratio" => value } })
        expect_permanent_failure(step, "result_not_serializable")
        expect(step.last_error["message"]).to include("result.ratio").and include("no JSON representation")
      end
    end

    it "refuses a task context holding NUL at create_task" do
      ns = register_fixture(client, "single.yaml")
      expect do
        client.create_task(namespace: ns, name: "single_workflow", context: { "name" => "a\u0000b" })
      end.to raise_error(TaskerCore::ValidationError) { |e| expect(e.code).to eq("validation_failed") }
      expect(client.list_tasks(namespace: ns)).to eq([])
    end
  end

  describe "testing helpers" do
    it "report a result too deep to convert as result_too_deep" do
      result = TaskerCore::Testing.run_handler(->(_c) { nested(200) })
      expect(result).to have_error_type("result_too_deep")
    end
  end
end
