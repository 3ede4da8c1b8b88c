#!/usr/bin/env bash
# Real shippers against a running `vigil serve`: the official Python
# Elasticsearch client's bulk helper, and rsyslog forwarding over TCP
# (octet-counted). Each must deliver events that come out as alerts.
# Installs what it needs (pip into a venv, rsyslog from Debian). Prints
# "N passed, N failed" last.
set -euo pipefail
V="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work=$(mktemp -d)
server=""; rsys=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$rsys" ] && kill "$rsys" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v rsyslogd >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog bsdutils >/dev/null
fi
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q 'elasticsearch>=8,<9'

HTTP=127.0.0.1:17781; SYSLOG_TCP=17782; RSYSLOG_IN=17783
mkdir -p "$work/rules"
cat > "$work/rules/winlog.yml" <<'R'
title: CI logon failure
id: ci-4625
level: medium
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4625, TargetUserName|startswith: adm}
  condition: sel
R
cat > "$work/rules/su.yml" <<'R'
title: CI su to root failed
id: ci-su
level: high
logsource: {product: linux}
detection:
  keywords: ["'su root' failed"]
  condition: keywords
R
cat > "$work/vigil.toml" <<T
data_dir = "$work/data"
listen = "$HTTP"
rules = ["$work/rules"]
[[syslog]]
listen = "127.0.0.1:$SYSLOG_TCP"
protocol = "tcp"
product = "linux"
T
token=$("$V" tokens create ci --role admin --data-dir "$work/data")
"$V" serve --config "$work/vigil.toml" > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  "$work/venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://$HTTP/healthz')" 2>/dev/null && break
  sleep 0.1
done

passed=0; failed=0
alert_count() {
  "$work/venv/bin/python" - "$HTTP" "$token" "$1" <<'P'
import json, sys, urllib.request
addr, token, rule = sys.argv[1:]
req = urllib.request.Request(f"http://{addr}/api/v1/alerts?rule={rule}", headers={"Authorization": f"Bearer {token}"})
print(json.load(urllib.request.urlopen(req))["total"])
P
}
wait_alert() {
  for _ in $(seq 100); do
    [ "$(alert_count "$1")" -ge 1 ] && return 0
    sleep 0.1
  done
  return 1
}

# 1. The official Elasticsearch client's bulk helper, with an API key.
id=$(echo "$token" | cut -d_ -f2); key=$(echo "$token" | cut -d_ -f3)
"$work/venv/bin/python" - "$HTTP" "$id" "$key" <<'P'
import sys
from elasticsearch import Elasticsearch, helpers
addr, kid, key = sys.argv[1:]
es = Elasticsearch(f"http://{addr}", api_key=(kid, key))
docs = [{"_index": "winlogbeat-ci", "_source": {
    "@timestamp": "2026-11-20T10:00:00Z",
    "winlog": {"channel": "Security", "event_id": 4625, "computer_name": "dc-ci",
               "event_data": {"TargetUserName": f"admin{i}"}}}} for i in range(100)]
ok, errors = helpers.bulk(es, docs)
assert ok == 100 and not errors, (ok, errors)
print("elasticsearch-py bulk helper: 100 documents acknowledged")
P
if wait_alert ci-4625; then echo "PASS python elasticsearch bulk helper -> alert"; passed=$((passed+1)); else echo "FAIL python elasticsearch bulk helper: no alert"; failed=$((failed+1)); fi

# 2. rsyslog, forwarding over TCP with octet-counted framing.
mkdir -p "$work/rsyslog"
cat > "$work/rsyslog.conf" <<C
global(workDirectory="$work/rsyslog")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$RSYSLOG_IN")
*.* action(type="omfwd" target="127.0.0.1" port="$SYSLOG_TCP" protocol="tcp" TCP_Framing="octet-counted")
C
rsyslogd -n -f "$work/rsyslog.conf" -i "$work/rsyslog.pid" > "$work/rsyslog.log" 2>&1 &
rsys=$!
sleep 1
logger -d -n 127.0.0.1 -P "$RSYSLOG_IN" -t su "'su root' failed for ci on /dev/pts/1"
if wait_alert ci-su; then echo "PASS rsyslog over TCP -> alert"; passed=$((passed+1)); else echo "FAIL rsyslog over TCP: no alert"; cat "$work/rsyslog.log" "$work/serve.log"; failed=$((failed+1)); fi

echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
