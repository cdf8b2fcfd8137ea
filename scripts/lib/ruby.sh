# shellcheck shell=bash
# Sourced by the build scripts. `ruby_headers` succeeds when the `ruby` on PATH has its C
# headers: rb-sys builds against that ruby's RbConfig (headers of another Ruby do not count).
ruby_headers() {
  ruby -rrbconfig -e '
    c = RbConfig::CONFIG
    exit(File.file?(File.join(c["rubyhdrdir"], "ruby.h")) &&
         File.file?(File.join(c["rubyarchhdrdir"], "ruby", "config.h")))' 2>/dev/null
}
