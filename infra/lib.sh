# Shared helpers for the infra scripts (sourced, not run).
fs_say() { printf '[flashsale] %s\n' "$*" >&2; }
fs_die() { printf '[flashsale] error: %s\n' "$*" >&2; exit 1; }

# Root of the repository and the cache directory for downloaded broker jars.
FS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FS_CACHE=${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}
KAFKA_VERSION=${FLASHSALE_KAFKA_VERSION:-3.9.1}
KAFKA_LIBS="$FS_CACHE/kafka-$KAFKA_VERSION/libs"
