#!/usr/bin/env bash
# The README's "Remote access" transcript, rerunnable: a throwaway CA, two tenants and a server
# certificate made by openssl, an agent on 127.0.0.1:$PORT with mutual TLS and a policy, and what
# each tenant may and may not do. Prints every command ("$ ...") and its real output.
# Usage (root, after `make build`): scripts/remote-access-demo.sh [PORT]   (default 50151)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${1:-50151}
WORK=$(mktemp -d /tmp/pidfd-remote-demo.XXXXXX)
cd "$WORK"

# The transcript names the CLI as installed (package.json bin); here it is the build in dist/.
pidfdctl() { node "$ROOT/dist/src/cli/main.js" "$@"; }

# Echo a command as typed, then run it; a failing command is part of the story, not the end of it.
show() {
  printf '$ %s\n' "$1"
  eval "$1" 2>&1 || true
}

agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A P-256 key and a certificate signed by the CA with the given SAN and extended key usage.
issue() {
  local name=$1 san=$2 usage=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -subj "/CN=$name" 2>/dev/null |
    openssl x509 -req -CA ca.crt -CAkey ca.key -days 1 -out "$name.crt" \
      -extfile <(printf 'subjectAltName = %s\nextendedKeyUsage = %s\n' "$san" "$usage") 2>/dev/null
}

echo "# The PKI: a CA, the agent's certificate (IP SAN) and two tenants (SPIFFE IDs)"
show 'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=demo-ca 2>/dev/null'
show "issue agent IP:127.0.0.1 serverAuth"
show "issue tenant-a URI:spiffe://example.org/tenant-a clientAuth"
show "issue tenant-b URI:spiffe://example.org/tenant-b clientAuth"
show "openssl x509 -in tenant-a.crt -noout -ext subjectAltName"

cat >policy.yaml <<'EOF'
rules:
  - name: tenant-a
    identities: ["spiffe://example.org/tenant-a"]
    role: tenant
    spawn:
      run_as: ["10001"]            # a uid of its own: the kernel keeps apart only different uids
      executables: ["/usr/bin/*", "/bin/*"]
  - name: tenant-b
    identities: ["spiffe://example.org/tenant-b"]
    role: tenant
    spawn:
      run_as: ["10002"]
      executables: ["/usr/bin/*", "/bin/*"]
EOF
echo
echo "# The policy and the agent"
show "cat policy.yaml"
# The agent takes absolute paths only: it re-reads these files later.
start='pidfd-agent --tcp 127.0.0.1:'"$PORT"' --tls-cert $PWD/agent.crt --tls-key $PWD/agent.key \
    --tls-client-ca $PWD/ca.crt --policy $PWD/policy.yaml --audit-log $PWD/audit.log --ephemeral 2>agent.log &'
printf '$ %s\n' "$start"
# exec: the background job is the agent itself, so $! is its pid for the cleanup.
pidfd-agent() { exec node "$ROOT/dist/src/main.js" "$@"; }
eval "$start"
agent_pid=$!
for _ in $(seq 100); do
  grep -q '"serving"' agent.log 2>/dev/null && break
  kill -0 "$agent_pid" 2>/dev/null || { cat agent.log; exit 1; }
  sleep 0.1
done

echo
echo "# Tenant A spawns; the process is its own"
show "export PIDFD_AGENT_ADDR=127.0.0.1:$PORT PIDFD_AGENT_TLS_CA=ca.crt"
show 'A="--tls-cert tenant-a.crt --tls-key tenant-a.key"; B="--tls-cert tenant-b.crt --tls-key tenant-b.key"'
printf '$ %s\n' 'H=$(pidfdctl $A spawn --user 10001 -- sleep 300); echo $H'
H=$(pidfdctl $A spawn --user 10001 -- sleep 300)
echo "$H"
show 'pidfdctl $A get $H'

echo
echo "# Tenant B can neither signal nor see it, and A may not run as root"
show 'pidfdctl $B signal $H KILL; echo "status $?"'
show 'pidfdctl $B list; echo "status $?"'
show 'pidfdctl $A spawn --user root -- /bin/id; echo "status $?"'

echo
echo "# No client certificate: no connection"
show 'pidfdctl list; echo "status $?"'
show 'openssl s_client -connect 127.0.0.1:'"$PORT"' -CAfile ca.crt -quiet </dev/null 2>&1 | grep -m1 -i alert'

echo
echo "# The audit"
show 'pidfdctl $A signal $H KILL'
show 'cat audit.log'
