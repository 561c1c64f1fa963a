#!/usr/bin/env bash
# Real services for the engine's tests, natively on 127.0.0.1 (no Docker).
#
#   scripts/services.sh install [SERVICE...]   fetch/build what SERVICE needs (idempotent)
#   scripts/services.sh start   [SERVICE...]   install on first use, start, return once the port accepts
#                                              connections (default: elasticmq moto kinesis rabbitmq activemq localstack)
#   scripts/services.sh stop    [SERVICE...]   stop what this script started (PID files only; default: all)
#   scripts/services.sh status  [SERVICE...]   running (ours) / up (not ours) / stopped
#   scripts/services.sh reset   SERVICE...     stop and wipe the service's data (next start is a fresh one)
#   scripts/services.sh env                    print `export ESM_TEST_...=...` lines for every endpoint
#   scripts/services.sh browser                install Debian's chromium when missing (the dashboard's tests)
#
# SERVICE   port(s) on 127.0.0.1                          what
# elasticmq 9324                                          ElasticMQ (SQS), Maven Central jars, account 000000000000
# moto      5000                                          moto server from the project's .venv, account 123456789012
# kinesis   4568 (http), 4567 (https)                     kinesis-mock (npm kinesis-local), patched to bind loopback
# kafka     9092 PLAINTEXT, 9096 SASL_PLAINTEXT/SCRAM,    Apache Kafka KRaft single node, Maven Central jars
#           9093 controller                               SCRAM-SHA-512/256 user $KAFKA_SCRAM_USER/$KAFKA_SCRAM_PASSWORD
#           9094 SSL with client certificates (mTLS)      CA, client cert and key in $KAFKA_TLS_DIR
# rabbitmq  5672 (AMQP 0-9-1), 25672 dist, 4369 epmd      Debian package rabbitmq-server, run without systemd
# activemq  61616 OpenWire, 61613 STOMP, 5673 AMQP 1.0    ActiveMQ Classic, Maven Central jars, user admin/admin
# localstack 4566                                         localstack-core on the host (optional; Python 3.13)
#
# Everything lives under $ESM_SERVICES_HOME (default: <project>/.services, gitignored): one folder per
# service, logs in .services/logs/SERVICE.log, PID files in .services/run/SERVICE.pid. Maven's local
# repository stays in ~/.m2 ($M2_REPO). A service whose port already accepts connections is left alone
# (and never stopped by this script). Each service is started in its own session/process group so that
# `stop` also ends its children (the RabbitMQ sh wrapper's beam.smp, ...). Start/install of one service
# is serialised with flock, so parallel callers (two test runs) do not race.
#
# Set ESM_SERVICES_STARTED_FILE=FILE to have `start` append the name of every service it actually started
# (scripts/test uses it to stop only what it started).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SH=${ESM_SERVICES_HOME:-$ROOT/.services}
RUN=$SH/run
LOGS=$SH/logs
M2_REPO=${M2_REPO:-$HOME/.m2/repository}
START_TIMEOUT=${START_TIMEOUT:-120}

ELASTICMQ_VERSION=1.7.1          # LATEST does not resolve on Central from here: keep it pinned
MOTO_VERSION=5.2.5
KINESIS_LOCAL_VERSION=0.6.2
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
AMQ_VERSION=${AMQ_VERSION:-5.18.3}       # newest 5.x whose stomp/amqp jars Central serves whole
LOG4J_VERSION=2.25.5
SPRING_VERSION=5.3.39                    # ActiveMQ 5.x xbean config needs Spring 5
LOCALSTACK_VERSION=2026.3.0

ELASTICMQ_PORT=${ELASTICMQ_PORT:-9324}
MOTO_PORT=${MOTO_PORT:-5000}
KINESIS_PORT=${KINESIS_PORT:-4568}
KINESIS_TLS_PORT=${KINESIS_TLS_PORT:-4567}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_SCRAM_PORT=${KAFKA_SCRAM_PORT:-9096}   # MSK's SASL/SCRAM port number (plaintext here, TLS on MSK)
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_TLS_PORT=${KAFKA_TLS_PORT:-9094}
KAFKA_TLS_DIR=${KAFKA_TLS_DIR:-$SH/kafka/tls}
KAFKA_SCRAM_USER=${KAFKA_SCRAM_USER:-esm}
KAFKA_SCRAM_PASSWORD=${KAFKA_SCRAM_PASSWORD:-esm-secret}
RABBIT_PORT=${RABBIT_PORT:-5672}
RABBIT_DIST_PORT=${RABBIT_DIST_PORT:-25672}
EPMD_PORT=${EPMD_PORT:-4369}
RABBIT_USER=guest RABBIT_PASSWORD=guest      # RabbitMQ's default user (loopback only)
AMQ_OPENWIRE_PORT=${AMQ_OPENWIRE_PORT:-61616}
AMQ_STOMP_PORT=${AMQ_STOMP_PORT:-61613}
AMQ_AMQP_PORT=${AMQ_AMQP_PORT:-5673}         # not 5672: that one is RabbitMQ's
AMQ_USER=${AMQ_USER:-admin}
AMQ_PASSWORD=${AMQ_PASSWORD:-admin}
LOCALSTACK_PORT=${LOCALSTACK_PORT:-4566}

