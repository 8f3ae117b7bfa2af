#!/usr/bin/env bash
# Starts every service the tests use that is not already answering on its port, waits until
# each answers, and installs the Debian tools the tests need. Idempotent; never stops anything.
# Required services (this repository's tests fail without them under CI=true): PostgreSQL, NATS,
# Redis, RabbitMQ, Mosquitto.
# The others are started when down, but failing to start them is only a warning.
set -euo pipefail

WAIT_SECONDS="${OUTBOX_SERVICE_WAIT_SECONDS:-60}"
REQUIRED=(postgres nats redis rabbitmq mosquitto)
# Debian packages the tests need: kcat runs librdkafka's mock Kafka cluster; chromium runs the
# dashboard test (driven by playwright-core).
DEBIAN_TOOLS=(kcat chromium)

port_answers() {
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start_postgres() {
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
}
start_mariadb() {
  # /run is a tmpfs on a fresh boot: mariadbd needs its socket directory.
  install -d -o mysql -g mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}
start_redis() {
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
start_rabbitmq() {
  rabbitmq-server -detached
}
start_mosquitto() {
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
}
start_nats() {
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

# name port
SERVICES=(
  "postgres 5432"
  "mariadb 3306"
  "redis 6379"
  "rabbitmq 5672"
  "mosquitto 1883"
  "nats 4222"
)

is_required() {
  local name=$1 r
  for r in "${REQUIRED[@]}"; do [[ $r == "$name" ]] && return 0; done
  return 1
}

declare -A STATE=()

# Issue every start command first, so that slow starters (RabbitMQ) boot in parallel.
for entry in "${SERVICES[@]}"; do
  read -r name port <<<"$entry"
  if port_answers "$port"; then
    STATE[$name]=running
  elif "start_$name" >"/tmp/outbox-ci-start-$name.log" 2>&1; then
    STATE[$name]=starting
  else
    STATE[$name]=start-failed
  fi
done

failed_required=0
for entry in "${SERVICES[@]}"; do
  read -r name port <<<"$entry"
  case ${STATE[$name]} in
    running)
      echo "$name: up (already running)"
      continue
      ;;
    starting | start-failed)
      deadline=$((SECONDS + WAIT_SECONDS))
      until port_answers "$port" || ((SECONDS >= deadline)); do sleep 1; done
      ;;
  esac
  if port_answers "$port"; then
    echo "$name: started"
  elif is_required "$name"; then
    echo "$name: FAILED (port $port does not answer; see /tmp/outbox-ci-start-$name.log)"
    failed_required=1
  else
    echo "$name: FAILED (warning only: no test of this issue needs it; see /tmp/outbox-ci-start-$name.log)"
  fi
done

if ((failed_required)); then
  echo "setup-services: a required service is down" >&2
  exit 1
fi

# The databases the tests use.
pg_psql() {
  if [[ $(id -u) == 0 ]] && id postgres >/dev/null 2>&1; then
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"
  else
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"
  fi
}
# A port that answers may still belong to a server that is starting up: wait until it accepts queries.
deadline=$((SECONDS + WAIT_SECONDS))
until pg_isready -q -h 127.0.0.1 -p 5432 -t 1 || ((SECONDS >= deadline)); do sleep 1; done
for db in test; do
  if [[ $(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
    pg_psql -d postgres -c "CREATE DATABASE \"$db\""
    echo "postgres: created database $db"
  fi
done

# Debian tools: installs the missing ones from the list given (apt-get update once).
install_debian_tools() {
  local missing=() tool
  for tool in "$@"; do
    dpkg-query -W -f='${Status}' "$tool" 2>/dev/null | grep -q 'install ok installed' || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_debian_tools "${DEBIAN_TOOLS[@]}"
