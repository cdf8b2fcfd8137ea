RSpec.describe {{constant}} do
  it "splits the items into batches" do
    result = run_handler(described_class, build_step_context(input: { "total_items" => 250 }))
    expect(result).to have_batches(worker: "process_batch", count: 3, total: 250)
  end

  it "creates no batches without items" do
    expect(run_handler(described_class, build_step_context(input: { "total_items" => 0 }))).to have_no_batches
  end
end
