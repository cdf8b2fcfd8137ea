# frozen_string_literal: true

require "open3"
require "rails/generators"
require "rails/generators/named_base"

module Tasker
  module Generators
    # `rails generate tasker:subscriber billing/audit --events task.completed step.failed payment.*`
    # creates app/subscribers/billing/audit_subscriber.rb (Billing::AuditSubscriber in group
    # "billing/audit_subscriber", with a `handle_task_completed` and a `handle_step_failed` method
    # and a `handle` for the wildcard) and spec/subscribers/billing/audit_subscriber_spec.rb, and
    # adds `config.tasker.subscribers << "Billing::AuditSubscriber"` to config/application.rb
    # (skip it with --skip-register), so the app runs it wherever it runs the worker.
    #
    # The files are written by `tasker generate subscriber --language ruby`, the tasker CLI (found
    # as $TASKER_CLI, else `tasker` on PATH): its templates are the only ones, so a subscriber is
    # the same whichever entry point wrote it. Registering it is the Rails-only part.
    class SubscriberGenerator < ::Rails::Generators::NamedBase
      desc "Creates a Tasker event subscriber class and its RSpec spec (through `tasker generate subscriber`), " \
           "and registers it in config/application.rb."

      class_option :events, type: :array, default: ["*"], banner: "task.completed step.failed payment.*",
                            desc: "Event names or patterns (`*` is a wildcard) the subscriber takes"
      class_option :skip_register, type: :boolean, default: false,
                                   desc: "Do not add it to config.tasker.subscribers in config/application.rb"

      # A failure of the CLI (a bad --events value, a file that exists) is an error (exit status
      # 1), not a warning.
      def self.exit_on_failure?
        true
      end

      def create_subscriber_and_spec
        if behavior == :revoke
          revoke_files
          return
        end
        out, err, status = run_cli
        raise Thor::Error, "#{tasker_cli} generate subscriber failed: #{err.strip}" unless status.success?

        say out
      end

      def register
        return if options[:skip_register] || behavior == :revoke

        application %(config.tasker.subscribers << "#{subscriber_class_name}")
      end

      private

      def tasker_cli
        ENV.fetch("TASKER_CLI", "tasker")
      end

      # Thor gives `--events a b,c` as ["a", "b,c"]: the CLI takes one comma-separated list.
      def events
        options[:events].flat_map { |e| e.split(",") }.map(&:strip).reject(&:empty?).join(",")
      end

      def cli_arguments
        ["generate", "subscriber", file_path, "--language", "ruby", "--events", events,
         "--dir", destination_root, "--subscribers-dir", "app/subscribers", "--tests-dir", "spec/subscribers"]
      end

      def run_cli
        Open3.capture3(tasker_cli, *cli_arguments)
      rescue SystemCallError => e
        raise Thor::Error, "cannot run the tasker CLI (#{tasker_cli}): #{e.message}; put `tasker` on PATH " \
                           "or set TASKER_CLI to its path (cargo build -p tasker-cli builds it)"
      end

      def subscriber_class_name
        "#{class_name}Subscriber"
      end

      # `rails destroy tasker:subscriber NAME`: the two files the generator wrote (the line in
      # config/application.rb stays: remove it by hand).
      def revoke_files
        remove_file File.join("app/subscribers", class_path, "#{file_name}_subscriber.rb")
        remove_file File.join("spec/subscribers", class_path, "#{file_name}_subscriber_spec.rb")
      end
    end
  end
end
