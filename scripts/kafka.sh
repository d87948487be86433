#!/usr/bin/env bash
# A single-node Apache Kafka 4 broker (KRaft, no ZooKeeper) on 127.0.0.1, for
# the tests and demos. Its jars come from Maven Central through `mvn` into
# .cache/kafka/libs (git-ignored); its data and log live in .cache/kafka/run.
#
#   bash scripts/kafka.sh start     # fetch if needed, format, start, wait until it answers
#   bash scripts/kafka.sh stop      # stop it cleanly (and wait until it is gone)
#   bash scripts/kafka.sh restart   # stop, then start again on the same port with the same data
#   bash scripts/kafka.sh address   # print host:port of the running broker
#   bash scripts/kafka.sh status    # exit 0 when it answers
#
# `start` prints the bootstrap address (also in .cache/kafka/run/address).
# The ports are free ports chosen at the first start; the broker listens on
# loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.cache/kafka"
libs="$root/libs"
run="$root/run"
mkdir -p "$run"

log() { echo "kafka: $*" >&2; }

fetch() {
    if [ -f "$libs/.complete" ]; then
        return
    fi
    command -v mvn >/dev/null || { log "mvn not found: install Maven (and Java 17)"; exit 1; }
    log "fetching the broker's jars from Maven Central into $libs ..."
    rm -rf "$libs"
    # Maven writes (colour codes) to stdout even when quiet; stdout carries
    # only the broker's address.
    mvn -q -B -Dstyle.color=never -f scripts/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$libs" -DincludeScope=runtime >&2
    touch "$libs/.complete"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

java_cmd() {
    # `exec`: run in the background, the java process itself is the job.
    exec java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$run/log4j2.properties" \
        -Dkafka.logs.dir="$run" -cp "$libs/*" "$@"
}

configure() {
    if [ -f "$run/server.properties" ]; then
        return
    fi
    local port controller
    port=$(free_port)
    controller=$(free_port)
    cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$controller
log.dirs=$run/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
    cat > "$run/log4j2.properties" <<'PROPS'
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
PROPS
    echo "127.0.0.1:$port" > "$run/address"
    log "formatting storage in $run/data"
    (java_cmd kafka.tools.StorageTool format --standalone \
        -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
        -c "$run/server.properties") >"$run/format.log" 2>&1 ||
        { cat "$run/format.log" >&2; exit 1; }
}

running() {
    [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null
}

answers() {
    local addr
    addr=$(cat "$run/address")
    # A broker answers once it accepts connections and knows its metadata.
    timeout 20 bash -c "exec 3<>/dev/tcp/${addr%:*}/${addr#*:}" 2>/dev/null &&
        grep -q "Kafka Server started" "$run/server.log" 2>/dev/null
}

start() {
    fetch
    configure
    if running; then
        cat "$run/address"
        return
    fi
    : > "$run/server.log"
    log "starting the broker on $(cat "$run/address")"
    java_cmd kafka.Kafka "$run/server.properties" </dev/null >"$run/stdout.log" 2>&1 &
    echo $! > "$run/pid"
    for i in $(seq 1 120); do
        if answers; then
            log "up after ${i} check(s)"
            cat "$run/address"
            return
        fi
        if ! running; then
            log "the broker exited; its output:"
            tail -n 30 "$run/stdout.log" "$run/server.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    log "no answer after 60 s; the end of its log:"
    tail -n 30 "$run/server.log" >&2
    exit 1
}

stop() {
    if ! running; then
        rm -f "$run/pid"
        return
    fi
    local pid
    pid=$(cat "$run/pid")
    log "stopping the broker (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$run/pid"; return; }
        sleep 0.5
    done
    log "still running after 30 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$run/pid"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    address) cat "$run/address" ;;
    status) running && answers ;;
    fetch) fetch ;;
    *) echo "usage: $0 start|stop|restart|address|status|fetch" >&2; exit 2 ;;
esac
