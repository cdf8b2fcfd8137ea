# frozen_string_literal: true

require "spec_helper"

RSpec.describe "workflows run end to end by Ruby handlers" do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    def run_task(file, context, handlers: nil, concurrency: 4)
      ns = register_fixture(client, file)
      with_worker(client, queues: [ns], handlers: handlers, concurrency: concurrency) do
        task = client.create_task(namespace: ns, name: template_name(file), context: context,
                                  initiator: "rspec", source_system: "spec", reason: "workflow test")
        task.wait(timeout: 60)
      end
    end

    def values(task)
      task.steps.to_h { |s| [s.name, s.results["value"]] }
    end

    def seen(task)
      task.steps.to_h { |s| [s.name, s.results["seen"]] }
    end

    it "runs a linear workflow with class handlers resolved by constant name" do
      task = run_task("linear.yaml", { "even_number" => 2 })
      expect(task.state).to eq("complete")
      expect(task.namespace).to start_with("rb_")
      expect(values(task)).to eq(
        "linear_step_1" => 4, "linear_step_2" => 16, "linear_step_3" => 256, "linear_step_4" => 65_536
      )
      expect(seen(task)).to eq(
        "linear_step_1" => [], "linear_step_2" => ["linear_step_1"],
        "linear_step_3" => ["linear_step_2"], "linear_step_4" => ["linear_step_3"]
      )
      expect(task.steps.map(&:attempts)).to all(eq(1))
      expect(task.completed_steps).to eq(4)
    end

    it "runs a diamond workflow with block handlers" do
      task = run_task("diamond.yaml", { "n" => 3 }, handlers: %w[rb_diamond_start rb_diamond_branch_b])
      expect(task).to be_complete
      expect(values(task)).to eq(
        "diamond_start" => 9, "diamond_branch_b" => 19, "diamond_branch_c" => 27, "diamond_end" => 46
      )
      expect(seen(task)["diamond_end"]).to eq(%w[diamond_branch_b diamond_branch_c])
      expect(seen(task)["diamond_branch_c"]).to eq(["diamond_start"])
    end

    it "runs a tree workflow with explicitly registered handler classes" do
      handlers = [RbSpec::Tree::Root, RbSpec::Tree::Scale, RbSpec::Tree::Offset, RbSpec::Tree::Sum]
      task = run_task("tree.yaml", { "n" => 5 }, handlers: handlers)
      expect(task).to be_complete
      expect(values(task)).to eq(
        "tree_root" => 5, "tree_branch_left" => 10, "tree_branch_right" => 15,
        "tree_leaf_d" => 11, "tree_leaf_e" => 12, "tree_leaf_f" => 18, "tree_leaf_g" => 19,
        "tree_final_convergence" => 60
      )
      expect(seen(task)["tree_final_convergence"]).to eq(%w[tree_leaf_d tree_leaf_e tree_leaf_f tree_leaf_g])
    end

    it "runs a mixed DAG with class, block and registered handlers (and a custom method)" do
      task = run_task("mixed_dag.yaml", { "n" => 4 }, handlers: { "mixed.double" => RbSpec::Mixed::Doubler })
      expect(task).to be_complete
      expect(values(task)).to eq("dag_init" => 4, "dag_a" => 5, "dag_b" => 8, "dag_c" => 25, "dag_d" => 33, "dag_e" => 38)
      expect(seen(task)).to eq(
        "dag_init" => [], "dag_a" => ["dag_init"], "dag_b" => ["dag_init"], "dag_c" => ["dag_a"],
        "dag_d" => %w[dag_b dag_c], "dag_e" => %w[dag_a dag_d]
      )
    end

    it "stores success metadata and the task's fields" do
      ns = register_fixture(client, "linear.yaml")
      task = client.create_task(namespace: ns, name: "linear_workflow", context: { even_number: 6 },
                                initiator: "me", source_system: "spec", reason: "because", tags: %w[a b], priority: 7)
      expect(task).to have_attributes(state: "steps_in_process", initiator: "me", source_system: "spec",
                                      reason: "because", tags: %w[a b], priority: 7, context: { "even_number" => 6 })
      with_worker(client, queues: [ns]) { task.wait(timeout: 60) }
      expect(task.step("linear_step_4").results["value"]).to eq(6**16)
      expect(task.transitions.map(&:to_state)).to include("complete")
      expect(task.completed_at).to be_a(Time)
    end

    it "serves several tasks concurrently" do
      ns = register_fixture(client, "diamond.yaml")
      with_worker(client, queues: [ns], concurrency: 8) do
        tasks = (1..10).map { |n| client.create_task(namespace: ns, name: "diamond_workflow", context: { "n" => n }) }
        tasks.each { |t| t.wait(timeout: 60) }
        expect(tasks.map(&:state).uniq).to eq(["complete"])
        expect(tasks.map { |t| t.step("diamond_end").results["value"] }).to eq((1..10).map { |n| ((n * n) + 10) + (n * n * 3) })
      end
    end
  end
end
