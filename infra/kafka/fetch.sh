#!/usr/bin/env bash
# Copies the Kafka broker jars (kafka_2.13 and its runtime dependencies, plus reload4j) into
# $FLASHSALE_CACHE_DIR/kafka-<version>/libs. Does nothing when they are already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

if [ -f "$KAFKA_LIBS/.complete" ]; then
  fs_say "Kafka $KAFKA_VERSION broker jars: present in $KAFKA_LIBS"
  exit 0
fi
command -v mvn >/dev/null || fs_die "maven is not installed (run infra/bootstrap.sh)"
fs_say "fetching Apache Kafka $KAFKA_VERSION broker jars with Maven into $KAFKA_LIBS"
mkdir -p "$KAFKA_LIBS"
log="$FS_CACHE/kafka-fetch.log"
if ! mvn -B -q -f "$here/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$KAFKA_LIBS" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  fs_die "maven could not fetch Kafka $KAFKA_VERSION (full log: $log)"
fi
ls "$KAFKA_LIBS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 ||
  fs_die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch (see $log)"
touch "$KAFKA_LIBS/.complete"
fs_say "Kafka $KAFKA_VERSION: $(ls "$KAFKA_LIBS" | wc -l) jars in $KAFKA_LIBS"
