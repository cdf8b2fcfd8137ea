# frozen_string_literal: true

module TaskerCore
  # Maps step callables (`handler.callable` in a template) to handlers.
  #
  # A handler is a class (instantiated once per attempt, with `config:` when its constructor
  # takes it) or any object responding to `call(context)` (a lambda, a module).
  class HandlerRegistry
    # `Module::ClassName` paths that {#resolve} hands to `Object.const_get`.
    CONSTANT_PATH = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/

    # @api private
    # A resolved handler that can be invoked.
    class Entry
      attr_reader :name, :target

      def initialize(name, target)
        @name = name
        @target = target
        @with_config = target.is_a?(Class) && takes_config?(target)
      end

      # Runs the handler and returns its raw return value.
      def invoke(context, method_name)
        method_name = (method_name || "call").to_s
        handler =
          if target.is_a?(Class)
            @with_config ? target.new(config: context.config) : target.new
          else
            target
          end
        unless handler.respond_to?(method_name)
          raise HandlerNotFound.new("handler '#{name}' (#{target}) does not respond to ##{method_name}",
                                    callable: name)
        end

        handler.public_send(method_name, context)
      end

      private

      def takes_config?(klass)
        klass.instance_method(:initialize).parameters.any? do |kind, param|
          kind == :keyrest || (%i[key keyreq].include?(kind) && param == :config)
        end
      end
    end

    def initialize
      @entries = {}.freeze
      @lock = Mutex.new
    end

    # Registers `handler` under `name` (default: its `handler_name` or class name).
    # @param handler [Class, #call]
    # @param name [String, Symbol, nil]
    # @return [self]
    def register(handler, name: nil)
      name = (name || default_name(handler))&.to_s
      if name.nil? || name.empty?
        raise InvalidArgumentError, "cannot register #{handler.inspect}: pass name: (anonymous handlers have no name)"
      end
      unless handler.is_a?(Class) || handler.respond_to?(:call)
        raise InvalidArgumentError, "handler for '#{name}' must be a class or respond to #call, got #{handler.inspect}"
      end

      @lock.synchronize { @entries = @entries.merge(name => Entry.new(name, handler)).freeze }
      self
    end

    # The registered entry for `name`, or nil.
    # @return [Entry, nil]
    def [](name)
      @entries[name.to_s]
    end

    # @return [Array<String>] registered names
    def names
      @entries.keys
    end

    # Whether `name` is registered.
    def key?(name)
      @entries.key?(name.to_s)
    end

    # Removes every registration (for tests).
    def clear
      @lock.synchronize { @entries = {}.freeze }
      self
    end

    # Resolves a callable: this registry, then `fallback` registries, then `Object.const_get`
    # for `Module::ClassName` paths.
    # @return [Entry]
    # @raise [HandlerNotFound]
    def resolve(callable, fallback: [])
      callable = callable.to_s
      found = self[callable] || fallback.lazy.map { |r| r[callable] }.find(&:itself)
      return found if found

      self.class.constant_entry(callable)
    end

    # @api private
    def self.constant_entry(callable)
      unless CONSTANT_PATH.match?(callable)
        raise HandlerNotFound.new("no handler registered for callable '#{callable}'", callable: callable)
      end

      target =
        begin
          Object.const_get(callable)
        rescue NameError => e
          raise HandlerNotFound.new("no handler registered for callable '#{callable}' and no constant " \
                                    "#{callable} (#{e.message})", callable: callable)
        rescue ScriptError, StandardError => e
          raise HandlerNotFound.new("cannot load handler '#{callable}': #{e.class}: #{e.message}", callable: callable)
        end
      unless target.is_a?(Class) || target.respond_to?(:call)
        raise HandlerNotFound.new("#{callable} is a #{target.class}, not a step handler (a class, or an object " \
                                  "responding to #call)", callable: callable)
      end

      Entry.new(callable, target)
    end

    private

    def default_name(handler)
      return handler.handler_name if handler.respond_to?(:handler_name)

      handler.is_a?(Module) ? handler.name : nil
    end
  end
end
