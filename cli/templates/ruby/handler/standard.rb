# The `{{step_name}}` step: greets the "name" given in the task's context.
#
# context.input                     the task's context (a Hash with String keys)
# context.dependency_result(name)   the result of a step this one depends on
# config                            the step's handler.initialization in the template
#
# Return success(result: {...}) or a Hash. Raise TaskerCore::PermanentError to fail at once, or
# TaskerCore::RetryableError.new(msg, retry_after: seconds) to retry later; any other exception is
# retried as the template's retry policy says.
class {{class_name}} < TaskerCore::StepHandler::Base
  def call(context)
    name = context.input.fetch("name", "world")
    success(result: { "greeting" => "Hello, #{name}!" })
  end
end
