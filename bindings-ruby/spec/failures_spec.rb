# frozen_string_literal: true

require "spec_helper"

RSpec.describe "handler failures, retries and bad input" do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    def run_fixture(file, context = {}, steps: {}, handlers: nil)
      ns = register_fixture(client, file, steps: steps)
      with_worker(client, queues: [ns], handlers: handlers) do
        task = client.create_task(namespace: ns, name: template_name(file), context: context)
        task.wait(timeout: 60)
      end
    end

    it "retries a handler that raises, then succeeds" do
      task = run_fixture("retries.yaml")
      expect(task).to be_complete
      step = task.step("flaky")
      expect(step.attempts).to eq(3)
      expect(step.results).to eq("attempt" => 3, "was_retry" => true, "last_retry" => true)
      retries = task.transitions.select { |t| t.step_name == "flaky" && t.to_state == "waiting_for_retry" }
      expect(retries.size).to eq(2)
      expect(step.last_error).to include("error_type" => "IOError", "message" => "flaky failure on attempt 2",
                                         "retryable" => true)
    end

    it "does not retry a PermanentError and fails the task" do
      task = run_fixture("permanent.yaml")
      expect(task.state).to eq("error")
      first = task.step("first")
      expect(first.state).to eq("error")
      expect(first.attempts).to eq(1)
      expect(first.last_error).to include("message" => "card declined", "error_type" => "card_declined",
                                          "retryable" => false, "metadata" => { "code" => 51 })
      expect(task.step("never_runs").attempts).to eq(0)
    end

    it "fails the step after its attempts are exhausted, recording class, message and backtrace" do
      task = run_fixture("exhaustion.yaml")
      expect(task.state).to eq("error")
      step = task.step("always_fails")
      expect(step.state).to eq("error")
      expect(step.attempts).to eq(3)
      expect(step.last_error).to include("error_type" => "ArgumentError", "message" => "bad thing on attempt 3",
                                         "retryable" => true)
      expect(step.last_error["backtrace"]).to include("handlers.rb")
      expect(step.last_error["metadata"]).to eq("exception_class" => "ArgumentError")
    end

    it "honours retry_after from a RetryableError over the template's backoff" do
      task = run_fixture("retry_after.yaml")
      expect(task).to be_complete
      step = task.step("rate_limited")
      expect(step.attempts).to eq(2)
      expect(step.results).to eq("attempt" => 2)
      waiting = task.transitions.find { |t| t.step_name == "rate_limited" && t.to_state == "waiting_for_retry" }
      expect(waiting).not_to be_nil
      # Database timestamps: the second attempt cannot start before retry_after has passed.
      expect(step.last_attempted_at - waiting.created_at).to be >= 1.0
      expect(step.last_attempted_at - step.first_attempted_at).to be >= 1.0
    end

    it "treats returned failures like raised ones" do
      task = run_fixture("returned_failure.yaml")
      expect(task.state).to eq("error")
      soft = task.step("soft_fail_then_succeed")
      expect(soft).to have_attributes(state: "complete", attempts: 2, result: { "attempt" => 2 })
      hard = task.step("hard_fail")
      expect(hard).to have_attributes(state: "error", attempts: 1)
      expect(hard.last_error).to include("error_type" => "invalid_account", "retryable" => false)
    end

    describe "bad input" do
      def bad_task
        @bad_task ||= run_fixture("bad_input.yaml", { "order_id" => 7, "customer" => { "email" => "a@b.c" } })
      end

      it "fails an unknown class callable permanently with handler_not_found naming it" do
        step = bad_task.step("unknown_class")
        expect(step).to have_attributes(state: "error", attempts: 1)
        expect(step.last_error).to include("error_type" => "handler_not_found", "retryable" => false)
        expect(step.last_error["message"]).to include("RbSpec::DoesNotExist")
      end

      it "fails an unregistered name permanently with handler_not_found naming it" do
        step = bad_task.step("unknown_name")
        expect(step).to have_attributes(state: "error", attempts: 1)
        expect(step.last_error).to include("error_type" => "handler_not_found")
        expect(step.last_error["message"]).to include("no_such_handler_registered")
      end

      it "fails a callable naming a constant that is not a handler" do
        step = bad_task.step("not_a_handler")
        expect(step.last_error).to include("error_type" => "handler_not_found")
        expect(step.last_error["message"]).to include("RbSpec::NOT_A_HANDLER is a String")
      end

      it "fails results without a JSON form with result_not_serializable naming the value" do
        expectations = {
          "nan_result" => ["result.ratio", "NaN"],
          "object_result" => ["result.items[1]", "Object is not a JSON type"],
          "invalid_utf8_result" => ["result.name", "not valid UTF-8"],
          "cyclic_result" => ["result.self", "nested more than"]
        }
        expectations.each do |name, (path, text)|
          step = bad_task.step(name)
          expect(step).to have_attributes(state: "error", attempts: 1)
          expect(step.last_error).to include("error_type" => "result_not_serializable", "retryable" => false)
          expect(step.last_error["message"]).to include(path).and include(text)
          expect(step.last_error["metadata"]["path"]).to start_with(path)
        end
      end

      it "keeps serving the other steps of the same worker" do
        expect(bad_task.step("good_step")).to have_attributes(state: "complete", result: { "ok" => true, "order" => 7 })
        expect(bad_task.state).to eq("error")
      end

      it "rejects a schema-invalid context with a ValidationError naming the property" do
        ns = register_fixture(client, "bad_input.yaml")
        expect do
          client.create_task(namespace: ns, name: "bad_input_workflow", context: { "order_id" => 0, "customer" => {} })
        end.to raise_error(TaskerCore::ValidationError) { |e|
          expect(e.code).to eq("validation_failed")
          expect(e.path).to match(%r{/order_id|/customer})
          expect(e.message).to match(/order_id|email/)
        }
        expect do
          client.create_task(namespace: ns, name: "bad_input_workflow",
                             context: { "order_id" => "x", "customer" => { "email" => "e" } })
        end.to raise_error(TaskerCore::ValidationError) { |e| expect(e.path).to eq("/order_id") }
        expect do
          client.create_task(namespace: ns, name: "bad_input_workflow",
                             context: { "order_id" => 1, "customer" => { "email" => 5 } })
        end.to raise_error(TaskerCore::ValidationError) { |e| expect(e.path).to eq("/customer/email") }
        expect do
          client.create_task(namespace: ns, name: "bad_input_workflow",
                             context: { "order_id" => 1, "customer" => { "email" => 5.0 / 0 } })
        end.to raise_error(TaskerCore::SerializationError) { |e| expect(e.path).to eq("context.customer.email") }
      end

      it "keeps the worker serving new tasks after bad steps" do
        ns = register_fixture(client, "bad_input.yaml")
        linear = register_fixture(client, "linear.yaml")
        with_worker(client, queues: [ns, linear], concurrency: 2) do
          bad = client.create_task(namespace: ns, name: "bad_input_workflow",
                                   context: { "order_id" => 1, "customer" => { "email" => "x" } })
          bad.wait(timeout: 60)
          good = client.create_task(namespace: linear, name: "linear_workflow", context: { "even_number" => 4 })
          good.wait(timeout: 60)
          expect(bad.state).to eq("error")
          expect(good).to be_complete
          expect(good.step("linear_step_4").results["value"]).to eq(4**16)
        end
      end
    end
  end
end
