#!/usr/bin/env bash
# Runs schemathesis against messaging-api's OpenAPI document: a fresh
# server (its own SQLite file, loopback only, webhooks confined to
# 127.0.0.0/8) per operation group, a fixed seed, bounded examples, and the
# conformance checks below; any failure fails the run.
#
#   cargo build -p messaging-api && .ci/schemathesis.sh
#
# MESSAGING_API_BIN picks the binary (default target/debug/messaging-api,
# under CARGO_TARGET_DIR when that is set); SCHEMATHESIS_MAX_EXAMPLES the
# examples per operation (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
target_dir="${CARGO_TARGET_DIR:-target}"
bin="${MESSAGING_API_BIN:-$target_dir/debug/messaging-api}"
venv="$(realpath -m "$target_dir/schemathesis-venv")"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header

[[ -x "$bin" ]] || { echo "no messaging-api binary at $bin (cargo build -p messaging-api)" >&2; exit 1; }
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# The run's account: a plan no schemathesis run reaches, and failed keys
# never block the loopback address.
cat >"$work/config.toml" <<TOML
failed_auth_per_minute = 1000000
allow_private_webhook_urls = true

[webhooks]
allowed_networks = ["127.0.0.0/8"]
max_attempts = 1
timeout_ms = 500

[plans.conformance]
per_second = 100000
burst = 100000

# A webhook from the start, so that rotating its secret is tested beyond
# 404 (nothing listens on port 9: deliveries fail at once, once).
[[accounts]]
id = "acct_demo"
plan = "conformance"
webhook_url = "http://127.0.0.1:9/hook"
webhook_secret = "whsec_c2NoZW1hdGhlc2lzLWNvbmZvcm1hbmNlLXJ1bg=="
TOML

# A well-formed production key: tg_live_, 30 random base62 characters, and
# the CRC32 of all that as 6 base62 digits.
new_key() {
  python3 - <<'PY'
import secrets, zlib
alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
body = "tg_live_" + "".join(secrets.choice(alphabet) for _ in range(30))
crc, digits = zlib.crc32(body.encode()), ""
for _ in range(6):
    digits = alphabet[crc % 62] + digits
    crc //= 62
print(body + digits)
PY
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh server; sets port and key.
start_server() {
  local group="$1"
  port="$(free_port)"
  key="$(new_key)"
  rm -f "$work"/db*
  BOOTSTRAP_KEY="$key" RUST_LOG=warn "$bin" \
    --config "$work/config.toml" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:0" \
    --database "$work/db-$group.sqlite" >"$work/server-$group.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request as r; r.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "messaging-api did not start:" >&2
  cat "$work/server-$group.log" >&2
  return 1
}

# Writing an allowlist may lock the run's address out for what follows,
# so each allowlist write gets a server of its own; everything else shares one.
groups=(rest security-put key-put)
started=$SECONDS
failed=0
for group in "${groups[@]}"; do
  start_server "$group"
  case "$group" in
    rest) filter=(--exclude-operation-id-regex '^set_(account|key)_ip_allowlist$') ;;
    security-put) filter=(--include-operation-id set_account_ip_allowlist) ;;
    key-put) filter=(--include-operation-id set_key_ip_allowlist) ;;
  esac
  echo "== schemathesis: $group"
  # From the temporary directory: hypothesis and schemathesis leave their
  # databases and reports in the working directory.
  if ! (cd "$work" && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --url "http://127.0.0.1:$port" \
    --header "Authorization: Bearer $key" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --seed 20261202 \
    --max-examples "$max_examples" \
    --request-timeout 10 \
    --no-color \
    --report-dir "$work/report-$group" \
    "${filter[@]}"); then
    failed=1
    echo "-- server log ($group):" >&2
    tail -n 50 "$work/server-$group.log" >&2
  fi
  stop_server
done
echo "schemathesis: ${#groups[@]} groups in $((SECONDS - started)) s"
exit "$failed"
