# frozen_string_literal: true

# A Ruby worker process for the cross-language fixtures.
#
#   ruby -I bindings-ruby/lib tests/workers/ruby_worker.rb --database-url URL --queue polyglot_ruby
#     [--handlers polyglot]   # the handlers of tests/handlers/ruby/<NAME>_handlers.rb
#
# Runs until INT/TERM, then stops gracefully.

require "optparse"

options = { queues: [], concurrency: 8, lease: 30.0, handlers: "polyglot" }
OptionParser.new do |o|
  o.on("--database-url URL") { |v| options[:database_url] = v }
  o.on("--queue NAME") { |v| options[:queues] << v }
  o.on("--concurrency N", Integer) { |v| options[:concurrency] = v }
  o.on("--lease-seconds S", Float) { |v| options[:lease] = v }
  o.on("--handlers NAME") { |v| options[:handlers] = v }
end.parse!
abort "--database-url and --queue are required" if options[:database_url].nil? || options[:queues].empty?

require_relative "../handlers/ruby/#{options[:handlers]}_handlers"
handlers = Object.const_get("#{options[:handlers].split('_').map(&:capitalize).join}Handlers")::HANDLERS

client = TaskerCore.connect(database_url: options[:database_url])
worker = TaskerCore::Worker.new(client, queues: options[:queues], handlers: handlers,
                                        concurrency: options[:concurrency], lease: options[:lease])
$stdout.puts "ruby worker pid #{Process.pid} on #{options[:queues].join(', ')}"
$stdout.flush
worker.run
