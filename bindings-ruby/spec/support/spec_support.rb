# frozen_string_literal: true

# Shared helpers: databases, isolated template namespaces, workers.
module SpecSupport
  FIXTURES = File.expand_path("../fixtures/templates", __dir__)
  TMP_ROOT = Dir.mktmpdir("tasker-rb-spec-")

  def self.cleanup
    FileUtils.rm_rf(TMP_ROOT)
  end

  # Example groups for each backend: SQLite always; PostgreSQL from DATABASE_URL; and PostgreSQL
  # with RabbitMQ carrying the messages (`postgres_rabbitmq`: `messaging.backend = "rabbitmq"`
  # on RABBITMQ_URL) when RABBITMQ_URL is set too. PostgreSQL is required (the run fails instead
  # of skipping) when TASKER_REQUIRE_POSTGRES=1 (the test script sets it under CI); so is
  # postgres_rabbitmq then, when RABBITMQ_URL is set.
  module Backends
    def each_backend(&block)
      SpecSupport.backends.each do |backend, url|
        context "on #{backend}", backend: backend do
          let(:backend) { backend }
          define_method(:database_url) { url.respond_to?(:call) ? url.call : url }
          # The TASKER_* variables that make this backend what it is: set for the whole group, so
          # that every engine it connects (worker subprocesses included, which inherit ENV) runs
          # on it, and restored afterwards. RSpec runs `after` hooks in reverse order, so this one
          # runs after the group's own cleanup.
          env = SpecSupport.backend_env(backend)
          define_method(:backend_env) { env }
          saved = {}
          before(:all) do
            skip "PostgreSQL: DATABASE_URL is not set (export it to run these examples)" if url.nil?
            env.each_key { |k| saved[k] = ENV.fetch(k, nil) }
            ENV.update(env)
          end
          after(:all) { ENV.update(saved) }
          class_exec(&block)
        end
      end
    end
  end

  def self.backends
    pg = ENV["DATABASE_URL"].to_s
    if pg.empty?
      if ENV["TASKER_REQUIRE_POSTGRES"] == "1"
        raise "TASKER_REQUIRE_POSTGRES=1 but DATABASE_URL is not set: the PostgreSQL examples cannot run"
      end

      pg = nil
    elsif !pg.start_with?("postgres://", "postgresql://")
      raise "DATABASE_URL must be a postgres:// URL for the PostgreSQL examples, got #{pg.split('@').last}"
    end
    list = { "sqlite" => -> { sqlite_url }, "postgres" => pg }
    list["postgres_rabbitmq"] = pg unless ENV["RABBITMQ_URL"].to_s.empty?
    list
  end

  # The environment of one example group on `backend`: on PostgreSQL with RabbitMQ, the messaging
  # backend and a queue prefix of the group's own (the exchange is shared, the queues are not).
  def self.backend_env(backend)
    return {} unless backend == "postgres_rabbitmq"

    { "TASKER_MESSAGING__BACKEND" => "rabbitmq", "TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX" => "rb#{SecureRandom.hex(6)}." }
  end

  # The TASKER_* variables of the backend an example runs on (none outside `each_backend`).
  def backend_env
    {}
  end

  # The database backend a client reports: PostgreSQL also when RabbitMQ carries the messages.
  def database_backend
    backend == "sqlite" ? "sqlite" : "postgres"
  end

  # A fresh SQLite file.
  def self.sqlite_url
    "sqlite://#{File.join(TMP_ROOT, "db-#{SecureRandom.hex(6)}.sqlite")}"
  end

  # A queue/namespace name no other test uses.
  def self.unique_namespace(prefix = "rb")
    "#{prefix}_#{SecureRandom.alphanumeric(8).downcase}".gsub(/[^a-z0-9_]/, "x")
  end

  # Registers a copy of fixture `file` under a fresh namespace; returns the namespace. `steps`
  # merges per-step overrides, e.g. { "flaky" => { "retry" => { "max_attempts" => 1 } } }.
  def register_fixture(client, file, namespace: SpecSupport.unique_namespace, steps: {})
    client.register_templates(write_fixture(file, namespace: namespace, steps: steps))
    namespace
  end

  # Writes a copy of fixture `file` with another namespace (and step overrides); returns its path.
  def write_fixture(file, namespace:, steps: {})
    template = YAML.safe_load(File.read(File.join(FIXTURES, file)))
    template["namespace_name"] = namespace
    steps.each do |name, override|
      step = template["steps"].find { |s| s["name"] == name } || raise("no step #{name} in #{file}")
      override.each { |k, v| step[k] = v.is_a?(Hash) && step[k].is_a?(Hash) ? step[k].merge(v) : v }
    end
    dir = File.join(TMP_ROOT, "templates-#{SecureRandom.hex(4)}")
    FileUtils.mkdir_p(dir)
    path = File.join(dir, file)
    File.write(path, YAML.dump(template))
    path
  end

  def template_name(file)
    YAML.safe_load(File.read(File.join(FIXTURES, file)))["name"]
  end

  # Starts a worker for the block and always stops it.
  def with_worker(client, queues:, **options)
    worker = TaskerCore::Worker.new(client, queues: queues, **options).start
    yield worker
  ensure
    worker&.stop(timeout: 10)
  end

  # Fails instead of hanging: a guard for code that must return, not a timing assertion.
  def within(seconds, what, &block)
    Timeout.timeout(seconds, &block)
  rescue Timeout::Error
    raise RSpec::Expectations::ExpectationNotMetError, "#{what} did not finish within #{seconds}s"
  end

  def ruby_subprocess_env
    { "RUBYLIB" => [File.expand_path("../../lib", __dir__), ENV.fetch("RUBYLIB", nil)].compact.join(File::PATH_SEPARATOR) }
  end
end
