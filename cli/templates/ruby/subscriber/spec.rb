RSpec.describe {{constant}} do
  it "subscribes to its events in group {{group}}" do
    expect(described_class.group).to eq("{{group}}")
    expect(described_class.patterns).to eq([{{patterns}}])
  end
{{tests}}end
