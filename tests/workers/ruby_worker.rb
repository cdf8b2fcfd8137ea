# frozen_string_literal: true

# A Ruby worker process for the cross-language fixtures.
#
#   ruby -I bindings-ruby/lib tests/workers/ruby_worker.rb --database-url URL --queue polyglot_ruby
#
# Runs until INT/TERM, then stops gracefully.

require "optparse"
require_relative "../handlers/ruby/polyglot_handlers"

options = { queues: [], concurrency: 8, lease: 30.0 }
OptionParser.new do |o|
  o.on("--database-url URL") { |v| options[:database_url] = v }
  o.on("--queue NAME") { |v| options[:queues] << v }
  o.on("--concurrency N", Integer) { |v| options[:concurrency] = v }
  o.on("--lease-seconds S", Float) { |v| options[:lease] = v }
end.parse!
abort "--database-url and --queue are required" if options[:database_url].nil? || options[:queues].empty?

client = TaskerCore.connect(database_url: options[:database_url])
worker = TaskerCore::Worker.new(client, queues: options[:queues], handlers: PolyglotHandlers::HANDLERS,
                                        concurrency: options[:concurrency], lease: options[:lease])
$stdout.puts "ruby worker pid #{Process.pid} on #{options[:queues].join(', ')}"
$stdout.flush
worker.run
