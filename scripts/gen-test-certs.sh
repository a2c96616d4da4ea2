#!/usr/bin/env bash
# Generates the TLS fixtures of test/runtime/tcp-transport.test.ts into test/fixtures/tls/:
#   ca.pem                      the cluster CA (its key is thrown away: rerun to re-issue)
#   n1..n3.pem / .key           node certificates signed by the cluster CA (server and client use,
#                               subjectAltName localhost and 127.0.0.1, CN = node id)
#   other-ca.pem                a second, unrelated CA
#   rogue.pem / rogue.key       a node-shaped certificate signed by the other CA (must be refused)
# TEST-ONLY keys: never use them outside tests. Valid for 100 years so the tests do not expire.
# Usage: scripts/gen-test-certs.sh   (needs openssl; overwrites the fixtures)
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/test/fixtures/tls"
mkdir -p "$out"
cd "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -f ./*.pem ./*.key
days=36500

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() { # name subject
  new_key "$work/$1.key"
  openssl req -x509 -new -key "$work/$1.key" -sha256 -days "$days" -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem"
}

make_node() { # name ca common-name
  new_key "$1.key"
  openssl req -new -key "$1.key" -subj "/O=raftlease test/CN=$3" -out "$work/$1.csr"
  cat >"$work/$1.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
  openssl x509 -req -in "$work/$1.csr" -CA "$2.pem" -CAkey "$work/$2.key" -CAcreateserial -CAserial "$work/$2.srl" \
    -sha256 -days "$days" -extfile "$work/$1.ext" -out "$1.pem" 2>/dev/null
}

make_ca ca "/O=raftlease test/CN=raftlease test cluster CA"
make_ca other-ca "/O=raftlease test/CN=some other CA"
for node in n1 n2 n3; do make_node "$node" ca "$node"; done
make_node rogue other-ca n2
chmod 644 ./*.key ./*.pem
echo "wrote $(ls "$out" | tr '\n' ' ')"
