# frozen_string_literal: true

# A Ruby subscriber process for the cross-language events tests: every event matching
# --pattern, one JSON line each, appended to --out, until INT/TERM. With --expect N it writes
# nothing per event: after the N-th it prints {"events": N, "seconds": ...} (first to N-th
# delivery) and exits (tests/e2e/bench_events.py).
#
#   ruby -I bindings-ruby/lib tests/subscribers/ruby_subscriber.rb --database-url URL \
#     --group ruby_audit --pattern order.placed --out events.jsonl

require "json"
require "optparse"

options = { patterns: [], out: File::NULL, expect: 0, from_start: false }
OptionParser.new do |o|
  o.on("--database-url URL") { |v| options[:database_url] = v }
  o.on("--group NAME") { |v| options[:group] = v }
  o.on("--pattern P") { |v| options[:patterns] << v }
  o.on("--out PATH") { |v| options[:out] = v }
  o.on("--expect N", Integer) { |v| options[:expect] = v }
  o.on("--from-start") { options[:from_start] = true }
end.parse!
missing = options.values_at(:database_url, :group).any?(&:nil?) || options[:patterns].empty?
abort "--database-url, --group and --pattern are required" if missing

require "tasker_core"

OUT = File.open(options[:out], "a")
OUT.sync = true
EXPECT = options[:expect]
DONE = Queue.new

# Writes each event it is given (or, with --expect, counts them).
class Recorder < TaskerCore::Subscriber
  def initialize
    super
    @count = 0
    @first = nil
  end

  def handle(event)
    if EXPECT.positive?
      @first ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)
      @count += 1
      DONE << [@count, Process.clock_gettime(Process::CLOCK_MONOTONIC) - @first] if @count == EXPECT
      return
    end
    OUT.puts(JSON.generate({ "language" => "ruby", "name" => event.name, "event_id" => event.event_id,
                             "task_uuid" => event.task_uuid, "payload" => event.payload }))
  end
end

client = TaskerCore.connect(database_url: options[:database_url])
runner = TaskerCore::SubscriberRunner.new(client, Recorder, group: options[:group], patterns: options[:patterns],
                                                            from_start: options[:from_start], batch_size: 2000,
                                                            poll_interval: 0.01)
runner.start
$stdout.puts "ruby subscriber pid #{Process.pid} in group #{options[:group]}"
$stdout.flush
%w[INT TERM].each { |s| Signal.trap(s) { DONE << nil } }
result = DONE.pop
$stdout.puts(JSON.generate({ "events" => result[0], "seconds" => result[1] })) if result
$stdout.flush
runner.stop
