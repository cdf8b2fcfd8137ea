# frozen_string_literal: true

# W2 with Ruby handlers: 1,000 diamond workflows (a -> (b, c) -> d) submitted at once by 8
# creator threads, run by no-op Ruby handlers.
#
#   rake compile
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#     ruby bindings-ruby/bench/bench_w2.rb --backend both --threads 8 --rust-baseline target/release/tasker
#
# Prints steps/s for the Ruby worker and the binding hop per step: "hop CPU" is the handler
# threads' CPU time from calling poll to complete returning (native poll, event -> Hash,
# StepContext, handler resolution and call, result -> JSON, hand-over to the engine), i.e. the
# binding's cost without time spent waiting for the GVL; the wall-clock parts are "native"
# (event leaves the engine's channel -> Ruby Hash, waiting to re-take the GVL included) and
# "ruby" (poll returned -> complete returned). Also process CPU per step (engine included). With --rust-baseline it first runs `tasker bench` (Rust no-op handlers, same W2, same
# machine) and prints the ratio. Each backend gets a fresh database: a temp SQLite file; on
# PostgreSQL a scratch database created with psql on DATABASE_URL's server (or, without psql, a
# unique namespace in DATABASE_URL's database).

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "tasker_core"
require "json"
require "open3"
require "optparse"
require "securerandom"
require "tmpdir"

DIAMOND = <<~YAML
  name: bench_diamond
  namespace_name: %<ns>s
  version: 1.0.0
  steps:
    - { name: a, handler: { callable: noop } }
    - { name: b, dependencies: [a], handler: { callable: noop } }
    - { name: c, dependencies: [a], handler: { callable: noop } }
    - { name: d, dependencies: [b, c], handler: { callable: noop } }
YAML

# Counts the last step of each diamond, so the end of W2 is noticed without reading the
# database while it runs (as `tasker bench` watches engine events).
class Finished
  def initialize
    @lock = Mutex.new
    @done = ConditionVariable.new
    @count = 0
    @target = nil
  end

  def tick(step_name)
    return unless step_name == "d"

    @lock.synchronize do
      @count += 1
      @done.broadcast if @target && @count >= @target
    end
  end

  def expect(more)
    @lock.synchronize { @target = @count + more }
  end

  def wait(timeout)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    @lock.synchronize do
      while @count < @target
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        return false if left <= 0

        @done.wait(@lock, left)
      end
    end
    true
  end
end

FINISHED = Finished.new

# The no-op handler: a class, as most Ruby handlers are.
class NoopHandler < TaskerCore::StepHandler::Base
  def call(context)
    FINISHED.tick(context.step_name)
    nil
  end
end

def scratch_postgres(server)
  return [server, nil] unless system("command -v psql >/dev/null 2>&1")

  name = "tasker_rbbench_#{SecureRandom.hex(6)}"
  system("psql", server, "-qc", "CREATE DATABASE #{name}", exception: true, out: File::NULL)
  ["#{server.rpartition('/').first}/#{name}", name]
end

def drop_postgres(server, name)
  system("psql", server, "-qc", "DROP DATABASE IF EXISTS #{name} WITH (FORCE)", out: File::NULL, err: File::NULL) if name
end

def run_w2(url, tasks:, concurrency:, threads:)
  ns = "rbbench_#{SecureRandom.hex(4)}"
  client = TaskerCore.connect(database_url: url, max_connections: 16)
  Dir.mktmpdir do |d|
    File.write(File.join(d, "diamond.yaml"), format(DIAMOND, ns: ns))
    client.register_templates(d)
  end
  worker = TaskerCore::Worker.new(client, queues: [ns], handlers: { "noop" => NoopHandler },
                                          concurrency: concurrency, threads: threads)
  worker.start
  begin
    20.times { client.create_task(namespace: ns, name: "bench_diamond", context: {}).wait(timeout: 60) } # warm-up
    FINISHED.expect(tasks)
    before = worker.stats
    cpu0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
    wall0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    per = (tasks + 7) / 8
    creators = Array.new(8) do |i|
      n = [[per, tasks - (i * per)].min, 0].max
      Thread.new { Array.new(n) { client.create_task(namespace: ns, name: "bench_diamond", context: {}).uuid } }
    end
    ids = creators.flat_map(&:value)
    abort "W2 did not finish within 600 s" unless FINISHED.wait(600)
    # Every last step ran; wait for the outcomes to be applied (the last task created is
    # usually among the last to finish).
    ids.reverse_each do |id|
      done = client.wait_for_task(id, timeout: 600)
      abort "task #{id} ended #{done.state}" unless done.complete?
      break if client.list_tasks(namespace: ns, state: "complete", limit: tasks + 20).size == tasks + 20
    end
    wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - wall0
    cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu0
    after = worker.stats
  ensure
    worker.stop(timeout: 10)
    client.close
  end
  steps = tasks * 4
  delta = ->(key) { after[key] - before[key] }
  {
    "wall_s" => wall,
    "steps_per_s" => steps / wall,
    "hop_native_us" => delta.call("poll_hop_ns") / 1000.0 / [delta.call("polled"), 1].max,
    "hop_ruby_us" => delta.call("dispatch_ns") / 1000.0 / [delta.call("dispatched"), 1].max,
    "hop_cpu_us" => delta.call("hop_cpu_ns") / 1000.0 / [delta.call("dispatched"), 1].max,
    "cpu_us_per_step" => cpu / steps * 1e6
  }
