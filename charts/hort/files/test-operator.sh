# The script of the chart's `helm test` pod (templates/tests/operator-answers.yaml), run by bash
# with OPERATOR=HOST:PORT of the operator's metrics Service. bash's /dev/tcp is the HTTP client,
# so the agent image (no curl, no wget) can run it. Exits 0 when /readyz answers 200 "ok" and
# /metrics answers 200 in Prometheus' text format.
set -euo pipefail
host="${OPERATOR%:*}" port="${OPERATOR##*:}"
get() { # PATH: prints the HTTP/1.0 response to GET PATH, header and body
  exec 3<>"/dev/tcp/$host/$port" || return
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" "$host" >&3
  timeout 10 cat <&3
  exec 3<&-
}
expect() { # PATH PATTERN: the response to GET PATH is 200 and matches the extended regex PATTERN
  local response status
  response="$(get "$1")" || true
  response="${response//$'\r'/}"
  status="${response%%$'\n'*}"
  # A here-string, not a pipe: grep -q stops at the first match, and under pipefail a writer
  # still feeding it (the /metrics body) would die of SIGPIPE and fail the check.
  if [[ "$status" != "HTTP/1."[01]" 200"* ]] || ! grep -Eiq "$2" <<<"$response"; then
    echo "GET http://$OPERATOR$1: want 200 and /$2/, got: ${response:0:300}"
    return 1
  fi
  echo "GET http://$OPERATOR$1: $status"
}
expect /readyz '^ok$'
expect /metrics '^content-type: text/plain; version=0\.0\.4'
