# frozen_string_literal: true

require "logger"
require "time"

require_relative "tasker_core/version"
require_relative "tasker_core/errors"
require_relative "tasker_core/config"
require_relative "tasker_core/native"
require_relative "tasker_core/logging"
require_relative "tasker_core/step_result"
require_relative "tasker_core/outcomes"
require_relative "tasker_core/batch"
require_relative "tasker_core/step_context"
require_relative "tasker_core/step_handler"
require_relative "tasker_core/handler_registry"
require_relative "tasker_core/execution"
require_relative "tasker_core/task"
require_relative "tasker_core/recovery"
require_relative "tasker_core/dlq"
require_relative "tasker_core/events"
require_relative "tasker_core/subscriber"
require_relative "tasker_core/subscriber_runner"
require_relative "tasker_core/client"
require_relative "tasker_core/worker"
require_relative "tasker_core/testing"

# Tasker for Ruby: workflows of steps (task templates), run by step handlers written as Ruby
# classes, on an embedded Rust engine that persists to SQLite or PostgreSQL.
#
#   client = TaskerCore.connect(database_url: "sqlite://tasker.db")
#   client.register_templates("config/tasker/templates")
#   task = client.create_task(namespace: "payments", name: "charge", context: { "amount_cents" => 500 })
#   TaskerCore::Worker.new(client, queues: ["payments"]).run
module TaskerCore
  @handlers = HandlerRegistry.new
  @logger = nil

  class << self
    # Handlers defined with {step_handler} (and any registered with `TaskerCore.handlers.register`),
    # consulted by every worker.
    # @return [HandlerRegistry]
    attr_reader :handlers

    # Where the gem logs, and where the engine's own log records go (see {Logging}): by default
    # `$stderr` at WARN; under Rails, `Rails.logger`.
    # @return [Logger]
    def logger
      @logger ||= Logger.new($stderr, level: Logger::WARN, progname: "tasker")
    end

    # Takes effect at once, for the engine's records too (the forwarding thread reads it for
    # every record).
    # @param logger [Logger]
    attr_writer :logger

    # Connects to Tasker's database, running migrations if needed.
    #
    # Reads the same configuration as the `tasker` CLI (docs/configuration.md): the TOML tree
    # under `TASKER_CONFIG_ROOT` (else `./config/tasker`), then `TASKER_<SECTION>__<KEY>`
    # variables; the arguments given here win over both. The URL: `database_url`, else
    # `TASKER_DATABASE_URL`, else `DATABASE_URL`, else `database.url`, else `sqlite://./tasker.db`.
    #
    # The first connect of a process also starts writing the engine's log records to {logger}
    # ({Logging.start}). Should that fail (`TASKER_LOG` is not a filter), a warning says so and the
    # connection is returned all the same.
    # @param database_url [String, nil] `sqlite://PATH`, a file path, or `postgres://...`
    # @param max_connections [Integer, nil] PostgreSQL pool size (default `database.max_connections`, 10)
    # @return [Client]
    # @raise [ConnectionError]
    # @raise [ConfigurationError] the configuration does not load (see {ConfigurationError#problems})
    def connect(database_url: nil, max_connections: nil)
      unless database_url.nil? || database_url.is_a?(String)
        raise InvalidArgumentError, "database_url must be a String or nil, got #{database_url.inspect}"
      end
      unless max_connections.nil? || (max_connections.is_a?(Integer) && max_connections.positive?)
        raise InvalidArgumentError, "max_connections must be a positive Integer, got #{max_connections.inspect}"
      end

      client = Client.new(Native::Client.connect(database_url, max_connections))
      forward_logs
      client
    end

    # The configuration this process connects and starts workers with, read now: every key with
    # its value (secrets redacted) and where the value came from, like `tasker config show`.
    # @return [Array<ConfigValue>] sorted by key
    # @raise [ConfigurationError]
    def config
      Native.config.map { |h| ConfigValue.from_hash(h) }
    end

    # Defines a handler from a block and registers it under `name` in {handlers}.
    #
    #   TaskerCore.step_handler("send_receipt") do |context|
    #     { "sent_to" => context.input["email"] }
    #   end
    #
    # The block runs with a {StepHandler::Base} instance as `self` (`success`, `failure` and
    # `config` are available).
    # @param name [String, Symbol] the callable steps name in their template
    # @return [Class] the handler class
    def step_handler(name, &block)
      klass = StepHandler.from_block(name.to_s, &block)
      handlers.register(klass, name: name.to_s)
      klass
    end

    # @api private
    def parse_time(value)
      value && Time.iso8601(value)
    end

    private

    def forward_logs
      Logging.start
    rescue Error => e
      logger.warn("tasker: the engine's log records are not forwarded: #{e.message}")
    end
  end
end

require_relative "tasker_core/railtie" if defined?(Rails::Railtie)
