# frozen_string_literal: true

# The worker: registers the templates under templates/ and runs their steps until Ctrl-C.
#
#   ruby worker.rb
#
# It connects to the database of config/tasker (an SQLite file, ./tasker.db), so the `tasker`
# CLI run from this directory sees the same tasks.
require_relative "config/boot"

QUEUES = ["{{namespace}}"].freeze

client = TaskerCore.connect
client.register_templates(File.join(__dir__, "templates")).each do |t|
  puts "registered #{t[:namespace]}/#{t[:name]}@#{t[:version]}"
end
puts "worker serving #{QUEUES.join(', ')} (Ctrl-C to stop)"
$stdout.flush
# Handlers are found by the class name in each step's `callable` (config/boot.rb loads them).
TaskerCore::Worker.new(client, queues: QUEUES).run