end

def rust_baseline(tasker, backend, tasks, concurrency, pg_url)
  cmd = [tasker, "bench", "--backend", backend, "--w1-runs", "20", "--w2-tasks", tasks.to_s,
         "--w3-steps", "10", "--concurrency", concurrency.to_s, "--json"]
  cmd += ["--postgres-url", pg_url] if pg_url
  out, err, status = Open3.capture3(*cmd)
  abort "tasker bench failed: #{err}" unless status.success?
  figures = out.lines.grep(/\A\{/).map { |l| JSON.parse(l) }
  f = figures.find { |x| x["backend"] == backend }
  { "steps_per_s" => f["w2_steps_per_s"], "wall_s" => f["w2_wall_s"] }
end

# Microbenchmark of the conversions alone, without the engine: a typical event's data through
# the strict Ruby -> JSON converter and back, per call.
def conversion_us
  payload = { "order_id" => 12_345, "customer" => { "email" => "a@example.com", "tier" => "gold" },
              "items" => Array.new(3) { |i| { "sku" => "SKU-#{i}", "qty" => i + 1, "price" => 9.99 } } }
  n = 20_000
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  n.times { TaskerCore::Native.json_roundtrip(payload) }
  (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) / n * 1e6
end

options = { backend: "sqlite", tasks: 1000, concurrency: 128, threads: 8, rust: nil }
OptionParser.new do |o|
  o.banner = "usage: ruby bench_w2.rb [options]"
  o.on("--backend NAME", %w[sqlite postgres both]) { |v| options[:backend] = v }
  o.on("--tasks N", Integer) { |v| options[:tasks] = v }
  o.on("--concurrency N", Integer) { |v| options[:concurrency] = v }
  o.on("--threads N", Integer, "Ruby handler threads") { |v| options[:threads] = v }
  o.on("--rust-baseline TASKER", "path of the tasker binary (release build)") { |v| options[:rust] = v }
end.parse!

backends = options[:backend] == "both" ? %w[sqlite postgres] : [options[:backend]]
pg_server = ENV.fetch("DATABASE_URL", "")
puts "W2: #{options[:tasks]} diamonds, concurrency #{options[:concurrency]}, #{options[:threads]} threads, " \
     "Ruby no-op handlers (ruby #{RUBY_VERSION})"
printf("  conversion alone: %.1f µs per round trip of a 3-item order (Ruby -> JSON -> Ruby)\n", conversion_us)
backends.each do |backend|
  rust = nil
  if options[:rust]
    rust = rust_baseline(options[:rust], backend, options[:tasks], options[:concurrency],
                         backend == "postgres" ? pg_server : nil)
  end
  rb =
    if backend == "sqlite"
      Dir.mktmpdir do |d|
        run_w2("sqlite://#{d}/bench.db", tasks: options[:tasks], concurrency: options[:concurrency],
                                         threads: options[:threads])
      end
    else
      abort "the PostgreSQL run needs DATABASE_URL=postgres://..." unless pg_server.start_with?("postgres")
      url, name = scratch_postgres(pg_server)
      begin
        run_w2(url, tasks: options[:tasks], concurrency: options[:concurrency], threads: options[:threads])
      ensure
        drop_postgres(pg_server, name)
      end
    end
  line = format("  %-8s ruby: %6.0f steps/s (%.2f s) | hop CPU %.1f µs/step (wall: native %.1f + ruby %.1f µs) | " \
                "process CPU %.0f µs/step",
                backend, rb["steps_per_s"], rb["wall_s"], rb["hop_cpu_us"], rb["hop_native_us"], rb["hop_ruby_us"],
                rb["cpu_us_per_step"])
  if rust
    line += format(" || rust: %6.0f steps/s (%.2f s) | ruby/rust %.0f%%", rust["steps_per_s"], rust["wall_s"],
                   100.0 * rb["steps_per_s"] / rust["steps_per_s"])
  end
  puts line
  puts "  json #{JSON.generate('backend' => backend, 'ruby' => rb, 'rust' => rust)}"
  $stdout.flush
end
