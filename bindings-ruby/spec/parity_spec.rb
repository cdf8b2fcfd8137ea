# frozen_string_literal: true

require "spec_helper"

# The rows of docs/parity.md that the Ruby gem proves (each language has the same tests).
RSpec.describe "parity" do
  nan_metadata_failure = lambda do |_context|
    raise TaskerCore::RetryableError.new("gateway down", error_type: "GatewayDown",
                                                         metadata: { "latency" => { "p99" => Float::NAN } })
  end

  def one_step_template(namespace, name: "one_try", mul: 1)
    { "name" => name, "namespace_name" => namespace, "version" => "1.0.0",
      "steps" => [{ "name" => "only", "handler" => { "callable" => "parity.only", "initialization" => { "mul" => mul } },
                    "retry" => { "max_attempts" => 1 } }] }
  end

  def write_dir(files)
    dir = File.join(SpecSupport::TMP_ROOT, "parity-#{SecureRandom.hex(4)}")
    FileUtils.mkdir_p(dir)
    files.each { |name, template| File.write(File.join(dir, name), YAML.dump(template)) }
    dir
  end

  it "keeps a failure whose metadata has no JSON form, replacing the metadata by a note (no database)" do
    result = TaskerCore::Testing.run_handler(nan_metadata_failure)
    expect(result).to have_attributes(error_type: "GatewayDown", message: "gateway down", retryable?: true)
    expect(result.metadata).to eq("metadata_dropped" => { "code" => "metadata_not_serializable",
                                                          "path" => "metadata.latency.p99",
                                                          "reason" => "float NaN has no JSON representation" })
  end

  it "exposes every concept of the handler context" do
    ctx = TaskerCore::Testing.build_step_context(
      input: { "order" => 7 }, dependency_results: { "validate" => { "ok" => true } }, config: { "mul" => 2 },
      attempt: 2, max_attempts: 3, step_name: "charge", namespace: "shop", task_name: "checkout",
      task_version: "1.2.0", handler_name: "Shop::Charge", handler_method: "refund", cancelled: true
    )
    expect([ctx.input, ctx.task_context]).to eq([{ "order" => 7 }] * 2)
    expect([ctx.config, ctx.initialization]).to eq([{ "mul" => 2 }] * 2)
    expect(ctx.dependency_results).to eq("validate" => { "ok" => true })
    expect([ctx.dependency_result("validate"), ctx.get_dependency_result("validate")]).to eq([{ "ok" => true }] * 2)
    expect([ctx.attempt, ctx.max_attempts, ctx.retry?, ctx.last_retry?]).to eq([2, 3, true, false])
    expect([ctx.step_name, ctx.namespace, ctx.task_name, ctx.task_version]).to eq(%w[charge shop checkout 1.2.0])
    expect([ctx.handler_name, ctx.handler_method]).to eq(%w[Shop::Charge refund])
    expect([ctx.task_uuid, ctx.step_uuid, ctx.correlation_id]).to all(be_a(String))
    expect([ctx.deadline, ctx.event_id, ctx.batch, ctx.checkpoint, ctx.batch?]).to eq([nil, nil, nil, nil, false])
    expect(ctx.cancelled?).to be(true)
    ctx.publish("order.charged", { "amount" => 7 })
    expect(ctx.published_events).to eq([{ "name" => "order.charged", "payload" => { "amount" => 7 } }])
  end

  it "refuses a non-finite number in a result, naming its path" do
    [Float::NAN, Float::INFINITY, -Float::INFINITY].each do |value|
      result = TaskerCore::Testing.run_handler(->(_c) { { "ratio" => [1.0, value] } })
      expect(result).to have_attributes(error_type: "result_not_serializable", retryable?: false)
      expect(result.metadata["path"]).to eq("result.ratio[1]")
    end
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    it "lists templates and looks one up" do
      ns = register_fixture(client, "linear.yaml")
      mine = client.list_templates.select { |t| t.namespace == ns }
      expect(mine.map(&:name)).to eq(["linear_workflow"])
      info = client.get_template(ns, "linear_workflow")
      expect(info).to have_attributes(version: "1.0.0", queues: [ns])
      expect(info.steps.first).to be_a(String)
      expect(info.source_path).to end_with("linear.yaml")
      expect(info.registered_at).to be_a(Time)
      expect(client.get_template(ns, "linear_workflow", "1.0.0")).to eq(info)
      expect { client.get_template(ns, "linear_workflow", "9.9.9") }.to raise_error(TaskerCore::TemplateNotFound)
    end

    it "registers a directory all or nothing" do
      ns = SpecSupport.unique_namespace
      client.register_templates(write_dir("b.yaml" => one_step_template(ns)))
      # Only this namespace's templates: other suites may share the database.
      mine = -> { client.list_templates.select { |t| t.namespace == ns }.map(&:name) }
      before = mine.call
      clash = write_dir("a_new.yaml" => one_step_template(ns, name: "first_new"),
                        "b_clash.yaml" => one_step_template(ns, mul: 2),
                        "c_new.yaml" => one_step_template(ns, name: "last_new"))
      expect { client.register_templates(clash) }.to raise_error(TaskerCore::TemplateConflict)
      expect(mine.call).to eq(before)
      expect { client.get_template(ns, "first_new") }.to raise_error(TaskerCore::TemplateNotFound)
    end

    it "returns the first task for the same request under strict identity" do
      ns = register_fixture(client, "single.yaml")
      first = client.create_task(namespace: ns, name: "single_workflow", context: { "a" => 1, "b" => 2 }, strict_identity: true)
      same = client.create_task(namespace: ns, name: "single_workflow", context: { "b" => 2, "a" => 1 }, strict_identity: true)
      other = client.create_task(namespace: ns, name: "single_workflow", context: { "a" => 2 }, strict_identity: true)
      expect([first.created?, same.created?, same.uuid]).to eq([true, false, first.uuid])
      expect(other.uuid).not_to eq(first.uuid)
      expect do
        client.create_task(namespace: ns, name: "single_workflow", context: {}, idempotency_key: "k", strict_identity: true)
      end.to raise_error(TaskerCore::InvalidArgumentError, /cannot be combined/)
    end

    it "keeps a failure whose metadata has no JSON form in a worker" do
      ns = SpecSupport.unique_namespace
      client.register_templates(write_dir("one.yaml" => one_step_template(ns)))
      with_worker(client, queues: [ns], handlers: { "parity.only" => nan_metadata_failure }) do
        step = client.create_task(namespace: ns, name: "one_try", context: {}).wait(timeout: 30).step("only")
        expect(step.last_error).to include("error_type" => "GatewayDown", "message" => "gateway down", "retryable" => true)
        expect(step.last_error["metadata"]).to eq("metadata_dropped" => { "code" => "metadata_not_serializable",
                                                                          "path" => "metadata.latency.p99",
                                                                          "reason" => "float NaN has no JSON representation" })
      end
    end

    it "names a step's result results; result is a deprecated alias" do
      ns = register_fixture(client, "single.yaml")
      with_worker(client, queues: [ns], handlers: { "single.only" => ->(_c) { { "ok" => true } } }) do
        task = client.create_task(namespace: ns, name: "single_workflow", context: {})
        step = client.wait_for_task(task.uuid, timeout: 30).step("only")
        expect(step.results).to eq("ok" => true)
        previous = Warning[:deprecated]
        Warning[:deprecated] = true
        expect { expect(step.result).to eq("ok" => true) }.to output(/Step#result is deprecated/).to_stderr
      ensure
        Warning[:deprecated] = previous unless previous.nil?
      end
    end
  end
end
