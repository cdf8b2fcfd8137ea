# frozen_string_literal: true

require "spec_helper"
require "json"
require "open3"

RSpec.describe "Rails integration (Railtie and generator)" do
  def rails_fixtures
    File.expand_path("fixtures/rails", __dir__)
  end

  # Runs a Ruby script in a child process with the gem on the load path.
  def ruby_child(*args, env: {}, chdir: Dir.pwd)
    within(120, "the child Ruby process") do
      Open3.capture3(ruby_subprocess_env.merge(env), RbConfig.ruby, *args, chdir: chdir)
    end
  end

  # A copy of the skeleton Rails app with a template for `namespace` and an autoloaded handler;
  # the second step's handler is made by the generator.
  def make_app(namespace = nil)
    root = File.join(SpecSupport::TMP_ROOT, "rails-app-#{SecureRandom.hex(4)}")
    FileUtils.cp_r(File.join(rails_fixtures, "skeleton"), root)
    return root unless namespace

    FileUtils.mkdir_p(File.join(root, "config/tasker/templates"))
    FileUtils.mkdir_p(File.join(root, "app/step_handlers/rails_spec"))
    template = File.read(File.join(rails_fixtures, "template.yaml")).sub("NAMESPACE", namespace)
    File.write(File.join(root, "config/tasker/templates/rails_workflow.yaml"), template)
    FileUtils.cp(File.join(rails_fixtures, "double_handler.rb"), File.join(root, "app/step_handlers/rails_spec/"))
    generate(root, "rails_spec/generated_step")
    # Make the generated handler use the first step's result.
    path = File.join(root, "app/step_handlers/rails_spec/generated_step_handler.rb")
    File.write(path, File.read(path).sub('success(result: { "step" => context.step_name })',
                                         'success(result: { "step" => context.step_name, ' \
                                         '"doubled" => context.dependency_result("autoloaded")["value"] })'))
    root
  end

  # `bin/rails generate tasker:step_handler NAME` in the app.
  def generate(root, name)
    out, err, status = ruby_child("bin/rails", "generate", "tasker:step_handler", name, chdir: root)
    expect(status).to be_success, "generator failed: #{out}\n#{err}"
    out
  end

  def boot(root, database_url, namespace, mode = nil, env: {})
    out, err, status = ruby_child(File.join(rails_fixtures, "app.rb"), root, namespace, *mode,
                                  env: { "SPEC_TASKER_DATABASE_URL" => database_url }.merge(env))
    expect(status).to be_success, "app failed: #{out}\n#{err}"
    out.lines.map { |l| JSON.parse(l) }
  end

  describe "the generator" do
    it "creates a handler and a spec that load and pass" do
      root = make_app
      out = generate(root, "payments/charge_card")
      handler = File.join(root, "app/step_handlers/payments/charge_card_handler.rb")
      spec = File.join(root, "spec/step_handlers/payments/charge_card_handler_spec.rb")
      expect(File.read(handler)).to include("module Payments")
        .and include("class ChargeCardHandler < TaskerCore::StepHandler::Base")
      expect(out).to include("callable: Payments::ChargeCardHandler")

      # The generated files load (ruby -c would not catch a NameError) and the spec passes.
      rspec = Gem.bin_path("rspec-core", "rspec") rescue "rspec" # rubocop:disable Style/RescueModifier
      out, err, status = ruby_child(rspec, spec, chdir: root)
      expect(status).to be_success, "generated spec failed:\n#{out}\n#{err}"
      expect(out).to include("1 example, 0 failures")
    end
  end

  each_backend do
    it "starts the worker in a server process, runs autoloaded and generated handlers, and stops it at exit" do
      namespace = SpecSupport.unique_namespace
      root = make_app(namespace)
      booted, exited = boot(root, database_url, namespace, "server", env: { "TASKER_WORKER" => nil })
      expect(booted).to include("worker" => true, "queues" => [namespace], "state" => "complete")
      expect(booted["tasker_config"]).to include("concurrency", "database_url", "queues", "start_worker")
      expect(booted["results"]).to eq(
        "autoloaded" => { "value" => 12, "in_executor" => true },
        "generated" => { "step" => "generated", "doubled" => 12 }
      )
      expect(exited).to eq("phase" => "exit", "running_workers" => 0)
    end

    it "starts with TASKER_WORKER=1 and stays off in other processes" do
      namespace = SpecSupport.unique_namespace
      root = make_app(namespace)
      booted, = boot(root, database_url, namespace, env: { "TASKER_WORKER" => "1" })
      expect(booted).to include("worker" => true, "state" => "complete")

      booted, = boot(root, database_url, namespace, env: { "TASKER_WORKER" => nil })
      expect(booted).to include("worker" => false)
      booted, = boot(root, database_url, namespace, "server", env: { "TASKER_WORKER" => "0" })
      expect(booted).to include("worker" => false)
    end
  end
end
