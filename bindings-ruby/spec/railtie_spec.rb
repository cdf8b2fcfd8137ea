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
    File.write(path, File.read(path).sub("success(result: { \"greeting\" => \"Hello, \#{name}!\" })",
                                         'success(result: { "step" => context.step_name, ' \
                                         '"doubled" => context.dependency_result("autoloaded")["value"] })'))
    root
  end

  # The tasker CLI the generator runs (it writes the files): $TASKER_CLI, else this checkout's
  # debug build (bindings-ruby/scripts/test.sh builds it).
  def tasker_cli
    ENV.fetch("TASKER_CLI") do
      target = ENV.fetch("CARGO_TARGET_DIR", File.expand_path("../../target", __dir__))
      File.join(target, "debug", "tasker")
    end
  end

  # `bin/rails generate tasker:step_handler NAME` in the app.
  def generate(root, name, *options)
    out, err, status = ruby_child("bin/rails", "generate", "tasker:step_handler", name, *options,
                                  chdir: root, env: { "TASKER_CLI" => tasker_cli })
    expect(status).to be_success, "generator failed: #{out}\n#{err}"
    out
  end

  # `bin/rails generate tasker:subscriber NAME` in the app: [stdout, stderr, status].
  def generate_subscriber(root, name, *options)
    ruby_child("bin/rails", "generate", "tasker:subscriber", name, *options,
               chdir: root, env: { "TASKER_CLI" => tasker_cli })
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
      expect(out).to include("2 examples, 0 failures")
    end

    it "writes what `tasker generate handler --language ruby` writes, for every step type" do
      %w[standard decision batchable batch_worker].each do |type|
        rails_root = make_app
        generate(rails_root, "billing/#{type}_step", "--type", type)
        cli_root = File.join(SpecSupport::TMP_ROOT, "cli-#{SecureRandom.hex(4)}")
        _, err, status = Open3.capture3(tasker_cli, "generate", "handler", "billing/#{type}_step", "--language", "ruby",
                                        "--type", type, "--dir", cli_root, "--handlers-dir", "app/step_handlers",
                                        "--tests-dir", "spec/step_handlers")
        expect(status).to be_success, err
        ["app/step_handlers/billing/#{type}_step_handler.rb",
         "spec/step_handlers/billing/#{type}_step_handler_spec.rb"].each do |file|
          expect(File.read(File.join(rails_root, file))).to eq(File.read(File.join(cli_root, file))), file
        end
        out, err, status = ruby_child(Gem.bin_path("rspec-core", "rspec"), "spec/step_handlers", chdir: rails_root)
        expect(status).to be_success, "generated #{type} spec failed:\n#{out}\n#{err}"
      end
    end
  end

  describe "the subscriber generator" do
    it "creates a subscriber routed by event name, its spec, and registers it" do
      root = make_app
      out, err, status = generate_subscriber(root, "billing/audit", "--events", "task.completed", "step.failed", "payment.*")
      expect(status).to be_success, "generator failed: #{out}\n#{err}"
      source = File.read(File.join(root, "app/subscribers/billing/audit_subscriber.rb"))
      expect(source).to include("module Billing", "class AuditSubscriber < TaskerCore::Subscriber",
                                'group "billing/audit_subscriber"',
                                'subscribe_to "task.completed", "step.failed", "payment.*"',
                                "def handle_task_completed(event)", "def handle_step_failed(event)", "def handle(event)")
      expect(out).to include('group "billing/audit_subscriber"')
      expect(File.read(File.join(root, "config/application.rb")))
        .to include('config.tasker.subscribers << "Billing::AuditSubscriber"')

      # One example for the subscription, one per named event, one for the wildcard (payment.example).
      rspec = Gem.bin_path("rspec-core", "rspec") rescue "rspec" # rubocop:disable Style/RescueModifier
      out, err, status = ruby_child(rspec, File.join(root, "spec/subscribers/billing/audit_subscriber_spec.rb"), chdir: root)
      expect(status).to be_success, "generated spec failed:\n#{out}\n#{err}"
      expect(out).to include("4 examples, 0 failures")

      out, err, status = generate_subscriber(root, "bad", "--events", "Task Completed")
      expect([status.success?, out + err]).to match([false, /--events: 'Task Completed' has 'T'/])
      out, err, status = generate_subscriber(root, "typo", "--events", "task.compleated")
      expect([status.success?, out + err]).to match([false, /'task.compleated' is not an event of the catalog/])
      expect(File.read(File.join(root, "config/application.rb"))).not_to include("BadSubscriber", "TypoSubscriber")
    end

    it "writes what `tasker generate subscriber --language ruby` writes, and --skip-register leaves the app alone" do
      [["audit", "task.completed,step.failed,payment.*"], ["billing/ledger", "payment.*"], ["watch_all", "*"]]
        .each do |name, events|
        rails_root = make_app
        application = File.read(File.join(rails_root, "config/application.rb"))
        out, err, status = generate_subscriber(rails_root, name, "--events", events, "--skip-register")
        expect(status).to be_success, "generator failed: #{out}\n#{err}"
        expect(File.read(File.join(rails_root, "config/application.rb"))).to eq(application)
        cli_root = File.join(SpecSupport::TMP_ROOT, "cli-#{SecureRandom.hex(4)}")
        _, err, status = Open3.capture3(tasker_cli, "generate", "subscriber", name, "--language", "ruby",
                                        "--events", events, "--dir", cli_root, "--subscribers-dir", "app/subscribers",
                                        "--tests-dir", "spec/subscribers")
        expect(status).to be_success, err
        ["app/subscribers/#{name}_subscriber.rb", "spec/subscribers/#{name}_subscriber_spec.rb"].each do |file|
          expect(File.read(File.join(rails_root, file))).to eq(File.read(File.join(cli_root, file))), file
        end
        out, err, status = ruby_child(Gem.bin_path("rspec-core", "rspec"), "spec/subscribers", chdir: rails_root)
        expect(status).to be_success, "generated #{name} spec failed:\n#{out}\n#{err}"
      end
    end
  end

  each_backend do
    it "runs a generated subscriber and the notifications bridge beside the worker" do
      namespace = SpecSupport.unique_namespace
      root = make_app(namespace)
      name = "audit_#{SecureRandom.hex(3)}"
      out, err, status = generate_subscriber(root, name, "--events", "task.completed")
      expect(status).to be_success, "generator failed: #{out}\n#{err}"
      path = File.join(root, "app/subscribers/#{name}_subscriber.rb")
      File.write(path, File.read(path).sub(/def handle_task_completed\(event\)\n/,
                                           "\\0      SPEC_EVENTS << [\"subscriber\", event.name, event.task_uuid]\n"))
      url = database_url
      bridge = "rails-spec-#{SecureRandom.hex(3)}"
      booted, exited = boot(root, url, namespace, "server",
                            env: { "TASKER_WORKER" => nil, "SPEC_EVENTS" => "1", "SPEC_EVENTS_BRIDGE" => bridge })
      expect(booted).to include("worker" => true, "state" => "complete",
                                "subscriber_groups" => [bridge, "#{name}_subscriber"])
      expect(booted["events"]).to include("bridge tasker.task.created", "bridge tasker.task.completed")
      expect(booted["events"].grep(/\Asubscriber/)).to eq(["subscriber task.completed"])
      expect(exited).to eq("phase" => "exit", "running_workers" => 0, "running_subscribers" => 0)
    ensure
      client = url && TaskerCore.connect(database_url: url)
      [bridge, "#{name}_subscriber"].each { |g| client&.delete_event_group(g) }
      client&.close
    end

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
