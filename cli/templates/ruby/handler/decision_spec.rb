RSpec.describe {{constant}} do
  it "sends large amounts to manual review" do
    expect(run_handler(described_class, build_step_context(input: { "amount" => 5_000 }))).to choose_steps("manual_review")
  end

  it "approves small amounts automatically" do
    expect(run_handler(described_class, build_step_context(input: { "amount" => 20 }))).to choose_steps("auto_approve")
  end
end
