# frozen_string_literal: true

require "spec_helper"
require "rbs"
require "rbs/cli"
require "stringio"
require "tasker_core/notifications_bridge"

RSpec.describe "RBS signatures (sig/)" do
  sig_dir = File.expand_path("../sig", __dir__)

  def self.builder(sig_dir)
    @builder ||= begin
      loader = RBS::EnvironmentLoader.new
      # logger's signatures include MonitorMixin. rbs 2.x (Ruby 3.1) does not load a library's
      # manifest.yaml dependencies, so monitor is named here; newer rbs dedups it.
      loader.add(library: "monitor")
      loader.add(library: "logger")
      loader.add(path: Pathname(sig_dir))
      env = RBS::Environment.from_loader(loader).resolve_type_names
      RBS::DefinitionBuilder.new(env: env)
    end
  end

  let(:builder) { self.class.builder(sig_dir) }

  def type_name(mod)
    RBS::TypeName.new(name: mod.name.split("::").last.to_sym,
                      namespace: RBS::Namespace.parse("::#{mod.name.split('::')[0..-2].join('::')}"))
  end

  it "validate with rbs" do
    out = StringIO.new
    err = StringIO.new
    # `-r monitor` before `-r logger`: see self.builder (rbs 2.x ignores logger's manifest.yaml).
    RBS::CLI.new(stdout: out, stderr: err).run(["-r", "monitor", "-r", "logger", "-I", sig_dir, "validate", "--silent"])
    expect(err.string).to eq("")
  end

  classes = [
    TaskerCore::Client, TaskerCore::Task, TaskerCore::Step, TaskerCore::Transition, TaskerCore::StepContext,
    TaskerCore::Worker, TaskerCore::HandlerRegistry, TaskerCore::HandlerRegistry::Entry,
    TaskerCore::StepHandler::Base, TaskerCore::StepResult::Success, TaskerCore::StepResult::Failure,
    TaskerCore::Error, TaskerCore::ValidationError, TaskerCore::TemplateError, TaskerCore::SerializationError,
    TaskerCore::RetryableError, TaskerCore::PermanentError, TaskerCore::HandlerNotFound, TaskerCore::FencedError,
    TaskerCore::Native::Client, TaskerCore::Native::Worker, TaskerCore::Batch::Cursor, TaskerCore::BatchContext,
    TaskerCore::Checkpoint, TaskerCore::StepResult::Decision, TaskerCore::StepResult::Batches,
    TaskerCore::Worker::Checkpointer, TaskerCore::Testing::CheckpointRecorder, TaskerCore::StepNotFound,
    TaskerCore::DlqEntryNotFound, TaskerCore::StepDetail, TaskerCore::StepError, TaskerCore::DlqEntry,
    TaskerCore::DlqNote, TaskerCore::QueuedDlqEntry, TaskerCore::DlqCount, TaskerCore::DlqStats, TaskerCore::TaskHealth,
    TaskerCore::WorkerInfo, TaskerCore::ConfigurationError, TaskerCore::ConfigValue, TaskerCore::EventInfo,
    TaskerCore::Event, TaskerCore::EventGroupStatus, TaskerCore::EventDeadLetter, TaskerCore::EventSubscription,
    TaskerCore::FastSubscription, TaskerCore::Subscriber, TaskerCore::NotificationsBridge, TaskerCore::SubscriberRunner,
    TaskerCore::Native::EventSubscription, TaskerCore::Native::FastSubscription, TaskerCore::TemplateInfo
  ]
  classes.each do |klass|
    it "declare every public instance method of #{klass}" do
      declared = builder.build_instance(type_name(klass)).methods.keys
      expect(klass.public_instance_methods(false) - declared).to eq([])
    end
  end

  modules = [TaskerCore, TaskerCore::Native, TaskerCore::Testing, TaskerCore::StepResult, TaskerCore::Native::Client,
             TaskerCore::Native::Worker, TaskerCore::Worker, TaskerCore::StepHandler::Base, TaskerCore::Batch,
             TaskerCore::Checkpoint, TaskerCore::BatchContext, TaskerCore::StepResult::Decision,
             TaskerCore::StepResult::Batches, TaskerCore::StepError, TaskerCore::DlqEntry, TaskerCore::DlqNote,
             TaskerCore::QueuedDlqEntry, TaskerCore::DlqCount, TaskerCore::DlqStats, TaskerCore::TaskHealth,
             TaskerCore::WorkerInfo, TaskerCore::ConfigValue, TaskerCore::Events, TaskerCore::EventInfo, TaskerCore::Event,
             TaskerCore::EventGroupStatus, TaskerCore::EventDeadLetter, TaskerCore::Subscriber,
             TaskerCore::NotificationsBridge, TaskerCore::SubscriberRunner, TaskerCore::Execution,
             TaskerCore::Logging]
  modules.each do |mod|
    it "declare every singleton method of #{mod}" do
      declared = builder.build_singleton(type_name(mod)).methods.keys
      expect(mod.singleton_methods(false) - declared).to eq([])
    end
  end
end
