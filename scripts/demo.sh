#!/usr/bin/env bash
# The demo: validate the default bundle, dry-run a remediation, run it for real
# (against a local spool directory), then show the durable journal.
set -euo pipefail
VIGIL=${1:-target/debug/vigil}
cd "$(dirname "$0")/.."
export VIGIL_STORE=${VIGIL_STORE:-.vigil/demo-store}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. validate the default bundle (runbooks/)"
"$VIGIL" validate runbooks

say "2. dry-run: what would restart-leaking-service do for this incident? (no side effect)"
"$VIGIL" dry-run restart-leaking-service --incident runbooks/examples/incident-memory-leak.json

say "3. run it: the escalation policy decides, then every step is journaled before it acts"
"$VIGIL" run restart-leaking-service --incident runbooks/examples/incident-memory-leak.json --new

say "4. a runbook with an approval gate pauses, durably, until someone approves"
"$VIGIL" run error-rate-rollback --set service=checkout-api --set error_rate=0.21 --new
for id in $("$VIGIL" executions list --output json | python3 -c 'import json,sys; print(" ".join(e["id"] for e in json.load(sys.stdin) if e["status"]=="awaiting_approval"))'); do
  "$VIGIL" executions approve "$id" --comment "approved in the demo"
  last=$id
done

say "5. the journal of the approved execution"
"$VIGIL" executions show "$last"

say "6. the audit log: who or what decided what"
"$VIGIL" audit --limit 8

say "where to look next"
echo "  $VIGIL executions list          # every execution in $VIGIL_STORE"
echo "  $VIGIL policy test escalation --incident runbooks/examples/incident-memory-leak.json"
echo "  $VIGIL graph restart-leaking-service --format dot"
echo "  ls .vigil/spool                  # the effects the runbooks had"
