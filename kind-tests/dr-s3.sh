#!/usr/bin/env bash
# An S3 server outside the local cluster, for the disaster-recovery drill: it keeps the
# repository while the cluster is torn down and built anew. Test infrastructure only.
#
#   kind-tests/dr-s3.sh up     starts s3s-fs with empty buckets in a network namespace of its own
#   kind-tests/dr-s3.sh allow  lets the running cluster's pods reach it (again after `cluster.sh up`)
#   kind-tests/dr-s3.sh env    prints DR_S3_ENDPOINT, DR_S3_ACCESS_KEY, DR_S3_SECRET_KEY, DR_S3_BUCKET
#   kind-tests/dr-s3.sh down   stops it and removes the namespace, its data and the rule
#
# The server listens only inside network namespace `hort-dr-s3` (10.99.0.2:9000), joined to the
# host by a veth pair (host side 10.99.0.1/30). Pods reach it through the host, which routes
# between the pod bridge and the pair; the cluster's egress guard (chain HORT-EGRESS of
# node.sh, which drops what pods send beyond the cluster) gets one exception for this address,
# made by `up` and `allow`. Nothing outside this machine can reach the server, and it reaches
# nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kind-tests/versions.sh
source "$HERE/versions.sh"
CACHE="${HORT_CACHE:-$HOME/.cache/hort}"
STATE="$CACHE/dr-s3"
NETNS=hort-dr-s3
HOST_IF=hortdr0 NS_IF=hortdr1
HOST_IP=10.99.0.1 SERVER_IP=10.99.0.2 PORT=9000
ACCESS_KEY=hort-dr-access SECRET_KEY=hort-dr-secret-key BUCKET=hort-dr

log() { printf 'dr-s3.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

env_lines() {
  printf 'DR_S3_ENDPOINT=http://%s:%s\nDR_S3_ACCESS_KEY=%s\nDR_S3_SECRET_KEY=%s\nDR_S3_BUCKET=%s\n' \
    "$SERVER_IP" "$PORT" "$ACCESS_KEY" "$SECRET_KEY" "$BUCKET"
}

# The exception in the cluster's egress guard, when the cluster runs (node.sh makes the chain).
allow() {
  iptables -w -L HORT-EGRESS -n >/dev/null 2>&1 || return 0
  iptables -w -C HORT-EGRESS -d "$SERVER_IP/32" -j RETURN 2>/dev/null \
    || iptables -w -I HORT-EGRESS 1 -d "$SERVER_IP/32" -j RETURN
}

down() {
  iptables -w -D HORT-EGRESS -d "$SERVER_IP/32" -j RETURN 2>/dev/null || true
  if [[ -f "$STATE/pid" ]]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$STATE/data"
}

answers() { ip netns exec "$NETNS" bash -c "exec 3<>/dev/tcp/$SERVER_IP/$PORT" 2>/dev/null; }

up() {
  [[ $EUID -eq 0 ]] || die "run as root (it makes a network namespace)"
  "$HERE/build.sh" test-tools >&2
  local bin="$CACHE/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs"
  [[ -x "$bin" ]] || die "$bin missing after build.sh test-tools"
  down
  mkdir -p "$STATE/data/$BUCKET"
  ip netns add "$NETNS"
  ip link add "$HOST_IF" type veth peer name "$NS_IF"
  ip link set "$NS_IF" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip netns exec "$NETNS" ip addr add "$SERVER_IP/30" dev "$NS_IF"
  ip netns exec "$NETNS" ip link set "$NS_IF" up
  ip netns exec "$NETNS" ip link set lo up
  ip netns exec "$NETNS" ip route add default via "$HOST_IP"
  # Only the credentials' names reach argv here: s3s-fs takes them as flags, and they are
  # fixed test values, not secrets of anyone.
  setsid ip netns exec "$NETNS" "$bin" --host "$SERVER_IP" --port "$PORT" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$STATE/data" \
    >"$STATE/s3.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
  local _
  for _ in $(seq 50); do
    answers && { allow; log "S3 at http://$SERVER_IP:$PORT (bucket $BUCKET), log $STATE/s3.log"; return 0; }
    sleep 0.2
  done
  die "s3s-fs did not answer on $SERVER_IP:$PORT (log: $STATE/s3.log)"
}

case "${1:-}" in
  up) up ;;
  allow) allow ;;
  down) down ;;
  env) env_lines ;;
  *) die "usage: dr-s3.sh up|allow|down|env" ;;
esac
