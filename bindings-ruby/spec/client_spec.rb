# frozen_string_literal: true

require "spec_helper"
require "open3"

RSpec.describe TaskerCore::Client do
  describe "TaskerCore.connect" do
    it "rejects unsupported URLs with a ConfigurationError" do
      expect { TaskerCore.connect(database_url: "mysql://localhost/x") }
        .to raise_error(TaskerCore::ConfigurationError, /unsupported scheme/) { |e| expect(e.code).to eq("database_url_invalid") }
      expect { TaskerCore.connect(database_url: 42) }.to raise_error(TaskerCore::InvalidArgumentError, /database_url/)
    end

    it "reports an unreachable database without leaking the password" do
      expect { TaskerCore.connect(database_url: "postgres://u:s3cret@127.0.0.1:1/x") }
        .to raise_error(TaskerCore::ConnectionError) { |e|
          expect(e.message).not_to include("s3cret")
          expect(e).to be_a(TaskerCore::DatabaseError)
        }
    end

    it "defaults like the CLI (TASKER_DATABASE_URL, then DATABASE_URL)" do
      url = SpecSupport.sqlite_url
      previous = ENV.fetch("TASKER_DATABASE_URL", nil)
      ENV["TASKER_DATABASE_URL"] = url
      begin
        client = TaskerCore.connect
        expect(client.backend).to eq("sqlite")
        expect(url).to end_with(client.database)
      ensure
        ENV["TASKER_DATABASE_URL"] = previous
      end
    end
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    it "connects to the requested backend" do
      expect(client.backend).to eq(database_backend)
      # RabbitMQ carries the messages exactly on postgres_rabbitmq: its connection is a check.
      expect(client.health["checks"].map { |c| c["name"] }.include?("broker")).to eq(backend == "postgres_rabbitmq")
    end

    it "hands its backend to the processes it starts (they inherit the environment)" do
      script = <<~'RUBY'
        require "tasker_core"
        client = TaskerCore.connect(database_url: ARGV[0])
        puts client.health["checks"].any? { |c| c["name"] == "broker" }
        client.close
      RUBY
      out, err, status = Open3.capture3(ruby_subprocess_env, RbConfig.ruby, "-e", script, database_url)
      expect(status).to be_success, err
      expect(out.lines.last).to eq("#{backend == 'postgres_rabbitmq'}\n")
    end

    it "registers templates and reports them" do
      ns = SpecSupport.unique_namespace
      info = client.register_templates(write_fixture("diamond.yaml", namespace: ns))
      expect(info).to match([include(namespace: ns, name: "diamond_workflow", version: "1.0.0", queues: [ns],
                                     warnings: [])])
      expect(info.first[:id]).to be_a(Integer)
      # Registering the same content again is allowed; different content needs a new version.
      expect(client.register_templates(write_fixture("diamond.yaml", namespace: ns)).first[:id]).to eq(info.first[:id])
      changed = write_fixture("diamond.yaml", namespace: ns, steps: { "diamond_end" => { "retry" => { "max_attempts" => 9 } } })
      expect { client.register_templates(changed) }.to raise_error(TaskerCore::TemplateConflict, /bump the version/)
    end

    it "raises a TemplateError naming the file, step and field" do
      path = File.join(SpecSupport::FIXTURES, "..", "invalid", "unknown_dependency.yaml")
      expect { client.register_templates(path) }.to raise_error(TaskerCore::TemplateError) { |e|
        expect(e.code).to eq("template_invalid")
        expect(e.message).to include("unknown_dependency.yaml").and include("missing_step")
        expect(e.problems.first).to include(step: "only")
        expect(e.problems.first[:file]).to end_with("unknown_dependency.yaml")
      }
    end

    it "creates, gets, lists and cancels tasks" do
      ns = register_fixture(client, "linear.yaml")
      task = client.create_task(namespace: ns, name: "linear_workflow", context: { "even_number" => 2 }, tags: [:x])
      expect(task).to be_created
      expect(task.total_steps).to eq(4)
      expect(task.tags).to eq(["x"])

      fetched = client.get_task(task.uuid)
      expect(fetched.uuid).to eq(task.uuid)
      expect(fetched.steps.map(&:name)).to eq(%w[linear_step_1 linear_step_2 linear_step_3 linear_step_4])
      expect(fetched.step("linear_step_2").dependencies).to eq(["linear_step_1"])
      expect(fetched.step("linear_step_1").state).to eq("enqueued")

      listed = client.list_tasks(namespace: ns)
      expect(listed.map(&:uuid)).to eq([task.uuid])
      expect(client.list_tasks(namespace: ns, state: "complete")).to eq([])

      cancelled = client.cancel_task(task.uuid)
      expect(cancelled).to be_cancelled
      expect(cancelled).to be_terminal
      expect { client.cancel_task(task.uuid) }.to raise_error(TaskerCore::InvalidStateError)
      expect(client.get_task(task.uuid).steps.map(&:state).uniq).to eq(["cancelled"])
    end

    it "returns the first task again for the same idempotency key" do
      ns = register_fixture(client, "linear.yaml")
      first = client.create_task(namespace: ns, name: "linear_workflow", context: { "even_number" => 2 }, idempotency_key: "k1")
      again = client.create_task(namespace: ns, name: "linear_workflow", context: { "even_number" => 4 }, idempotency_key: "k1")
      expect(again.uuid).to eq(first.uuid)
      expect(again).not_to be_created
    end

    it "raises clear errors for unknown tasks, templates and bad arguments" do
      expect { client.get_task("0190a5c0-0000-7000-8000-000000000000") }
        .to raise_error(TaskerCore::TaskNotFound) { |e| expect(e.task_uuid).to eq("0190a5c0-0000-7000-8000-000000000000") }
      expect { client.get_task("not-a-uuid") }.to raise_error(TaskerCore::InvalidArgumentError, /not-a-uuid/)
      expect { client.create_task(namespace: "rb_nope", name: "nope", context: {}) }
        .to raise_error(TaskerCore::TemplateNotFound, %r{rb_nope/nope})
      expect { client.create_task(namespace: "x", name: "y", context: {}, priority: "high") }
        .to raise_error(TaskerCore::InvalidArgumentError, /priority/)
      expect { client.create_task(namespace: "x", name: "y", context: {}, tags: "a") }
        .to raise_error(TaskerCore::InvalidArgumentError, /tags/)
      expect { client.create_task(namespace: nil, name: "y", context: {}) }
        .to raise_error(TaskerCore::InvalidArgumentError, /namespace/)
      expect { client.list_tasks(state: "finished") }.to raise_error(TaskerCore::InvalidArgumentError, /finished/)
    end

    it "times out waiting for a task nobody works on" do
      ns = register_fixture(client, "linear.yaml")
      task = client.create_task(namespace: ns, name: "linear_workflow", context: { "even_number" => 2 })
      expect { task.wait(timeout: 0.2) }.to raise_error(TaskerCore::TimeoutError) { |e| expect(e.code).to eq("timeout") }
      expect { task.wait(timeout: -1) }.to raise_error(TaskerCore::InvalidArgumentError, /timeout/)
    end
  end
end
