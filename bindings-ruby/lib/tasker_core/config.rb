# frozen_string_literal: true

module TaskerCore
  # One configuration value as {TaskerCore.config} reports it.
  #
  # - `key`: `section.key`, e.g. "worker.concurrency"
  # - `value`: the value (Integer, Float, String, Boolean or Array); a secret is shown redacted
  # - `origin`: :default, :file or :env
  # - `source`: the file's path (:file) or the variable's name (:env); nil for :default
  ConfigValue = Struct.new(:key, :value, :origin, :source, keyword_init: true) do
    # @api private
    def self.from_hash(hash)
      origin = hash["origin"] || {}
      new(key: hash["key"], value: hash["value"], origin: origin["kind"].to_sym,
          source: origin["path"] || origin["var"])
    end

    # Where the value came from as `tasker config show` prints it: "default", the file's path,
    # or "$VARIABLE".
    # @return [String]
    def origin_label
      case origin
      when :file then source.to_s
      when :env then "$#{source}"
      else "default"
      end
    end
  end
end
