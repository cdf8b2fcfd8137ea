# frozen_string_literal: true

module TaskerCore
  # One failed attempt of a step, as the engine recorded it (the Hash form is {Step#last_error}).
  StepError = Struct.new(:message, :error_type, :retryable, :attempt, :retry_after_seconds, :backtrace, :metadata,
                         keyword_init: true)

  # One failed attempt of a step (see {StepDetail#errors}).
  class StepError
    # @api private
    # @param hash [Hash{String => Object}] the engine's error record
    # @return [StepError]
    def self.from_h(hash)
      new(message: hash["message"], error_type: hash["error_type"], retryable: hash["retryable"] ? true : false,
          attempt: hash["attempt"], retry_after_seconds: hash["retry_after_seconds"], backtrace: hash["backtrace"],
          metadata: hash["metadata"]).freeze
    end

    # Whether the engine would have tried again (attempts permitting).
    def retryable?
      retryable
    end
  end

  # A step as an operator sees it ({Client#get_step}, {Client#list_steps}, and what every operator
  # action returns): the {Step} row, plus every attempt's error, whether its dependencies are
  # satisfied, whether the engine will still run it by itself, and its audit trail.
  class StepDetail < Step
    # @return [Array<StepError>] the error of every failed attempt, oldest first (the newest is
    #   also {#last_error})
    attr_reader :errors
    # @return [Array<Transition>] the step's audit rows, oldest first; an operator's rows carry
    #   "by" and "reason" in their metadata
    attr_reader :transitions

    # @api private
    # @param s [Hash{String => Object}] the engine's step detail
    def initialize(s)
      super
      @errors = s["errors"].map { |e| StepError.from_h(e) }
      @dependencies_satisfied = s["dependencies_satisfied"]
      @retry_possible = s["retry_possible"]
      @transitions = s["transitions"].map { |t| Transition.new(t) }
    end

    # Whether every dependency is complete or resolved manually.
    def dependencies_satisfied?
      @dependencies_satisfied
    end

    # Whether the engine will run it again by itself: it waits for a retry, or it is still open
    # with attempts left. False for a step in `error`: only an operator can move it on.
    def retry_possible?
      @retry_possible
    end

    def inspect
      "#<TaskerCore::StepDetail #{name} #{state} attempts=#{attempts}/#{max_attempts} errors=#{errors.size}>"
    end
  end
end
