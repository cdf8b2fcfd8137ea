# frozen_string_literal: true

require "spec_helper"

RSpec.describe TaskerCore::Testing do
  let(:context) do
    build_step_context(input: { order_id: 7, items: [{ sku: "A", qty: 2 }] },
                       dependency_results: { validate: { "ok" => true } },
                       config: { rate: 0.5 }, attempt: 2, max_attempts: 3)
  end

  describe ".build_step_context" do
    it "builds a context from plain data, with String keys like a worker gives" do
      expect(context.input).to eq("order_id" => 7, "items" => [{ "sku" => "A", "qty" => 2 }])
      expect(context.config).to eq("rate" => 0.5)
      expect(context.dependency_result(:validate)).to eq("ok" => true)
      expect(context.dependency_result("missing")).to be_nil
      expect(context.attempt).to eq(2)
      expect(context).to be_retry
      expect(context).not_to be_last_retry
      expect(build_step_context(attempt: 3, max_attempts: 3)).to be_last_retry
      expect(build_step_context).not_to be_retry
      expect(context.task_uuid).to match(/\A\h{8}-/)
    end

    it "rejects data a worker could never deliver" do
      expect { build_step_context(input: { "x" => Float::INFINITY }) }
        .to raise_error(TaskerCore::SerializationError, /result\.x/)
    end
  end

  describe ".run_handler" do
    let(:class_handler) do
      Class.new(TaskerCore::StepHandler::Base) do
        def call(context)
          success(result: { total: context.input["order_id"] * config.fetch("rate", 1) }, metadata: { took: 1 })
        end
      end
    end

    it "runs class handlers with the context's config" do
      result = run_handler(class_handler, context)
      expect(result).to be_success
      expect(result).to have_result("total" => 3.5)
      expect(result).to have_result(total: 3.5)
      expect(result).to have_result(include("total"))
      expect(result.metadata).to eq("took" => 1)
    end

    it "runs block handlers by name" do
      TaskerCore.step_handler("testing_spec_block") { |ctx| { "seen" => ctx.dependency_results.keys } }
      expect(run_handler("testing_spec_block", context)).to have_result("seen" => ["validate"])
    end

    it "turns exceptions into failures like a worker" do
      raising = Class.new(TaskerCore::StepHandler::Base) { def call(_context) = raise(KeyError, "no key") }
      permanent = Class.new(TaskerCore::StepHandler::Base) { def call(_context) = raise(TaskerCore::PermanentError, "stop") }
      later = Class.new(TaskerCore::StepHandler::Base) do
        def call(_context) = raise(TaskerCore::RetryableError.new("later", retry_after: 5))
      end

      result = run_handler(raising, context)
      expect(result).to be_retryable
      expect(result).to have_error_type("KeyError")
      expect(result.message).to eq("no key")
      expect(result.backtrace).to include("testing_spec.rb")
      expect(run_handler(permanent, context)).to be_failure
      expect(run_handler(permanent, context)).not_to be_retryable
      expect(run_handler(later, context).retry_after).to eq(5)
    end

    it "reports unserializable results and unknown handlers like a worker" do
      nan = ->(_ctx) { { "x" => Float::NAN } }
      expect(run_handler(nan, context)).to have_error_type("result_not_serializable")
      expect(run_handler("testing_spec_never_defined", context)).to have_error_type("handler_not_found")
      expect(run_handler("Testing::Spec::Missing", context)).not_to be_retryable
    end

    it "accepts lambdas and objects with #call" do
      expect(run_handler(->(ctx) { ctx.attempt }, context)).to have_result(2)
    end
  end

  describe "matchers" do
    it "treat a returned Hash as a success" do
      expect({ "a" => 1 }).to be_success
      expect({ a: 1 }).to have_result("a" => 1)
    end

    it "leave be_success and be_failure to objects that answer success?/failure? themselves" do
      failed = Struct.new(:success?).new(false)
      expect(failed).not_to be_success
      expect(Struct.new(:success?).new(true)).to be_success
      _, status = Process.wait2(Process.spawn(RbConfig.ruby, "-e", "exit 3"))
      expect(status).not_to be_success
    end

    it "fail when they should" do
      failure = TaskerCore::StepResult::Failure.new(message: "boom", error_type: "x", retryable: false)
      expect { expect(failure).to be_success }.to raise_error(RSpec::Expectations::ExpectationNotMetError, /boom/)
      expect { expect(failure).to be_retryable }.to raise_error(RSpec::Expectations::ExpectationNotMetError)
      expect { expect(failure).to have_result({}) }.to raise_error(RSpec::Expectations::ExpectationNotMetError, /failed/)
      expect { expect({ "a" => 1 }).to have_result("a" => 2) }
        .to raise_error(RSpec::Expectations::ExpectationNotMetError, /expected result/)
      expect { expect({ "a" => 1 }).to be_failure }.to raise_error(RSpec::Expectations::ExpectationNotMetError)
    end
  end

  describe TaskerCore::StepHandler::Base do
    it "knows its handler name" do
      named = Class.new(described_class) { handler_name "custom.name" }
      expect(named.handler_name).to eq("custom.name")
      expect(RbSpec::Linear::Square.handler_name).to eq("RbSpec::Linear::Square")
    end

    it "validates retry_after" do
      handler = described_class.new
      expect { handler.failure(message: "x", retry_after: -1) }.to raise_error(TaskerCore::InvalidArgumentError, /retry_after/)
      expect(handler.failure(message: "x", retry_after: 1.5).retry_after).to eq(1.5)
    end

    it "requires subclasses to implement call" do
      expect(run_handler(Class.new(described_class))).to have_error_type("NotImplementedError")
    end
  end
end
