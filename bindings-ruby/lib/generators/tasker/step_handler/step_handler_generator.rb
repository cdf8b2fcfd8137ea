# frozen_string_literal: true

require "rails/generators"
require "rails/generators/named_base"

module Tasker
  module Generators
    # `rails generate tasker:step_handler payments/charge_card` creates
    # app/step_handlers/payments/charge_card_handler.rb (Payments::ChargeCardHandler) and its spec.
    # Reference it from a template as `handler: { callable: Payments::ChargeCardHandler }`.
    class StepHandlerGenerator < ::Rails::Generators::NamedBase
      source_root File.expand_path("templates", __dir__)
      desc "Creates a Tasker step handler class and its RSpec spec."

      def create_handler
        template "handler.rb.tt", File.join("app/step_handlers", class_path, "#{file_name}_handler.rb")
      end

      def create_spec
        template "handler_spec.rb.tt", File.join("spec/step_handlers", class_path, "#{file_name}_handler_spec.rb")
      end

      def explain
        say "Use it in a task template as:  handler: { callable: #{handler_class_name} }"
      end

      private

      def handler_class_name
        "#{class_name}Handler"
      end

      def modules
        class_path.map(&:camelize)
      end

      def handler_path
        File.join("app/step_handlers", class_path, "#{file_name}_handler")
      end

      def rails_helper?
        File.exist?(File.join(destination_root, "spec", "rails_helper.rb"))
      end

      def handler_class_body
        <<~RUBY
          # Step handler #{handler_class_name}.
          #
          # context.input                     the task's context (a Hash with String keys)
          # context.dependency_result(name)   the result of an earlier step
          # config                            the step's handler.initialization from the template
          #
          # Return success(result: {...}) or a Hash. Raise TaskerCore::PermanentError to fail
          # without retrying, or TaskerCore::RetryableError.new(msg, retry_after: seconds) to retry
          # later; any other exception is retried per the template's retry policy.
          class #{file_name.camelize}Handler < TaskerCore::StepHandler::Base
            def call(context)
              success(result: { "step" => context.step_name })
            end
          end
        RUBY
      end

      # Nested `module ... end` lines around `body`, indented.
      def wrap_in_modules(body)
        modules.reverse.inject(body) do |inner, mod|
          "module #{mod}\n#{inner.gsub(/^(?=.)/, '  ')}end\n"
        end
      end
    end
  end
end
