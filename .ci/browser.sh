#!/usr/bin/env bash
# messaging-api's dashboard in a real browser: Debian's Chromium, headless,
# driven by Playwright (playwright-core, pinned in tests/browser). A fresh
# server on free loopback ports with its own SQLite file and nothing else
# from the environment; the test signs in with the bootstrap key it prints.
# Screenshots of every page land in tests/browser/artifacts (ignored by git).
#
#   .ci/browser.sh
#
# MESSAGING_API_BIN picks the binary (default target/debug/messaging-api,
# under CARGO_TARGET_DIR when that is set, built when missing); CHROMIUM
# the browser (default /usr/bin/chromium, installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
bin="${MESSAGING_API_BIN:-$target_dir/debug/messaging-api}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
artifacts="$(realpath -m tests/browser/artifacts)"

if [[ ! -x "$chromium" ]]; then
  echo "== installing chromium"
  as_root=()
  [[ "$(id -u)" -eq 0 ]] || as_root=(sudo)
  # A fresh machine may have no package lists yet.
  "${as_root[@]}" apt-get install -y chromium >/dev/null ||
    { "${as_root[@]}" apt-get update >/dev/null && "${as_root[@]}" apt-get install -y chromium >/dev/null; }
fi
command -v node >/dev/null || { echo "node is needed to drive the browser" >&2; exit 1; }

echo "== npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

if [[ -z "${MESSAGING_API_BIN:-}" ]]; then
  cargo build -p messaging-api
fi
[[ -x "$bin" ]] || { echo "no messaging-api binary at $bin" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
admin_port="$(free_port)"
# Only what this run means: no REDIS_URL, BOOTSTRAP_KEY or configuration
# file from the caller's environment.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" RUST_LOG=warn DATABASE_URL="$work/dashboard.sqlite" \
  "$bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" >"$work/server.log" 2>&1 &
server_pid=$!

key=""
for _ in $(seq 1 200); do
  if grep -q "listening on http://127.0.0.1:$port" "$work/server.log" 2>/dev/null; then
    key="$(sed -n 's/^bootstrap key: //p' "$work/server.log" | head -n 1)"
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$key" ]]; then
  echo "messaging-api did not start (or printed no bootstrap key):" >&2
  cat "$work/server.log" >&2
  exit 1
fi

echo "== dashboard in chromium ($("$chromium" --version 2>/dev/null | head -n 1))"
rm -rf "$artifacts"
if ! BASE_URL="http://127.0.0.1:$port" BOOTSTRAP_KEY="$key" ARTIFACTS="$artifacts" CHROMIUM="$chromium" \
  node tests/browser/dashboard.test.mjs; then
  echo "-- server log:" >&2
  tail -n 50 "$work/server.log" >&2
  exit 1
fi
