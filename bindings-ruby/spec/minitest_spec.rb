# frozen_string_literal: true

require "spec_helper"
require "open3"

RSpec.describe "TaskerCore::Testing::Assertions (Minitest)" do
  it "pass and fail as they should in a Minitest run" do
    test_file = File.expand_path("fixtures/minitest/handler_test.rb", __dir__)
    out, err, status = within(60, "the minitest run") do
      Open3.capture3(ruby_subprocess_env, RbConfig.ruby, test_file)
    end
    expect(status).to be_success, "#{out}\n#{err}"
    expect(out).to match(/6 runs, \d+ assertions, 0 failures, 0 errors/)
  end
end
