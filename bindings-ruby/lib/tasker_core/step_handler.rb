# frozen_string_literal: true

module TaskerCore
  # Step handler base classes: {Base} for classes, {Block} for {TaskerCore.step_handler}.
  module StepHandler
    # Base class of step handlers.
    #
    #   class ChargeCard < TaskerCore::StepHandler::Base
    #     def call(context)
    #       charge = Payments.charge(context.input["amount_cents"])
    #       success(result: { charge_id: charge.id })
    #     end
    #   end
    #
    # A new instance is made for every attempt, with the template's `initialization` as
    # {#config}. `call` returns {#success}, {#failure}, or any JSON value (a Hash is the usual
    # case), which is taken as a success. Exceptions become failures: {PermanentError} is not
    # retried, {RetryableError} may set `retry_after`, anything else is retried.
    class Base
      class << self
        # Sets or returns the name steps use to call this handler (`handler.callable`).
        # Defaults to the class name, which `Object.const_get` also resolves.
        # @param name [String, nil]
        # @return [String, nil]
        def handler_name(name = nil)
          @handler_name = name.to_s if name
          @handler_name || self.name
        end
      end

      # @return [Hash] the step's `handler.initialization` from the template
      attr_reader :config

      # @param config [Hash]
      def initialize(config: {})
        @config = config || {}
      end

      # Runs one attempt of the step.
      # @param context [StepContext]
      # @return [StepResult::Success, StepResult::Failure, Hash, Object]
      def call(context)
        raise NotImplementedError, "#{self.class.name || self.class} must implement #call(context)"
      end

      # A successful result.
      # @param result [Object] JSON data passed to dependent steps
      # @param metadata [Hash]
      # @return [StepResult::Success]
      def success(result: {}, metadata: {})
        StepResult::Success.new(result: result, metadata: metadata)
      end

      # A failed attempt.
      # @param message [String]
      # @param error_type [String]
      # @param retryable [Boolean]
      # @param retry_after [Numeric, nil] seconds before the next attempt
      # @param metadata [Hash]
      # @return [StepResult::Failure]
      def failure(message:, error_type: "handler_failure", retryable: true, retry_after: nil, metadata: {})
        StepResult::Failure.new(message: message, error_type: error_type, retryable: retryable,
                                retry_after: retry_after, metadata: metadata)
      end

      # A decision step's success creating the steps named `steps` (see
      # {StepResult.decision_success}).
      #
      #   amount < 1000 ? decision_success(steps: ["auto_approve"]) : decision_success(steps: %w[manager finance])
      #
      # @param steps [Array<String, Symbol>, String, Symbol]
      # @param result [Hash] other keys of the result, handed to dependents
      # @return [StepResult::Success]
      def decision_success(steps:, result: {}, metadata: {})
        StepResult.decision_success(steps: steps, result: result, metadata: metadata)
      end

      # A decision step's success creating no branch.
      # @return [StepResult::Success]
      def decision_no_branches(result: {}, metadata: {})
        StepResult.decision_no_branches(result: result, metadata: metadata)
      end

      # A batchable step's success creating one `worker` instance per cursor: `total:` items in
      # batches of `batch_size:`, or explicit `cursors:` (see {StepResult.create_batches}). No
      # cursors at all is {#no_batches}.
      #
      #   create_batches(worker: "process_batch", total: rows.count, batch_size: 1000)
      #
      # @return [StepResult::Success]
      def create_batches(worker:, total: nil, batch_size: nil, cursors: nil, result: {}, metadata: {})
        StepResult.create_batches(worker: worker, total: total, batch_size: batch_size, cursors: cursors,
                                  result: result, metadata: metadata)
      end

      # A batchable step's success with nothing to process (one no-op worker instance runs, then
      # the convergence step).
      # @return [StepResult::Success]
      def no_batches(result: {}, metadata: {})
        StepResult.no_batches(result: result, metadata: metadata)
      end
    end

    # A handler defined with {TaskerCore.step_handler}: the block runs with the handler
    # instance as `self`, so `success`, `failure`, the decision and batch helpers and `config`
    # are available in it.
    class Block < Base
      class << self
        # @api private
        attr_accessor :block
      end

      def call(context)
        instance_exec(context, &self.class.block)
      end
    end

    # Defines a handler class from a block.
    # @api private
    def self.from_block(name, &block)
      raise ArgumentError, "step_handler needs a block" unless block

      klass = Class.new(Block)
      klass.block = block
      klass.handler_name(name)
      klass
    end
  end
end
