# frozen_string_literal: true

require "rails/railtie"

module TaskerCore
  # Rails integration, loaded automatically when Rails is present.
  #
  #   # config/application.rb (or an environment file)
  #   config.tasker.database_url = ENV["TASKER_DATABASE_URL"]  # default: like the tasker CLI
  #   config.tasker.queues = %w[payments]                      # default: namespaces of template_paths
  #   config.tasker.concurrency = 5                           # default: the configuration's
  #   config.tasker.template_paths = [Rails.root.join("config/tasker/templates")]
  #
  # The worker starts after the app's initializers (`config.after_initialize`) when
  # `config.tasker.start_worker` is true, or, when it is nil (the default), in `rails server`
  # processes (`Rails::Server` is defined) and in any process started with `TASKER_WORKER=1`
  # (e.g. a dedicated `TASKER_WORKER=1 bin/rails runner 'sleep'` process, or puma started
  # directly). Set `TASKER_WORKER=0` to keep a server process from running handlers. It stops
  # when the process exits (at_exit), waiting `config.tasker.shutdown_timeout` seconds for running
  # handlers. Handlers run inside `Rails.application.reloader.wrap`, so autoloaded handler classes
  # reload in development and Active Record connections are returned after each step.
  #
  # Settings left nil come from the configuration the `tasker` CLI reads (`config/tasker/base/*.toml`
  # of the app, `TASKER_<SECTION>__<KEY>` variables; see docs/configuration.md).
  class Railtie < ::Rails::Railtie
    config.tasker = ActiveSupport::OrderedOptions.new
    config.tasker.database_url = nil
    config.tasker.queues = nil
    # nil: `worker.concurrency` of the configuration (docs/configuration.md), else 8.
    config.tasker.concurrency = nil
    config.tasker.template_paths = nil
    config.tasker.handlers = nil
    config.tasker.start_worker = nil
    config.tasker.shutdown_timeout = Worker::DEFAULT_SHUTDOWN_TIMEOUT

    generators do
      require_relative "../generators/tasker/step_handler/step_handler_generator"
    end

    initializer "tasker.logger" do
      TaskerCore.logger = ::Rails.logger if ::Rails.logger
    end

    config.after_initialize do |app|
      TaskerCore::Railtie.boot(app)
    end

    class << self
      # The worker this process runs, if any.
      # @return [Worker, nil]
      attr_reader :worker

      # A client for the configured database (connected on first use), to create tasks from
      # controllers and jobs.
      # @return [Client]
      def client
        @client_lock.synchronize { @client ||= TaskerCore.connect(database_url: options&.database_url) }
      end

      # Whether this process should run the worker (see the class docs).
      # @return [Boolean]
      def start_worker?(opts = options)
        explicit = opts&.start_worker
        return explicit ? true : false unless explicit.nil?

        env = ENV.fetch("TASKER_WORKER", "").strip.downcase
        return %w[1 true yes on].include?(env) unless env.empty?

        ::Rails.const_defined?(:Server, false)
      end

      # @api private
      def boot(app)
        @app = app
        return unless start_worker?

        paths = Array(options.template_paths || default_template_paths(app))
        registered = paths.flat_map { |p| client.register_templates(p.to_s) }
        queues = Array(options.queues).map(&:to_s)
        queues = registered.flat_map { |t| t[:queues] }.uniq if queues.empty?
        if queues.empty?
          TaskerCore.logger.warn("tasker: no worker started: set config.tasker.queues or config.tasker.template_paths")
          return
        end

        reloader = app.reloader
        @worker = Worker.new(client, queues: queues, handlers: options.handlers, concurrency: options.concurrency,
                                     shutdown_timeout: options.shutdown_timeout, logger: TaskerCore.logger,
                                     around: ->(_context, &run) { reloader.wrap(&run) })
        @worker.start
        TaskerCore.logger.info("tasker: worker started on #{queues.join(', ')} (concurrency #{@worker.concurrency})")
      end

      private

      def options
        @app&.config&.tasker || ::Rails.application&.config&.tasker
      end

      def default_template_paths(app)
        dir = app.root.join("config", "tasker", "templates")
        dir.exist? ? [dir] : []
      end
    end

    @client_lock = Mutex.new
  end
end