ALL_SERVICES=(elasticmq moto kinesis kafka rabbitmq activemq localstack)
DEFAULT_START=(elasticmq moto kinesis rabbitmq activemq localstack kafka)   # what the test suite needs today

log() { echo "[services] $*" >&2; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }
now() { local t=${EPOCHREALTIME:-}; if [[ -n $t ]]; then echo "${t/,/.}"; else date +%s.%N; fi; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The port whose accepting connections means "the service is up" (the last listener each one opens).
main_port() {
  case $1 in
    elasticmq) echo "$ELASTICMQ_PORT" ;; moto) echo "$MOTO_PORT" ;; kinesis) echo "$KINESIS_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;; rabbitmq) echo "$RABBIT_PORT" ;; activemq) echo "$AMQ_STOMP_PORT" ;;
    localstack) echo "$LOCALSTACK_PORT" ;; *) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- PID files: "pid starttime"
# The start time (field 22 of /proc/PID/stat) guards against PID reuse: a recorded PID is ours only if
# the process with that PID started at the recorded time.
proc_starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $20 }'; }
proc_alive() { # alive and not a zombie
  [[ -r /proc/$1/stat ]] || return 1
  [[ $(sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $1 }') != Z ]]
}
pidfile() { echo "$RUN/$1.pid"; }
recorded_pid() { # name -> prints the PID if it is recorded, alive and the same process
  local pf; pf=$(pidfile "$1")
  [[ -f $pf ]] || return 1
  local pid st; read -r pid st <"$pf" || true
  [[ -n ${pid:-} ]] && proc_alive "$pid" && [[ $(proc_starttime "$pid") == "${st:-}" ]] || return 1
  echo "$pid"
}

# launch NAME LOGFILE DIR CMD... : run CMD in DIR in a new session (so PID == process group id), stdin
# from /dev/null, output appended to LOGFILE, and record its PID. The tiny bash wrapper writes its own
# PID and then execs CMD, so the recorded PID is exactly CMD's (whether or not setsid had to fork).
launch() {
  local name=$1 logf=$2 dir=$3; shift 3
  local tmp=$RUN/$name.pid.new
  rm -f "$tmp"
  [[ -s $logf ]] && mv -f "$logf" "$logf.1"      # keep the previous run's log, one generation
  printf '==== %s starting: %s\n' "$(date -Is)" "$*" >"$logf"
  # the service must not inherit (and so hold for ever) the flock taken by with_lock
  (if [[ -n ${LOCK_FD:-} ]]; then exec {LOCK_FD}>&-; fi
   # shellcheck disable=SC2016  # $$, $0 and $@ are the inner bash's
   cd "$dir" && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$tmp" "$@" </dev/null >>"$logf" 2>&1) &
  local i
  for ((i = 0; i < 250; i++)); do [[ -s $tmp ]] && break; sleep 0.02; done
  [[ -s $tmp ]] || die "$name: could not launch $1; see $logf"
  local pid; pid=$(cat "$tmp"); rm -f "$tmp"
  echo "$pid $(proc_starttime "$pid")" >"$(pidfile "$name")"
}

# stop_recorded NAME [GRACE]: SIGTERM the recorded process group, SIGKILL after GRACE seconds.
stop_recorded() {
  local name=$1 grace=${2:-30} pid i
  if ! pid=$(recorded_pid "$name"); then rm -f "$(pidfile "$name")"; return 1; fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do proc_alive "$pid" || break; sleep 0.1; done
  if proc_alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # leftovers of the group (children that outlived the leader) get a last SIGKILL
  if pgrep -g "$pid" >/dev/null 2>&1; then sleep 0.5; kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$(pidfile "$name")"
  log "stopped $name (pid $pid)"
}

# wait_up NAME PORT LOGFILE [TIMEOUT]: until 127.0.0.1:PORT accepts connections, or die with the log tail.
wait_up() {
  local name=$1 port=$2 logf=$3 timeout=${4:-$START_TIMEOUT} t0=$SECONDS pid
  until port_open "$port"; do
    if ! pid=$(recorded_pid "$name"); then
      echo "---- last lines of $logf:" >&2; tail -n 40 "$logf" >&2 || true
      die "$name exited before 127.0.0.1:$port accepted connections; full log: $logf"
    fi
    if ((SECONDS - t0 > timeout)); then
      echo "---- last lines of $logf:" >&2; tail -n 40 "$logf" >&2 || true
      stop_recorded "$name" 5 >/dev/null 2>&1 || true    # leave no half-started process behind
      die "$name (pid $pid) did not accept connections on 127.0.0.1:$port within ${timeout}s; full log: $logf"
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- prerequisites (Debian packages)
APT_UPDATED=
apt_install() { # PKG...
  local sudo=
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo="sudo -n"
  fi
  command -v apt-get >/dev/null || die "no apt-get here: install $* by hand"
  if [[ -z $APT_UPDATED ]]; then
    log "apt-get update (once) for: $*"
    $sudo apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  # Keep the package's own init script from starting a system-wide daemon (RabbitMQ on 5672, ...):
  # policy-rc.d exit 101 forbids it. Added only for the duration of the install, when missing.
  local added_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d; added_policy=1
  fi
  log "apt-get install $*"
  local rc=0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$LOGS/apt.log" 2>&1 || rc=$?
  [[ -n $added_policy ]] && $sudo rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || { tail -n 30 "$LOGS/apt.log" >&2; die "apt-get install $* failed; see $LOGS/apt.log"; }
}
need() { # CMD DEBIAN-PACKAGE
  command -v "$1" >/dev/null || apt_install "$2"
  command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}
need_java() { need java openjdk-17-jre-headless; need mvn maven; }
need_node() { need node nodejs; need npm npm; }

mvn_fetch() { # DIR containing pom.xml -> DIR/lib
  need_java
  log "fetching $(basename "$1") jars from Maven Central (repo $M2_REPO)"
  rm -rf "${1:?}/lib"
  mvn -q -B -Dmaven.repo.local="$M2_REPO" -f "$1/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$1/lib" </dev/null >"$1/mvn.log" 2>&1 \
    || { tail -n 30 "$1/mvn.log" >&2; die "maven failed for $1; see $1/mvn.log"; }
}
pom() { # ARTIFACT-ID DEPENDENCY-XML
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>local.esm</groupId><artifactId>$1</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
$2
  </dependencies>
</project>
EOF
}
dep() { echo "    <dependency><groupId>$1</groupId><artifactId>$2</artifactId><version>$3</version></dependency>"; }
# SerialGC + C1-only JIT: about 2 s faster start-up on 2 cores and less RSS than G1/C2; plenty for tests
JAVA_LEAN=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

# ---------------------------------------------------------------- ElasticMQ (SQS)
E=$SH/elasticmq
install_elasticmq() {
  [[ -f $E/lib/elasticmq-server_2.13-$ELASTICMQ_VERSION.jar ]] && return 0
  mkdir -p "$E"
  pom elasticmq-runtime "$(dep org.elasticmq elasticmq-server_2.13 "$ELASTICMQ_VERSION")" >"$E/pom.xml"
  mvn_fetch "$E"
}
start_elasticmq() {
  cat >"$E/elasticmq.conf" <<EOF
include classpath("application.conf")
node-address { protocol = http, host = "127.0.0.1", port = $ELASTICMQ_PORT, context-path = "" }
rest-sqs { enabled = true, bind-port = $ELASTICMQ_PORT, bind-hostname = "127.0.0.1", sqs-limits = strict }
rest-stats { enabled = false }
generate-node-address = false
aws { region = "us-east-1", accountId = "000000000000" }
EOF
  launch elasticmq "$LOGS/elasticmq.log" "$E" java -Xmx256m "${JAVA_LEAN[@]}" \
    "-Dconfig.file=$E/elasticmq.conf" -cp "$E/lib/*" org.elasticmq.server.Main
}

# ---------------------------------------------------------------- moto server (from the project's venv)
MOTO_BIN=${MOTO_SERVER:-$ROOT/.venv/bin/moto_server}
install_moto() {
  [[ -x $MOTO_BIN ]] && return 0
  [[ -z ${MOTO_SERVER:-} ]] || die "MOTO_SERVER=$MOTO_SERVER is not executable"
  if [[ ! -x $ROOT/.venv/bin/python ]]; then
    local py; py=$(command -v python3.11 || command -v python3) || die "no python3 to create $ROOT/.venv"
    log "creating $ROOT/.venv with $py"
    "$py" -m venv "$ROOT/.venv"
  fi
  log "installing moto[server]==$MOTO_VERSION into $ROOT/.venv (scripts/test installs the whole dev extra)"
  "$ROOT/.venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" </dev/null >"$LOGS/moto-install.log" 2>&1 \
    || { tail -n 30 "$LOGS/moto-install.log" >&2; die "pip install moto failed; see $LOGS/moto-install.log"; }
}
start_moto() {
  mkdir -p "$SH/moto"
  launch moto "$LOGS/moto.log" "$SH/moto" "$MOTO_BIN" -H 127.0.0.1 -p "$MOTO_PORT"
}

# ---------------------------------------------------------------- kinesis-mock (npm kinesis-local)
KM=$SH/kinesis
install_kinesis() {
  if [[ ! -f $KM/node_modules/kinesis-local/main.js ]]; then
    need_node; mkdir -p "$KM"
    log "npm install kinesis-local@$KINESIS_LOCAL_VERSION"
    npm install --silent --no-audit --no-fund --prefix "$KM" "kinesis-local@$KINESIS_LOCAL_VERSION" \
      </dev/null >"$KM/npm.log" 2>&1 || { tail -n 30 "$KM/npm.log" >&2; die "npm install failed; see $KM/npm.log"; }
  fi
  if [[ ! -f $KM/main-loopback.js ]]; then
    # kinesis-mock binds 0.0.0.0; the Scala.js build's host literal is patched to loopback
    sed 's/\.em("0\.0\.0\.0")/.em("127.0.0.1")/g' "$KM/node_modules/kinesis-local/main.js" >"$KM/main-loopback.js.new"
    grep -q 'em("127.0.0.1")' "$KM/main-loopback.js.new" || die "kinesis-mock bind patch failed (kinesis-local changed?)"
    mv "$KM/main-loopback.js.new" "$KM/main-loopback.js"
    cp "$KM/node_modules/kinesis-local/server.json" "$KM/server.json"
  fi
}
start_kinesis() {
  need_node
  launch kinesis "$LOGS/kinesis.log" "$KM" env \
    KINESIS_MOCK_PLAIN_PORT="$KINESIS_PORT" KINESIS_MOCK_TLS_PORT="$KINESIS_TLS_PORT" \
    KINESIS_MOCK_CERT_PATH="$KM/server.json" LOG_LEVEL=WARN AWS_REGION=us-east-1 \
    CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms REGISTER_STREAM_CONSUMER_DURATION=0ms \
    DEREGISTER_STREAM_CONSUMER_DURATION=0ms MERGE_SHARDS_DURATION=0ms SPLIT_SHARD_DURATION=0ms \
    UPDATE_SHARD_COUNT_DURATION=0ms UPDATE_STREAM_MODE_DURATION=0ms SHARD_LIMIT=200 \
    node "$KM/main-loopback.js"
}

# ---------------------------------------------------------------- Apache Kafka (KRaft, single node)
K=$SH/kafka
install_kafka() {
  [[ -f $K/lib/kafka_2.13-$KAFKA_VERSION.jar ]] && return 0
  mkdir -p "$K"
  # kafka_2.13 brings slf4j-api but no binding: without log4j-slf4j-impl the broker logs nothing
  pom kafka-runtime "$(dep org.apache.kafka kafka_2.13 "$KAFKA_VERSION")
$(dep org.apache.logging.log4j log4j-slf4j-impl "$LOG4J_VERSION")" >"$K/pom.xml"
  mvn_fetch "$K"
}
kafka_java() { java -Xms256m -Xmx512m "${JAVA_LEAN[@]}" "-Dlog4j2.configurationFile=$K/log4j2.properties" -cp "$K/lib/*" "$@"; }
# a private CA, the broker's certificate (127.0.0.1, localhost) and a client certificate, made once
kafka_tls() {
  local d=$KAFKA_TLS_DIR
  [[ -f $d/client.pem ]] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 3650 \
    -subj "/CN=esm-local-ca" >/dev/null 2>&1
  local who
  for who in broker client; do
    openssl req -newkey rsa:2048 -nodes -keyout "$d/$who.rsa" -out "$d/$who.csr" -subj "/CN=esm-$who" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/$who.ext"
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
      -extfile "$d/$who.ext" -out "$d/$who.crt" >/dev/null 2>&1
    openssl pkcs8 -topk8 -nocrypt -in "$d/$who.rsa" -out "$d/$who.key"   # Kafka's PEM keystore wants PKCS#8
    cat "$d/$who.key" "$d/$who.crt" >"$d/$who.pem"
  done
  [[ -f $d/client.pem ]] || die "kafka TLS certificates could not be made in $d"
}
start_kafka() {
  need_java
  kafka_tls
  local scram_jaas='org.apache.kafka.common.security.scram.ScramLoginModule required;'
  cat >"$K/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SCRAM_PORT,SSL://127.0.0.1:$KAFKA_TLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SCRAM_PORT,SSL://127.0.0.1:$KAFKA_TLS_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$KAFKA_TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram_jaas
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram_jaas
log.dirs=$K/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$K/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.ak.name = org.apache.kafka
logger.ak.level = WARN
EOF
  if [[ ! -f $K/data/meta.properties ]]; then
    # storage is formatted once; the SCRAM credentials are written into the initial metadata
    local cid; cid=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    kafka_java kafka.tools.StorageTool format -t "$cid" -c "$K/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" \
      --add-scram "SCRAM-SHA-256=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" \
      </dev/null >"$K/format.log" 2>&1 || { cat "$K/format.log" >&2; die "kafka storage format failed; see $K/format.log"; }
  fi
  launch kafka "$LOGS/kafka.log" "$K" java -Xms256m -Xmx512m "${JAVA_LEAN[@]}" \
    "-Dlog4j2.configurationFile=$K/log4j2.properties" -cp "$K/lib/*" kafka.Kafka "$K/server.properties"
}
after_start_kafka() { wait_up kafka "$KAFKA_SCRAM_PORT" "$LOGS/kafka.log" 30 && wait_up kafka "$KAFKA_TLS_PORT" "$LOGS/kafka.log" 30; }
reset_kafka() { rm -rf "$K/data"; }

# ---------------------------------------------------------------- RabbitMQ (Debian package, no systemd)
R=$SH/rabbitmq
install_rabbitmq() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || apt_install rabbitmq-server
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "rabbitmq-server missing after apt-get install"
}
rabbit_env() {
  export HOME=$R                 # .erlang.cookie is read from $HOME by server and CLI alike
  export RABBITMQ_NODENAME=rabbit@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_CONFIG_FILE=$R/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$R/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$R/data RABBITMQ_LOG_BASE=$R/log RABBITMQ_CONF_ENV_FILE=/dev/null
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
start_rabbitmq() {
  mkdir -p "$R/data" "$R/log"
  cat >"$R/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users = none
log.console = true
log.console.level = info
log.file = false
EOF
  echo '[].' >"$R/enabled_plugins"
  ( rabbit_env
    # our own epmd (recorded, stopped with the broker) unless one already listens; epmd started by the
    # broker itself would outlive it
    if ! port_open "$EPMD_PORT"; then
      launch epmd "$LOGS/epmd.log" "$R" epmd -address 127.0.0.1 -port "$EPMD_PORT"
      wait_up epmd "$EPMD_PORT" "$LOGS/epmd.log" 10
    fi
    launch rabbitmq "$LOGS/rabbitmq.log" "$R" /usr/lib/rabbitmq/bin/rabbitmq-server )
}
stop_extra_rabbitmq() { stop_recorded epmd 5 || true; }
reset_rabbitmq() { rm -rf "$R/data" "$R/log"; }
rabbitmqctl_() { ( rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit@localhost "$@" ); }

# ---------------------------------------------------------------- ActiveMQ Classic (Maven jars)
A=$SH/activemq
install_activemq() {
  [[ -f $A/lib/activemq-broker-$AMQ_VERSION.jar ]] && return 0
  mkdir -p "$A"
  local deps='' m
  for m in activemq-broker activemq-kahadb-store activemq-stomp activemq-amqp activemq-spring activemq-console activemq-jaas; do
    deps+="$(dep org.apache.activemq "$m" "$AMQ_VERSION")"$'\n'
  done
  deps+="$(dep org.springframework spring-context "$SPRING_VERSION")"$'\n'
  deps+="$(dep org.apache.logging.log4j log4j-slf4j2-impl "$LOG4J_VERSION")"$'\n'
  deps+="$(dep org.apache.logging.log4j log4j-core "$LOG4J_VERSION")"
  pom activemq-runtime "$deps" >"$A/pom.xml"
  mvn_fetch "$A"
}
start_activemq() {
  need_java
  mkdir -p "$A/conf" "$A/data" "$A/tmp"
  cat >"$A/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
                           http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- resolves \${activemq.data} from -D system properties; without it the literal string becomes a directory name -->
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="localhost"
          dataDirectory="\${activemq.data}" useJmx="false" schedulerSupport="false">
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users><authenticationUser username="$AMQ_USER" password="$AMQ_PASSWORD" groups="admins,users"/></users>
      </simpleAuthenticationPlugin>
    </plugins>
    <persistenceAdapter><kahaDB directory="\${activemq.data}/kahadb"/></persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
      <storeUsage><storeUsage limit="2 gb"/></storeUsage>
      <tempUsage><tempUsage limit="1 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:$AMQ_OPENWIRE_PORT?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
      <transportConnector name="amqp" uri="amqp://127.0.0.1:$AMQ_AMQP_PORT?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"/>
      <!-- tcpNoDelay: without it a batch the size of the prefetch stalls ~40 ms (Nagle) -->
      <transportConnector name="stomp" uri="stomp://127.0.0.1:$AMQ_STOMP_PORT?maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600&amp;transport.tcpNoDelay=true"/>
    </transportConnectors>
  </broker>
</beans>
EOF
  cat >"$A/conf/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d %-5p %m [%c{1}]%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
EOF
  # STOMP is the last connector started: its port opening means all three are up
  launch activemq "$LOGS/activemq.log" "$A" java -Xms64m -Xmx512m "${JAVA_LEAN[@]}" "-Djava.io.tmpdir=$A/tmp" \
    "-Dlog4j2.configurationFile=$A/conf/log4j2.properties" \
    "-Dactivemq.home=$A" "-Dactivemq.base=$A" "-Dactivemq.conf=$A/conf" "-Dactivemq.data=$A/data" \
    -cp "$A/conf:$A/lib/*" org.apache.activemq.console.Main start "xbean:file:$A/conf/activemq.xml"
}
reset_activemq() { rm -rf "$A/data"; }

# ---------------------------------------------------------------- LocalStack on the host (optional)
L=$SH/localstack
LS_FS=$L/fs
LS_KM=$LS_FS/var/lib/localstack/lib/kinesis-local/$KINESIS_LOCAL_VERSION
install_localstack() {
  if [[ ! -x $L/venv/bin/python ]] || ! "$L/venv/bin/python" -c 'import localstack' 2>/dev/null; then
    # localstack-core 2026.3.0 uses PEP 695 syntax: Python >= 3.12 (pyenv's 3.13 here)
    local py=${LS_PYTHON:-}
    if [[ -z $py ]]; then
      for py in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python \
                "$(command -v python3.13 || true)" "$(command -v python3.12 || true)"; do
        [[ -n $py && -x $py ]] && break; py=
      done
    fi
    [[ -n $py ]] || die "localstack needs Python >= 3.12 (set LS_PYTHON=/path/to/python3.13)"
    mkdir -p "$L"; log "installing localstack-core $LOCALSTACK_VERSION with $py"
    "$py" -m venv "$L/venv"
    # pins: cbor2 6 dropped cbor2._decoder; pyOpenSSL >= 25.2 dropped X509.add_extensions;
    # twisted's TLS imports need service_identity
    { "$L/venv/bin/pip" install -q --upgrade pip &&
      "$L/venv/bin/pip" install -q "localstack-core[runtime]==$LOCALSTACK_VERSION" 'cbor2<6' 'pyopenssl==25.1.0' \
        'cryptography>=45.0.1,<46' service_identity &&
      "$L/venv/bin/pip" check; } </dev/null >"$L/pip.log" 2>&1 \
      || { tail -n 30 "$L/pip.log" >&2; die "localstack install failed; see $L/pip.log"; }
  fi
  cat >"$L/ls_main.py" <<'PY'
"""Start localstack-core on the host, gateway bound to the GATEWAY_LISTEN host (LocalStack's twisted
gateway ignores the host part for IPv4 and binds 0.0.0.0)."""
import os

from twisted.internet import endpoints

_HOST = os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0].rsplit(":", 1)[0] or "127.0.0.1"
_Orig = endpoints.TCP4ServerEndpoint


class _BoundTCP4ServerEndpoint(_Orig):
    def __init__(self, reactor, port, backlog=50, interface=_HOST):
        super().__init__(reactor, port, backlog, interface)


endpoints.TCP4ServerEndpoint = _BoundTCP4ServerEndpoint
from localstack.runtime.main import main  # noqa: E402

main()
PY
  # LocalStack would npm-install kinesis-local on its first Kinesis call (binding 0.0.0.0): do it now, patched
  if [[ ! -f $LS_KM/node_modules/kinesis-local/main.js ]]; then
    need_node; mkdir -p "$LS_KM"
    npm install --silent --no-audit --no-fund --prefix "$LS_KM" "kinesis-local@$KINESIS_LOCAL_VERSION" </dev/null >"$L/npm.log" 2>&1 \
      || { tail -n 30 "$L/npm.log" >&2; die "npm install failed; see $L/npm.log"; }
  fi
  sed -i 's/\.em("0\.0\.0\.0")/.em("127.0.0.1")/g' "$LS_KM/node_modules/kinesis-local/main.js"
}
start_localstack() {
  mkdir -p "$LS_FS"
  launch localstack "$LOGS/localstack.log" "$L" env \
    OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$LS_FS" \
    GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT" \
    SERVICES="${LOCALSTACK_SERVICES:-sqs,sns,kinesis}" SQS_ENDPOINT_STRATEGY=path \
    DNS_ADDRESS=0 LOCALSTACK_TELEMETRY_DISABLED=1 DISABLE_EVENTS=1 \
    KINESIS_MOCK_VERSION="$KINESIS_LOCAL_VERSION" KINESIS_LATENCY=0 \
    "$L/venv/bin/python" "$L/ls_main.py"
}
after_start_localstack() { # the gateway port opens before the services are ready: wait for the health route
  local t0=$SECONDS
  until "$L/venv/bin/python" - "$LOCALSTACK_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_localstack/health", timeout=2).read()
PY
  do
    ((SECONDS - t0 < 60)) || die "localstack health route did not answer within 60s; see $LOGS/localstack.log"
    recorded_pid localstack >/dev/null || die "localstack exited; see $LOGS/localstack.log"
    sleep 0.2
  done
}
reset_localstack() { rm -rf "$LS_FS/var/lib/localstack/state"; }

# ---------------------------------------------------------------- commands
with_lock() { # NAME CMD... : serialise install/start/stop of one service across processes
  local name=$1; shift
  exec {LOCK_FD}>>"$RUN/$name.lock"
  flock -w 900 "$LOCK_FD" || die "could not lock $RUN/$name.lock within 900s (held by: $(fuser "$RUN/$name.lock" 2>&1))"
  local rc=0
  "$@" || rc=$?
  exec {LOCK_FD}>&-
  LOCK_FD=
  return "$rc"
}

do_install() { local s=$1; main_port "$s" >/dev/null; "install_$s"; }

do_start() {
  local s=$1 port pid t0
  port=$(main_port "$s")
  if pid=$(recorded_pid "$s"); then
    if port_open "$port"; then log "$s already running (pid $pid, 127.0.0.1:$port)"; return 0; fi
    log "$s (pid $pid) recorded but not accepting on 127.0.0.1:$port yet: waiting"
    wait_up "$s" "$port" "$LOGS/$s.log"; return 0
  fi
  if port_open "$port"; then
    log "$s: 127.0.0.1:$port already accepts connections (not started by this script): leaving it alone"
    return 0
  fi
  t0=$(now)
  "install_$s"
  local t1; t1=$(now)
  "start_$s"
  # recorded as started before waiting: a caller interrupted now still knows what to stop
  if [[ -n ${ESM_SERVICES_STARTED_FILE:-} ]]; then echo "$s" >>"$ESM_SERVICES_STARTED_FILE"; fi
  wait_up "$s" "$port" "$LOGS/$s.log"
  if declare -F "after_start_$s" >/dev/null; then "after_start_$s"; fi
  pid=$(recorded_pid "$s") || die "$s exited right after start; see $LOGS/$s.log"
  log "$s up on 127.0.0.1:$port (pid $pid): started in $(since "$t1")s (install+start $(since "$t0")s); log $LOGS/$s.log"
}

do_stop() {
  local s=$1 port
  port=$(main_port "$s")
  if ! stop_recorded "$s" 30; then
    if port_open "$port"; then log "$s: 127.0.0.1:$port is up but not started by this script: left alone"
    else log "$s not running"; fi
  fi
  if declare -F "stop_extra_$s" >/dev/null; then "stop_extra_$s"; fi
}

do_status() {
  local s=$1 port pid
  port=$(main_port "$s")
  if pid=$(recorded_pid "$s"); then
    local rss; rss=$(ps -o rss= -g "$pid" 2>/dev/null | awk '{ s += $1 } END { printf "%d", s / 1024 }')
    if port_open "$port"; then echo "$s: running pid $pid, 127.0.0.1:$port, rss ${rss} MiB"
    else echo "$s: starting pid $pid (127.0.0.1:$port not accepting yet)"; fi
  elif port_open "$port"; then echo "$s: up on 127.0.0.1:$port (not started by this script)"
  else echo "$s: stopped"; fi
}

do_reset() { local s=$1; do_stop "$s"; if declare -F "reset_$s" >/dev/null; then "reset_$s"; log "$s data wiped"; fi; }

print_env() {
  cat <<EOF
export ESM_TEST_SQS_ENDPOINT=http://127.0.0.1:$ELASTICMQ_PORT
export ESM_TEST_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export ESM_TEST_KINESIS_ENDPOINT=http://127.0.0.1:$KINESIS_PORT
export ESM_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export ESM_TEST_KAFKA_SCRAM_BOOTSTRAP=127.0.0.1:$KAFKA_SCRAM_PORT
export ESM_TEST_KAFKA_SCRAM_USER=$KAFKA_SCRAM_USER
export ESM_TEST_KAFKA_SCRAM_PASSWORD=$KAFKA_SCRAM_PASSWORD
export ESM_TEST_KAFKA_TLS_BOOTSTRAP=127.0.0.1:$KAFKA_TLS_PORT
export ESM_TEST_KAFKA_TLS_DIR=$KAFKA_TLS_DIR
export ESM_TEST_RABBITMQ_URL=amqp://$RABBIT_USER:$RABBIT_PASSWORD@127.0.0.1:$RABBIT_PORT/
export ESM_TEST_ACTIVEMQ_STOMP=127.0.0.1:$AMQ_STOMP_PORT
export ESM_TEST_ACTIVEMQ_OPENWIRE=127.0.0.1:$AMQ_OPENWIRE_PORT
export ESM_TEST_ACTIVEMQ_AMQP=127.0.0.1:$AMQ_AMQP_PORT
export ESM_TEST_ACTIVEMQ_USER=$AMQ_USER
export ESM_TEST_ACTIVEMQ_PASSWORD=$AMQ_PASSWORD
export ESM_TEST_LOCALSTACK_ENDPOINT=http://127.0.0.1:$LOCALSTACK_PORT
EOF
}

usage() { # EXIT-CODE
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  echo "services: ${ALL_SERVICES[*]}" >&2
  exit "${1:-2}"
}

cmd=${1:-status}; shift || true
targets=("$@")
[[ ${#targets[@]} -eq 1 && ${targets[0]} == all ]] && targets=("${ALL_SERVICES[@]}")
mkdir -p "$RUN" "$LOGS"
case $cmd in
  install) ((${#targets[@]})) || targets=("${DEFAULT_START[@]}")
           for t in "${targets[@]}"; do main_port "$t" >/dev/null; with_lock "$t" do_install "$t"; done ;;
  start)   ((${#targets[@]})) || targets=("${DEFAULT_START[@]}")
           for t in "${targets[@]}"; do main_port "$t" >/dev/null; with_lock "$t" do_start "$t"; done ;;
  stop)    ((${#targets[@]})) || targets=("${ALL_SERVICES[@]}")
           for t in "${targets[@]}"; do main_port "$t" >/dev/null; with_lock "$t" do_stop "$t"; done ;;
  status)  ((${#targets[@]})) || targets=("${ALL_SERVICES[@]}")
           for t in "${targets[@]}"; do do_status "$t"; done ;;
  reset)   ((${#targets[@]})) || die "reset needs SERVICE names"
           for t in "${targets[@]}"; do main_port "$t" >/dev/null; with_lock "$t" do_reset "$t"; done ;;
  env)     print_env ;;
  # the dashboard's tests drive a real headless Chromium (Debian's package; playwright uses its binary)
  browser) with_lock chromium need chromium chromium; command -v chromium ;;
  rabbitmqctl) rabbitmqctl_ "${targets[@]}" ;;
  -h|--help|help) usage 0 ;;
  *) usage ;;
esac
