# Sourced by the test and benchmark scripts. `use_rabbitmq` makes RABBITMQ_URL point at a
# RabbitMQ server: the one already in RABBITMQ_URL, else one answering on 127.0.0.1:5672, else
# a server started here (`apt-get install rabbitmq-server` when it is missing, then
# `rabbitmq-server -detached`, waiting for the port), stopped again by `_tasker_rabbit_stop`.
# RABBITMQCTL names the control tool the broker-restart test uses (default: rabbitmqctl).

_tasker_rabbit_started=""

_tasker_rabbit_answers() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

_tasker_rabbit_stop() {
  if [ -n "$_tasker_rabbit_started" ]; then
    rabbitmqctl stop >/dev/null 2>&1 || true
    _tasker_rabbit_started=""
    echo "==> stopped the RabbitMQ server started for the tests"
  fi
}

use_rabbitmq() {
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  if [ -n "${RABBITMQ_URL:-}" ]; then
    echo "==> RabbitMQ tests use RABBITMQ_URL (${RABBITMQ_URL%%@*}@…)"
    return 0
  fi
  export RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
  if _tasker_rabbit_answers 127.0.0.1 5672; then
    echo "==> RabbitMQ tests use the server on 127.0.0.1:5672"
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "==> installing RabbitMQ (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  # The Debian package may have started it already (a service); otherwise start it here.
  if ! _tasker_rabbit_answers 127.0.0.1 5672; then
    rabbitmq-server -detached >/dev/null 2>&1 || true
    _tasker_rabbit_started=1
  fi
  local waited=0
  until _tasker_rabbit_answers 127.0.0.1 5672; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge 90 ]; then
      echo "RabbitMQ did not answer on 127.0.0.1:5672 within 90 s" >&2
      return 1
    fi
  done
  # The port opens before the broker accepts connections: wait for the application too.
  rabbitmqctl await_startup >/dev/null 2>&1 || true
  echo "==> started RabbitMQ on 127.0.0.1:5672 (${waited} s)"
}
