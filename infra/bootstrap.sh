#!/usr/bin/env bash
# Idempotent bootstrap: installs the Debian packages flashsale builds and runs with, and fetches
# the Apache Kafka broker jars through Maven into a cache directory.
#
# Safe to run repeatedly: it only installs what is missing and says what it installs.
# Needs root or sudo for apt-get; fails with a clear message otherwise.
#
#   --fuzz  also clang and its libFuzzer runtime (make fuzz, make test: tests/fuzz)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=infra/lib.sh
. "$here/lib.sh"

PACKAGES=(
  build-essential cmake pkg-config git
  librdkafka-dev libavro-dev libcivetweb-dev civetweb libjansson-dev libpq-dev libhiredis-dev
  libcmocka-dev libsodium-dev libjwt-dev libssl-dev libcurl4-openssl-dev wrk gnuplot-nox
  postgresql redis-server openjdk-17-jre-headless maven
  python3 python3-avro python3-yaml valgrind curl iproute2 util-linux nginx
  chromium fonts-nanum
)
# Node.js and npm run the OpenAPI checks (tests/openapi) and the browser tests (tests/browser:
# Playwright driving chromium). A
# machine that already has a node and an npm (for instance NodeSource's nodejs, which carries
# its own npm and conflicts with Debian's) keeps them; otherwise Debian's packages.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi
if [ "${1:-}" = --fuzz ]; then
  PACKAGES+=(clang libclang-rt-14-dev) # Debian 12: clang 14; libFuzzer is in the runtime package
fi


missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    fs_die "missing Debian packages: ${missing[*]}; installing them needs root or passwordless sudo (run: sudo apt-get install ${missing[*]})"
  fi
  fs_say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq || fs_die "apt-get update failed"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fs_die "apt-get install failed for: ${missing[*]}"
  # (The postgresql package may create and start a cluster on 5432; flashsale never uses
  # it and leaves it as the system has it.)

else
  fs_say "Debian packages: all present"
fi

"$here/kafka/fetch.sh"

# npm packages of the tests (versions pinned in each package-lock.json): the OpenAPI checks
# and the browser tests, installed again only when a lock file changed
for npm_dir in "$FS_ROOT/tests/openapi" "$FS_ROOT/tests/browser"; do
  stamp="$npm_dir/node_modules/.flashsale-lock.sha256"
  want=$(sha256sum "$npm_dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    fs_say "installing npm packages of ${npm_dir#"$FS_ROOT"/} (npm ci)"
    (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
      fs_die "npm ci failed in ${npm_dir#"$FS_ROOT"/} (is the npm registry reachable?)"
    echo "$want" >"$stamp"
  else
    fs_say "npm packages of ${npm_dir#"$FS_ROOT"/}: all present"
  fi
done
