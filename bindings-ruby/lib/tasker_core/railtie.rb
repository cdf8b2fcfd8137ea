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
  #
  # Events:
  #
  #   config.tasker.subscribers << "AuditSubscriber"          # rails generate tasker:subscriber audit ...
  #   config.tasker.events_bridge = true                      # or { group:, patterns:, delivery:, concurrency: }
  #
  # Each subscriber (a {Subscriber} class, or its name: then it is looked up again for every
  # event, so it reloads in development) runs in a {SubscriberRunner} of its group, inside the
  # Rails reloader. `events_bridge` re-publishes events on `ActiveSupport::Notifications` as
  # `tasker.<event name>` ({NotificationsBridge}): `group` (default "<app>.notifications", e.g.
  # "shop.notifications"; the processes of the app share its events, so each notification fires
  # in one of them), `patterns` (default `["*"]`), `delivery` (`:durable`, the default, or
  # `:fast` for the events of this process only, nothing stored). Both run in the processes that
  # run the worker, unless `config.tasker.start_subscribers` says otherwise, and start before
  # it: lifecycle events are written once a group exists.
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
    # Subscriber classes (or class names) to run; see the class docs.
    config.tasker.subscribers = []
    # nil (off), true, or a Hash: group, patterns, delivery (:durable or :fast), concurrency.
    config.tasker.events_bridge = nil
    # nil: wherever the worker runs (start_worker?).
    config.tasker.start_subscribers = nil

    generators do
      require_relative "../generators/tasker/step_handler/step_handler_generator"
      require_relative "../generators/tasker/subscriber/subscriber_generator"
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

      # The subscriber runners this process runs (the events bridge's first, when configured).
      # @return [Array<SubscriberRunner>]
      def subscriber_runners
        @subscriber_runners || []
      end

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

      # Whether this process should run the subscribers and the events bridge: the
      # `start_subscribers` setting, else like {start_worker?}.
      # @return [Boolean]
      def start_subscribers?(opts = options)
        explicit = opts&.start_subscribers
        return explicit ? true : false unless explicit.nil?

        start_worker?(opts)
      end

      # @api private
      def boot(app)
        @app = app
        boot_subscribers(app) if start_subscribers?
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

      def boot_subscribers(app)
        reloader = app.reloader
        common = { shutdown_timeout: options.shutdown_timeout, logger: TaskerCore.logger,
                   around: ->(_event, &run) { reloader.wrap(&run) } }
        runners = []
        bridge = bridge_options(app)
        if bridge
          require_relative "notifications_bridge"
          runners << SubscriberRunner.new(client, NotificationsBridge, **common, **bridge)
        end
        Array(options.subscribers).each { |s| runners << subscriber_runner(s, common) }
        @subscriber_runners = runners.each(&:start)
        runners.each { |r| TaskerCore.logger.info("tasker: subscriber #{r.group || 'fast'} on #{r.patterns.join(', ')}") }
      end

      def subscriber_runner(subscriber, common)
        return SubscriberRunner.new(client, subscriber, **common) unless subscriber.is_a?(String) || subscriber.is_a?(Symbol)

        klass = subscriber.to_s.constantize
        SubscriberRunner.new(client, ->(event) { subscriber.to_s.constantize.new.call(event) },
                             group: klass.group, patterns: klass.patterns, **klass.subscription_options, **common)
      end

      def bridge_options(app)
        given = options.events_bridge
        return nil unless given

        given = given == true ? {} : given.to_h.transform_keys(&:to_sym)
        unknown = given.keys - %i[group patterns delivery concurrency max_attempts]
        raise InvalidArgumentError, "config.tasker.events_bridge: unknown key(s) #{unknown.join(', ')}" unless unknown.empty?

        delivery = (given[:delivery] || :durable).to_s
        unless %w[durable fast].include?(delivery)
          raise InvalidArgumentError, "config.tasker.events_bridge delivery must be :durable or :fast, got #{delivery}"
        end

        app_name = app.class.name.to_s.split("::").first.to_s.underscore
        { group: given[:group] || "#{app_name.empty? ? 'rails' : app_name}.notifications",
          patterns: given[:patterns] || ["*"], fast: delivery == "fast", concurrency: given[:concurrency],
          max_attempts: given[:max_attempts] }
      end

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
