# frozen_string_literal: true

require "spec_helper"
require "json"
require "open3"

# The gem reads the same layered configuration as the `tasker` CLI (docs/configuration.md). Each
# example runs in a child process with its own TASKER_* variables, so nothing leaks into the
# environment of the other specs.
RSpec.describe "configuration (config/tasker, TASKER_<SECTION>__<KEY>)" do
  # Starts a worker on ARGV[1] with the keyword arguments in ARGV[2] (JSON) and prints what it
  # runs with, as the worker itself and the registry of workers (list_workers) see it.
  let(:worker_script) do
    <<~'RUBY'
      require "json"
      require "tasker_core"
      database_url, queue, options = ARGV
      options = JSON.parse(options, symbolize_names: true)
      client = TaskerCore.connect(database_url: database_url)
      worker = TaskerCore::Worker.new(client, queues: [queue], worker_id: "rb-config:#{queue}", **options).start
      listed = client.list_workers.find { |w| w.worker_id == "rb-config:#{queue}" }
      puts JSON.generate("concurrency" => worker.concurrency, "thread_count" => worker.thread_count,
                         "settings" => worker.settings, "listed" => listed && listed.concurrency,
                         "queues" => worker.queues)
      worker.stop(timeout: 5)
    RUBY
  end

  # Every TASKER_* variable of this process, unset: the child sees only what an example sets,
  # besides the backend's own (PostgreSQL with RabbitMQ).
  def clean_env
    ENV.keys.grep(/\ATASKER_/).to_h { |k| [k, nil] }.merge(backend_env).merge(ruby_subprocess_env)
  end

  def config_tree(files)
    root = Dir.mktmpdir("config-", SpecSupport::TMP_ROOT)
    files.each do |path, text|
      FileUtils.mkdir_p(File.dirname(File.join(root, path)))
      File.write(File.join(root, path), text)
    end
    root
  end

  # Runs `script` in a child process under `env` (from an empty directory, so that no
  # ./config/tasker is found by accident); returns stdout, stderr, status.
  def child(script, *args, env: {})
    Open3.capture3(clean_env.merge(env), RbConfig.ruby, "-e", script, *args,
                   chdir: Dir.mktmpdir("cwd-", SpecSupport::TMP_ROOT))
  end

  def start_worker(env, options = {})
    queue = SpecSupport.unique_namespace
    out, err, status = child(worker_script, database_url, queue, JSON.generate(options), env: env)
    expect(status).to be_success, "child failed:\n#{err}"
    JSON.parse(out.lines.last).merge("queue" => queue)
  end

  let(:tree) do
    config_tree("base/worker.toml" => "[worker]\nconcurrency = 3\nlease_ms = 45000\ndispatch_mode = \"polling\"\n")
  end

  each_backend do
    it "starts a worker without an explicit concurrency with the configured one" do
      got = start_worker({ "TASKER_CONFIG_ROOT" => tree })
      expect(got).to include("concurrency" => 3, "listed" => 3, "thread_count" => 3)
      expect(got["settings"]).to include("lease" => 45.0, "dispatch_mode" => "polling", "language" => "ruby",
                                         "embedded_orchestration" => true)
    end

    it "lets TASKER_WORKER__CONCURRENCY win over the file" do
      got = start_worker({ "TASKER_CONFIG_ROOT" => tree, "TASKER_WORKER__CONCURRENCY" => "5" })
      expect(got).to include("concurrency" => 5, "listed" => 5)
      expect(got["settings"]).to include("lease" => 45.0) # the rest of the file still applies
    end

    it "lets explicit arguments win over the file and the variables" do
      got = start_worker({ "TASKER_CONFIG_ROOT" => tree, "TASKER_WORKER__CONCURRENCY" => "5" },
                         { concurrency: 2, threads: 1, lease: 12, dispatch_mode: "hybrid", embedded_orchestration: false })
      expect(got).to include("concurrency" => 2, "listed" => 2, "thread_count" => 1)
      expect(got["settings"]).to include("lease" => 12.0, "dispatch_mode" => "hybrid", "embedded_orchestration" => false)
    end

    it "uses the engine's defaults without any configuration, and adds configured queues" do
      got = start_worker({})
      expect(got).to include("concurrency" => 8, "listed" => 8, "thread_count" => 8, "queues" => [got["queue"]])
      expect(got["settings"]).to include("lease" => 30.0, "dispatch_mode" => "hybrid", "poll_interval" => nil)

      got = start_worker({ "TASKER_WORKER__QUEUES" => "rb_config_extra" })
      expect(got["queues"]).to eq(["rb_config_extra", got["queue"]])
    end
  end

  let(:connect_script) do
    <<~'RUBY'
      require "json"
      require "tasker_core"
      begin
        TaskerCore.connect(database_url: ARGV[0])
        puts JSON.generate("connected" => true)
      rescue TaskerCore::Error => e
        puts JSON.generate("class" => e.class.name, "code" => e.code, "message" => e.message,
                           "problems" => e.respond_to?(:problems) ? e.problems : nil)
      end
    RUBY
  end

  def connect_in_child(env)
    out, err, status = child(connect_script, SpecSupport.sqlite_url, env: env)
    expect(status).to be_success, "child failed:\n#{err}"
    JSON.parse(out.lines.last)
  end

  it "refuses to connect with an unknown key in a file, naming the file and the key" do
    root = config_tree("base/worker.toml" => "[worker]\nconcurency = 3\n")
    got = connect_in_child({ "TASKER_CONFIG_ROOT" => root })
    file = File.join(root, "base", "worker.toml")
    expect(got).to include("class" => "TaskerCore::ConfigurationError", "code" => "config_invalid")
    expect(got["message"]).to include(file).and include("worker.concurency").and include("concurrency")
    expect(got["problems"]).to eq([{ "source" => file, "key" => "worker.concurency",
                                     "message" => got["problems"][0]["message"] }])
    expect(got["problems"][0]["message"]).to match(/did you mean.*concurrency/)
  end

  it "lists every problem, with the variable for a bad TASKER_<SECTION>__<KEY>" do
    root = config_tree("base/common.toml" => "[database]\nmax_connections = 0\n")
    got = connect_in_child({ "TASKER_CONFIG_ROOT" => root, "TASKER_WORKER__CONCURRENCY" => "lots" })
    expect(got).to include("class" => "TaskerCore::ConfigurationError", "code" => "config_invalid")
    expect(got["problems"].map { |p| [p["source"], p["key"]] }).to contain_exactly(
      [File.join(root, "base", "common.toml"), "database.max_connections"],
      ["$TASKER_WORKER__CONCURRENCY", "worker.concurrency"]
    )
    expect(got["message"]).to include("2 problems")
  end

  it "shows the loaded configuration with each value's origin (TaskerCore.config)" do
    script = <<~'RUBY'
      require "json"
      require "tasker_core"
      puts JSON.generate(TaskerCore.config.to_h { |v| [v.key, [v.value, v.origin, v.source, v.origin_label]] })
    RUBY
    out, err, status = child(script, env: { "TASKER_CONFIG_ROOT" => tree, "TASKER_WORKER__LEASE_MS" => "50000",
                                            "TASKER_DATABASE__URL" => "postgres://u:secret@db.example:5432/x" })
    expect(status).to be_success, err
    shown = JSON.parse(out)
    file = File.join(tree, "base", "worker.toml")
    expect(shown["worker.concurrency"]).to eq([3, "file", file, file])
    expect(shown["worker.lease_ms"]).to eq([50_000, "env", "TASKER_WORKER__LEASE_MS", "$TASKER_WORKER__LEASE_MS"])
    expect(shown["worker.heartbeat_interval_ms"]).to eq([10_000, "default", nil, "default"])
    expect(shown["database.url"][0]).not_to include("secret")
  end
end
