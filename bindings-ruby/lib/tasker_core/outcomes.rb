# frozen_string_literal: true

module TaskerCore
  # Results of decision and batchable steps. The engine reads the wire format
  # (`decision_point_outcome`, `batch_processing_outcome`) from a successful result; these build
  # it, so a handler may equally return the plain Hash. Other keys of the result are kept and
  # handed to dependent steps as usual.
  module StepResult
    DECISION_KEY = "decision_point_outcome"
    BATCH_KEY = "batch_processing_outcome"

    class << self
      # A decision step's success that creates the steps named `steps` (direct descendants of the
      # decision step in its template), and the steps that depend only on them.
      # @param steps [Array<String, Symbol>, String, Symbol] at least one step name
      # @param result [Hash] other keys of the result
      # @param metadata [Hash]
      # @return [Success]
      # @raise [InvalidArgumentError]
      def decision_success(steps:, result: {}, metadata: {})
        names = Array(steps).map do |name|
          unless (name.is_a?(String) || name.is_a?(Symbol)) && !name.to_s.empty?
            raise InvalidArgumentError, "steps must be step names (Strings or Symbols), got #{name.inspect}"
          end

          name.to_s
        end
        if names.empty?
          raise InvalidArgumentError, "decision_success needs at least one step name; " \
                                      "use decision_no_branches to create none"
        end

        outcome(DECISION_KEY, { "type" => "create_steps", "step_names" => names.uniq }, result, metadata)
      end

      # A decision step's success that creates no branch: the steps below it are never created,
      # and a `deferred_convergence` step waiting on them runs with none of their results.
      # @return [Success]
      def decision_no_branches(result: {}, metadata: {})
        outcome(DECISION_KEY, { "type" => "no_branches" }, result, metadata)
      end

      # A batchable step's success that creates one instance of the `batch_worker` step `worker`
      # per cursor: either `total` items split into batches of `batch_size` ({Batch.cursors}), or
      # explicit `cursors`. With nothing to process (no cursors) it is {no_batches}, so the
      # convergence step still runs.
      # @param worker [String, Symbol] the template's batch_worker step
      # @param total [Integer, nil] number of items (with `batch_size`; with `cursors`, only the
      #   recorded total, which defaults to the sum of the cursors' batch sizes)
      # @param batch_size [Integer, nil]
      # @param cursors [Array<Batch::Cursor, Hash>, nil] `batch_id`, `start_cursor`, `end_cursor`,
      #   `batch_size` (optional for Integer cursors)
      # @return [Success]
      # @raise [InvalidArgumentError]
      def create_batches(worker:, total: nil, batch_size: nil, cursors: nil, result: {}, metadata: {})
        unless (worker.is_a?(String) || worker.is_a?(Symbol)) && !worker.to_s.empty?
          raise InvalidArgumentError, "worker must name the template's batch_worker step, got #{worker.inspect}"
        end

        cursors = batch_cursors(total, batch_size, cursors)
        return no_batches(result: result, metadata: metadata) if cursors.empty?

        outcome(BATCH_KEY, { "type" => "create_batches", "worker_template_name" => worker.to_s,
                             "worker_count" => cursors.size, "total_items" => total || cursors.sum(&:batch_size),
                             "cursor_configs" => cursors.map(&:to_h) }, result, metadata)
      end

      # A batchable step's success with nothing to process: the engine creates one placeholder
      # worker instance (`no_op?`, cursor 0..0) so that the convergence step still runs.
      # @return [Success]
      def no_batches(result: {}, metadata: {})
        outcome(BATCH_KEY, { "type" => "no_batches" }, result, metadata)
      end

      private

      def batch_cursors(total, batch_size, cursors)
        if cursors.nil?
          raise InvalidArgumentError, "create_batches needs total: and batch_size:, or cursors:" if total.nil? || batch_size.nil?

          return Batch.cursors(total: total, batch_size: batch_size)
        end
        raise InvalidArgumentError, "create_batches takes cursors: or batch_size:, not both" unless batch_size.nil?
        unless total.nil? || (total.is_a?(Integer) && !total.negative?)
          raise InvalidArgumentError, "total must be a non-negative Integer, got #{total.inspect}"
        end
        raise InvalidArgumentError, "cursors must be an Array, got #{cursors.inspect}" unless cursors.is_a?(Array)

        cursors.each_with_index.map { |c, i| Batch.cursor(c, i) }
      end

      def outcome(key, value, result, metadata)
        raise InvalidArgumentError, "result must be a Hash (its keys go beside #{key}), got #{result.inspect}" \
          unless result.is_a?(Hash)
        if result.key?(key) || result.key?(key.to_sym)
          raise InvalidArgumentError, "result already has #{key}; pass the other keys only"
        end

        Success.new(result: result.merge(key => value), metadata: metadata)
      end
    end

    # @api private
    # `hash[key]` for String or Symbol keys.
    def self.read(hash, key)
      return nil unless hash.is_a?(Hash)

      hash.key?(key) ? hash[key] : hash[key.to_sym]
    end

    # The decision a result carries, read back (e.g. in a test): {Success#decision}.
    class Decision
      # @return [String] "create_steps" or "no_branches"
      attr_reader :type
      # @return [Array<String>] the chosen steps ([] for no_branches)
      attr_reader :steps

      # @param result [Object] a step result (a Hash with String or Symbol keys)
      # @return [Decision, nil] nil when the result carries no decision
      def self.from(result)
        outcome = StepResult.read(result, DECISION_KEY)
        return nil unless outcome.is_a?(Hash)

        new(type: StepResult.read(outcome, "type").to_s, steps: Array(StepResult.read(outcome, "step_names")).map(&:to_s))
      end

      def initialize(type:, steps: [])
        @type = type
        @steps = steps
      end

      def no_branches?
        type == "no_branches"
      end

      def inspect
        "#<TaskerCore::StepResult::Decision #{no_branches? ? 'no_branches' : steps.inspect}>"
      end
    end

    # The batch outcome a result carries, read back (e.g. in a test): {Success#batches}.
    class Batches
      # @return [String] "create_batches" or "no_batches"
      attr_reader :type
      # @return [String, nil] the batch_worker step
      attr_reader :worker
      # @return [Integer]
      attr_reader :worker_count
      # @return [Integer, nil]
      attr_reader :total_items
      # @return [Array<Batch::Cursor>]
      attr_reader :cursors

      # @param result [Object] a step result (a Hash with String or Symbol keys)
      # @return [Batches, nil] nil when the result carries no batch outcome
      def self.from(result)
        outcome = StepResult.read(result, BATCH_KEY)
        return nil unless outcome.is_a?(Hash)

        configs = Array(StepResult.read(outcome, "cursor_configs"))
        cursors = configs.map do |c|
          Batch::Cursor.new(batch_id: StepResult.read(c, "batch_id"), start_cursor: StepResult.read(c, "start_cursor"),
                            end_cursor: StepResult.read(c, "end_cursor"), batch_size: StepResult.read(c, "batch_size"))
        end
        new(type: StepResult.read(outcome, "type").to_s, worker: StepResult.read(outcome, "worker_template_name")&.to_s,
            worker_count: StepResult.read(outcome, "worker_count") || cursors.size,
            total_items: StepResult.read(outcome, "total_items"), cursors: cursors)
      end

      def initialize(type:, worker: nil, worker_count: 0, total_items: nil, cursors: [])
        @type = type
        @worker = worker
        @worker_count = worker_count
        @total_items = total_items
        @cursors = cursors
      end

      def no_batches?
        type == "no_batches"
      end

      def inspect
        return "#<TaskerCore::StepResult::Batches no_batches>" if no_batches?

        "#<TaskerCore::StepResult::Batches #{worker} x#{worker_count} total=#{total_items.inspect}>"
      end
    end
  end
end
