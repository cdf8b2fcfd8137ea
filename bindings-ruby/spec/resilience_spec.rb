# frozen_string_literal: true

require "socket"
require "uri"
require "spec_helper"

# Backpressure on task creation and the circuit breaker around PostgreSQL, from Ruby
# (docs/operations.md). The breaker example puts a TCP proxy between the client and the server and
# cuts it, as when the server goes away.

# A TCP proxy to host:port that can be cut (its connections closed, new ones dropped at once).
#
# Sockets are shut down, never closed, while a thread may be copying from them: a close does not
# wake a thread waiting in IO.copy_stream, and the freed descriptor number goes to the next socket
# the process opens (the engine's next PostgreSQL connection, say), whose bytes that thread then
# reads and sends elsewhere. That lost a reply, and the engine waited for it forever. A shutdown
# wakes the copy at once; each connection's sockets are closed once both directions have stopped.
class CuttableProxy
  attr_reader :port

  def initialize(host, port)
    @server = TCPServer.new("127.0.0.1", 0)
    @port = @server.addr[1]
    @up = true
    @sockets = Queue.new
    @acceptor = Thread.new { accept_loop(host, port) }
  end

  def cut
    @up = false
    shut_down(@sockets.pop) until @sockets.empty?
  end

  def restore
    @up = true
  end

  def close
    cut
    @acceptor.kill
    @server.close
  end

  private

  def accept_loop(host, port)
    loop do
      client = @server.accept
      next client.close unless @up

      upstream = TCPSocket.new(host, port)
      [client, upstream].each { |s| @sockets << s }
      relay(client, upstream)
    end
  rescue IOError, SystemCallError
    nil
  end

  def relay(client, upstream)
    Thread.new do
      other = Thread.new { copy(client, upstream) }
      copy(upstream, client)
      other.join
    ensure
      [client, upstream].each { |s| s.close unless s.closed? }
    end
  end

  # Copies until either side ends, then shuts both down, which ends the other direction too.
  def copy(source, target)
    IO.copy_stream(source, target)
  rescue IOError, SystemCallError
    nil
  ensure
    [source, target].each { |s| shut_down(s) }
  end

  def shut_down(socket)
    socket.shutdown(Socket::SHUT_RDWR)
  rescue IOError, SystemCallError
    nil # already shut down, or closed once its connection ended
  end
end

RSpec.describe "resilience" do
  # Runs the block until it returns something truthy, for at most `seconds`.
  def eventually(seconds, what)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    loop do
      result = yield
      return result if result
      raise RSpec::Expectations::ExpectationNotMetError, "#{what}: not within #{seconds}s" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  def with_env(vars)
    vars.each { |k, v| ENV[k] = v }
    yield
  ensure
    vars.each_key { |k| ENV.delete(k) }
  end

  each_backend do
    it "reports the workers of this process in health" do
      client = TaskerCore.connect(database_url: database_url)
      worker_id = "rb-health-#{Process.pid}-#{rand(1 << 30)}"
      worker = TaskerCore::Worker.new(client, queues: ["rb_health"], worker_id: worker_id).start
      check = client.health["checks"].find { |c| c["name"] == "worker #{worker_id}" }
      expect(check).to include("ok" => true, "detail" => "ok")
      worker.stop(timeout: 10)
      names = client.health["checks"].map { |c| c["name"] }
      expect(names).not_to include("worker #{worker_id}")
    ensure
      client&.close
    end

    it "refuses creation beyond the queue limit with BackpressureError" do
      limited = with_env("TASKER_BACKPRESSURE__MAX_QUEUE_DEPTH" => "2", "TASKER_BACKPRESSURE__REFRESH_MS" => "10") do
        TaskerCore.connect(database_url: database_url)
      end
      ns = register_fixture(limited, "single.yaml")
      2.times { limited.create_task(namespace: ns, name: "single_workflow", context: {}) }
      sleep 0.02
      expect { limited.create_task(namespace: ns, name: "single_workflow", context: {}) }
        .to raise_error(TaskerCore::BackpressureError) { |e|
          expect([e.code, e.queue, e.depth, e.limit]).to eq(["backpressure", ns, 2, 2])
          expect(e.retry_after).to be_between(0.0, 1.0).exclusive
        }
      expect(limited.list_tasks(namespace: ns).size).to eq(2)
    ensure
      limited&.close
    end

    it "fails fast with UnavailableError while PostgreSQL is away, and recovers" do
      skip "SQLite has no breaker" unless database_backend == "postgres"

      server = URI(database_url)
      proxy = CuttableProxy.new(server.host, server.port || 5432)
      via = URI(database_url)
      via.host = "127.0.0.1"
      via.port = proxy.port
      client = with_env(
        "TASKER_DATABASE__LISTEN" => "false", "TASKER_DATABASE__ACQUIRE_TIMEOUT_MS" => "500",
        "TASKER_CIRCUIT_BREAKER__FAILURE_THRESHOLD" => "2", "TASKER_CIRCUIT_BREAKER__COOL_DOWN_MS" => "300"
      ) { TaskerCore.connect(database_url: via.to_s) }
      ns = register_fixture(client, "single.yaml")
      task = client.create_task(namespace: ns, name: "single_workflow", context: {})
      proxy.cut
      refused = eventually(20, "the breaker opens") do
        client.get_task(task.task_uuid)
        nil
      rescue TaskerCore::UnavailableError => e
        e
      rescue TaskerCore::Error
        nil
      end
      expect([refused.code, refused.resource]).to eq(%w[unavailable database])
      expect(refused.retry_after).to be <= 0.3
      health = client.health
      expect(health["ready"]).to be(false)
      expect(health["checks"].find { |c| c["name"] == "circuit_breaker" }).to include("ok" => false)

      proxy.restore
      eventually(20, "the breaker closes") do
        client.get_task(task.task_uuid)
      rescue TaskerCore::Error
        nil
      end
      expect(client.health["ready"]).to be(true)
    ensure
      client&.close
      proxy&.close
    end
  end
end
