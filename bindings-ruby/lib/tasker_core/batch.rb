# frozen_string_literal: true

module TaskerCore
  # Batch processing: a `batchable` step splits its work into cursor ranges (see
  # {StepHandler::Base#create_batches}), and the engine runs one instance of the template's
  # `batch_worker` step per range (`<worker>_001`, `<worker>_002`, ...), each seeing its range as
  # {StepContext#batch}.
  module Batch
    # Batch ids have at least this many digits ("001"), more when there are more batches.
    ID_DIGITS = 3

    # One cursor range handed to a batch worker instance, as in the wire format's
    # `cursor_configs`. Cursors are JSON values: usually Integers, but a handler may use Strings
    # (keys, timestamps) or anything else its worker understands.
    Cursor = Struct.new(:batch_id, :start_cursor, :end_cursor, :batch_size, keyword_init: true) do
      # The wire form, with String keys.
      # @return [Hash{String => Object}]
      def to_h
        { "batch_id" => batch_id, "start_cursor" => start_cursor, "end_cursor" => end_cursor,
          "batch_size" => batch_size }
      end
      alias_method :to_wire, :to_h
    end

    class << self
      # Splits `total` items into batches of `batch_size`: ids "001", "002", ... (more digits
      # past 999 batches), `start_cursor` i * batch_size, `end_cursor` (exclusive) capped at
      # `total`, so the last batch may be smaller. No items, no cursors.
      #
      #   TaskerCore::Batch.cursors(total: 2500, batch_size: 1000).map(&:end_cursor)  # => [1000, 2000, 2500]
      #
      # @param total [Integer] number of items (>= 0)
      # @param batch_size [Integer] items per batch (> 0)
      # @return [Array<Cursor>]
      # @raise [InvalidArgumentError]
      def cursors(total:, batch_size:)
        unless total.is_a?(Integer) && !total.negative?
          raise InvalidArgumentError, "total must be a non-negative Integer, got #{total.inspect}"
        end
        unless batch_size.is_a?(Integer) && batch_size.positive?
          raise InvalidArgumentError, "batch_size must be a positive Integer, got #{batch_size.inspect}"
        end

        count = (total + batch_size - 1) / batch_size
        width = [ID_DIGITS, count.to_s.size].max
        Array.new(count) do |i|
          start = i * batch_size
          stop = [start + batch_size, total].min
          Cursor.new(batch_id: (i + 1).to_s.rjust(width, "0"), start_cursor: start, end_cursor: stop,
                     batch_size: stop - start)
        end
      end

      # @api private
      # A cursor given to {StepHandler::Base#create_batches}: a {Cursor}, or a Hash with
      # `batch_id`, `start_cursor`, `end_cursor` and (optional for Integer cursors) `batch_size`,
      # Symbol or String keys.
      # @return [Cursor]
      def cursor(value, index)
        return value if value.is_a?(Cursor)
        raise InvalidArgumentError, "cursors[#{index}] must be a Hash or a Batch::Cursor, got #{value.inspect}" \
          unless value.is_a?(Hash)

        get = ->(key) { value.key?(key.to_s) ? value[key.to_s] : value[key] }
        batch_id = get.call(:batch_id)
        start = get.call(:start_cursor)
        stop = get.call(:end_cursor)
        raise InvalidArgumentError, "cursors[#{index}] needs a batch_id String, got #{batch_id.inspect}" \
          unless batch_id.is_a?(String) && !batch_id.empty?
        raise InvalidArgumentError, "cursors[#{index}] needs start_cursor and end_cursor" if start.nil? || stop.nil?

        size = get.call(:batch_size)
        size = stop - start if size.nil? && start.is_a?(Integer) && stop.is_a?(Integer)
        raise InvalidArgumentError, "cursors[#{index}] needs a non-negative Integer batch_size, got #{size.inspect}" \
          unless size.is_a?(Integer) && !size.negative?

        Cursor.new(batch_id: batch_id, start_cursor: start, end_cursor: stop, batch_size: size)
      end
    end
  end

  # Progress recorded by a batch worker with {BatchContext#checkpoint}. {StepContext#checkpoint}
  # is the last one an earlier attempt of the step recorded; {Step#checkpoint} the last one of
  # any attempt.
  class Checkpoint
    # @return [Object] where to resume (JSON)
    attr_reader :cursor
    # @return [Integer] items done up to {#cursor}
    attr_reader :items_done
    # @return [Object, nil] whatever the worker carried along (running totals, ...), JSON
    attr_reader :accumulated
    # @return [Integer, nil] the attempt that recorded it
    attr_reader :attempt
    # @return [Time, nil] when it was stored
    attr_reader :recorded_at

    # @api private
    # @param hash [Hash, nil] the engine's form (String keys)
    # @return [Checkpoint, nil]
    def self.from_h(hash)
      return nil if hash.nil?
      return hash if hash.is_a?(Checkpoint)

      get = ->(key) { hash.key?(key.to_s) ? hash[key.to_s] : hash[key] }
      recorded = get.call(:recorded_at)
      new(cursor: get.call(:cursor), items_done: get.call(:items_done) || 0, accumulated: get.call(:accumulated),
          attempt: get.call(:attempt), recorded_at: recorded.is_a?(String) ? Time.iso8601(recorded) : recorded)
    end

    def initialize(cursor:, items_done: 0, accumulated: nil, attempt: nil, recorded_at: nil)
      @cursor = cursor
      @items_done = items_done
      @accumulated = accumulated
      @attempt = attempt
      @recorded_at = recorded_at
    end

    # @return [Hash{String => Object}]
    def to_h
      { "cursor" => cursor, "items_done" => items_done, "accumulated" => accumulated, "attempt" => attempt,
        "recorded_at" => recorded_at&.iso8601(6) }
    end

    def ==(other)
      other.is_a?(Checkpoint) && to_h == other.to_h
    end
    alias eql? ==

    def hash
      to_h.hash
    end

    def inspect
      "#<TaskerCore::Checkpoint cursor=#{cursor.inspect} items_done=#{items_done} attempt=#{attempt.inspect}>"
    end
  end

  # The batch a batch worker instance processes ({StepContext#batch}), and where it records its
  # progress.
  #
  #   def call(context)
  #     batch = context.batch
  #     sum = context.checkpoint&.accumulated&.fetch("sum") || 0
  #     (batch.resume_cursor...batch.end_cursor).each_slice(100) do |slice|
  #       sum += slice.sum
  #       batch.checkpoint(slice.last + 1, items_done: slice.last + 1 - batch.start_cursor, accumulated: { sum: sum })
  #     end
  #     { sum: sum }
  #   end
  class BatchContext
    # @return [String] "001", "002", ... ("000" for the no-op placeholder of `no_batches`)
    attr_reader :batch_id
    # @return [Object] first item (inclusive), JSON: usually an Integer
    attr_reader :start_cursor
    # @return [Object] end of the range (exclusive for Integer cursors from {Batch.cursors})
    attr_reader :end_cursor
    # @return [Integer]
    attr_reader :batch_size
    # @return [Hash] the worker template step's `batch_config` ({} when it has none)
    attr_reader :config
    # @return [Checkpoint, nil] the last checkpoint of an earlier attempt
    attr_reader :last_checkpoint
    # @api private
    # @return [#call, nil] where {#checkpoint} sends its payload
    attr_reader :checkpointer

    alias batch_config config

    # @api private
    # @param hash [Hash, nil] the engine's `batch` of a step event (String keys)
    # @return [BatchContext, nil]
    def self.from_h(hash, checkpoint: nil, checkpointer: nil)
      return nil if hash.nil?

      get = ->(key) { hash.key?(key.to_s) ? hash[key.to_s] : hash[key] }
      new(batch_id: get.call(:batch_id), start_cursor: get.call(:start_cursor), end_cursor: get.call(:end_cursor),
          batch_size: get.call(:batch_size), no_op: get.call(:is_no_op) ? true : false,
          config: get.call(:batch_config), checkpoint: checkpoint, checkpointer: checkpointer)
    end

    # @param checkpointer [#call, nil] receives each checkpoint's payload (Hash with String keys);
    #   a worker passes one that stores it, the testing helpers one that records it
    def initialize(batch_id:, start_cursor:, end_cursor:, batch_size:, no_op: false, config: nil, checkpoint: nil,
                   checkpointer: nil)
      @batch_id = batch_id
      @start_cursor = start_cursor
      @end_cursor = end_cursor
      @batch_size = batch_size
      @no_op = no_op ? true : false
      @config = config || {}
      @last_checkpoint = checkpoint
      @checkpointer = checkpointer
    end

    # Whether this is the placeholder instance made for `no_batches` (cursor 0..0): it exists so
    # that the convergence step runs, and should return at once.
    def no_op?
      @no_op
    end

    # Where to start: the cursor of the last checkpoint of an earlier attempt, else
    # {#start_cursor}.
    # @return [Object]
    def resume_cursor
      last_checkpoint ? last_checkpoint.cursor : start_cursor
    end

    # `start_cursor...end_cursor`, for Integer cursors.
    # @return [Range]
    # @raise [InvalidArgumentError] when the cursors are not Integers
    def range
      unless start_cursor.is_a?(Integer) && end_cursor.is_a?(Integer)
        raise InvalidArgumentError, "range needs Integer cursors, got #{start_cursor.inspect}..#{end_cursor.inspect}"
      end

      start_cursor...end_cursor
    end

    # Records progress now (it is committed before this returns): if this attempt fails, times
    # out or its worker dies, the next attempt gets it as {StepContext#checkpoint} and can resume
    # from `cursor`.
    # @param cursor [Object] where to resume (JSON, not nil)
    # @param items_done [Integer] items processed so far in this batch
    # @param accumulated [Object, nil] partial results to carry over (JSON)
    # @return [nil]
    # @raise [FencedError] this attempt no longer holds the step (it timed out, was re-claimed or
    #   cancelled): stop, nobody will use its result
    # @raise [InvalidArgumentError, SerializationError] for a nil cursor, a bad items_done or
    #   values without a JSON form
    def checkpoint(cursor, items_done: 0, accumulated: nil)
      raise InvalidArgumentError, "checkpoint needs a cursor (where to resume), got nil" if cursor.nil?
      unless items_done.is_a?(Integer) && !items_done.negative?
        raise InvalidArgumentError, "items_done must be a non-negative Integer, got #{items_done.inspect}"
      end

      unless @checkpointer
        raise InvalidArgumentError, "cannot record a checkpoint here: only the context.batch of a running attempt " \
                                    "(or of a context from Testing.build_batch_context) records checkpoints"
      end

      payload = { "cursor" => cursor, "items_done" => items_done }
      payload["accumulated"] = accumulated unless accumulated.nil?
      @checkpointer.call(payload)
      nil
    end

    # @return [Hash{String => Object}] the engine's form
    def to_h
      { "batch_id" => batch_id, "start_cursor" => start_cursor, "end_cursor" => end_cursor, "batch_size" => batch_size,
        "is_no_op" => no_op?, "batch_config" => config }
    end

    def inspect
      "#<TaskerCore::BatchContext #{batch_id} #{start_cursor.inspect}..#{end_cursor.inspect}#{' no-op' if no_op?}>"
    end
  end
end
