RSpec.describe {{constant}} do
  it "processes its range with checkpoints" do
    context = build_batch_context(start_cursor: 0, end_cursor: 250, batch_config: { "checkpoint_interval" => 100 })
    expect(run_handler(described_class, context)).to have_result("items" => 250, "sum" => (0...250).sum)
    expect(recorded_checkpoints(context).map(&:cursor)).to eq([100, 200, 250])
  end

  it "resumes from the last checkpoint" do
    checkpoint = { "cursor" => 200, "items_done" => 200, "accumulated" => { "sum" => (0...200).sum } }
    context = build_batch_context(start_cursor: 0, end_cursor: 250, batch_config: { "checkpoint_interval" => 100 },
                                  checkpoint: checkpoint, attempt: 2)
    expect(run_handler(described_class, context)).to have_result("items" => 250, "sum" => (0...250).sum)
    expect(recorded_checkpoints(context).map(&:cursor)).to eq([250])
  end
end
