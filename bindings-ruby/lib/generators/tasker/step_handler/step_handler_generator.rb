# frozen_string_literal: true

require "open3"
require "rails/generators"
require "rails/generators/named_base"

module Tasker
  module Generators
    # `rails generate tasker:step_handler payments/charge_card [--type decision]` creates
    # app/step_handlers/payments/charge_card_handler.rb (Payments::ChargeCardHandler) and
    # spec/step_handlers/payments/charge_card_handler_spec.rb. Reference it from a template as
    # `handler: { callable: Payments::ChargeCardHandler }`.
    #
    # The files are written by `tasker generate handler --language ruby`, the tasker CLI (found
    # as $TASKER_CLI, else `tasker` on PATH): its templates are the only ones, so a handler is
    # the same whichever entry point wrote it.
    class StepHandlerGenerator < ::Rails::Generators::NamedBase
      TYPES = %w[standard decision batchable batch_worker].freeze

      desc "Creates a Tasker step handler class and its RSpec spec (through `tasker generate handler`)."
      class_option :type, type: :string, default: "standard", enum: TYPES,
                          desc: "The step type the handler serves: #{TYPES.join(', ')}"

      # A failure of the CLI is an error (exit status 1), not a warning.
      def self.exit_on_failure?
        true
      end

      def create_handler_and_spec
        if behavior == :revoke
          revoke_files
          return
        end
        out, err, status = run_cli
        raise Thor::Error, "#{tasker_cli} generate handler failed: #{err.strip}" unless status.success?

        say out
      end

      private

      def tasker_cli
        ENV.fetch("TASKER_CLI", "tasker")
      end

      def cli_arguments
        ["generate", "handler", file_path, "--language", "ruby", "--type", options[:type],
         "--dir", destination_root, "--handlers-dir", "app/step_handlers", "--tests-dir", "spec/step_handlers"]
      end

      def run_cli
        Open3.capture3(tasker_cli, *cli_arguments)
      rescue SystemCallError => e
        raise Thor::Error, "cannot run the tasker CLI (#{tasker_cli}): #{e.message}; put `tasker` on PATH " \
                           "or set TASKER_CLI to its path (cargo build -p tasker-cli builds it)"
      end

      # `rails destroy tasker:step_handler NAME`: the two files the generator wrote.
      def revoke_files
        remove_file File.join("app/step_handlers", class_path, "#{file_name}_handler.rb")
        remove_file File.join("spec/step_handlers", class_path, "#{file_name}_handler_spec.rb")
      end
    end
  end
end
