RSpec.describe {{constant}} do
  it "greets the name in the context" do
    result = run_handler(described_class, build_step_context(input: { "name" => "Ada" }))
    expect(result).to be_success
    expect(result).to have_result("greeting" => "Hello, Ada!")
  end

  it "greets the world by default" do
    expect(run_handler(described_class, build_step_context)).to have_result("greeting" => "Hello, world!")
  end
end
