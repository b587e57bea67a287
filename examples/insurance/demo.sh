#!/usr/bin/env bash
# The whole seed 000 demo: two e-mails arrive together, SI and Viajeros each run, and one combined
# report goes out exactly once.
#
#   ./demo.sh                                   # with `sluice` on PATH
#   SLUICE=../../.build/debug/sluice ./demo.sh  # with a build of this repository
#   OUTAGE=1 ./demo.sh                          # the SMTP server is down while the runs end; the
#                                               # report stays queued and arrives once it is back
#
# It starts a throwaway Dovecot (IMAP, ../../scripts/test-dovecot.sh) on 127.0.0.1:10143 and a throwaway
# SMTP server (aiosmtpd, ../../scripts/test-smtp.py) on 127.0.0.1:10025 that saves what it receives in
# output/mail/; runs `sluice serve si.yml viajeros.yml`; puts the insurer's two e-mails into the INBOX;
# waits for the combined report and prints it, with `sluice sessions` and `sluice show SESSION`.
# Everything it started is stopped on exit; output/ and .sluice/ stay (./reset.sh removes them).
set -eo pipefail
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)

SLUICE=${SLUICE:-sluice}
case "$SLUICE" in */*) SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE") ;; esac  # before cd
command -v "$SLUICE" >/dev/null || { echo "demo.sh: '$SLUICE' not found: put sluice on PATH or set SLUICE=../../.build/debug/sluice" >&2; exit 2; }
python3 -c 'import aiosmtpd' 2>/dev/null || { echo "demo.sh: the demo's SMTP server needs aiosmtpd: pip install aiosmtpd (or apt-get install python3-aiosmtpd)" >&2; exit 2; }
cd "$here"
SMTP= SERVE=

smtp_up() {
    python3 ../../scripts/test-smtp.py --port 10025 --maildir output/mail >output/logs/smtp.out 2>output/logs/smtp.log & SMTP=$!
    for _ in $(seq 1 100); do grep -q '^ready' output/logs/smtp.out 2>/dev/null && return 0; sleep 0.1; done
    echo "demo.sh: the SMTP server did not start (port 10025 taken?):" >&2; cat output/logs/smtp.log >&2; exit 1
}
cleanup() {
    [ -n "$SERVE" ] && kill -TERM "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
    [ -n "$SMTP" ] && kill -TERM "$SMTP" 2>/dev/null || true
    stop_test_dovecot 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p output/logs output/mail
rm -f output/mail/*.eml

echo "== a throwaway IMAP server (Dovecot) on 127.0.0.1:10143"
export SLUICE_TEST_DOVECOT_PORT=10143 SLUICE_TEST_DOVECOT_SPORT=10993
# shellcheck source=../../scripts/test-dovecot.sh
source ../../scripts/test-dovecot.sh
[ "$SLUICE_TEST_IMAP" = "127.0.0.1:10143" ] || { echo "demo.sh: port 10143 is taken (Dovecot is on $SLUICE_TEST_IMAP): stop what listens there, or change si.yml and viajeros.yml" >&2; exit 1; }
cp "$SLUICE_TEST_IMAP_CA" output/imap-ca.pem
export SLUICE_MAIL_PASSWORD=$SLUICE_TEST_IMAP_PASSWORD

if [ -n "${OUTAGE:-}" ]; then
    echo "== OUTAGE=1: no SMTP server yet"
else
    echo "== a throwaway SMTP server (aiosmtpd) on 127.0.0.1:10025, saving to output/mail/"
    smtp_up
fi

echo "== sluice serve si.yml viajeros.yml (log: output/logs/serve.log)"
"$SLUICE" serve si.yml viajeros.yml >output/logs/serve.log 2>&1 & SERVE=$!
for _ in $(seq 1 100); do [ "$(grep -c 'serving' output/logs/serve.log 2>/dev/null)" -ge 2 ] && break; sleep 0.1; done
grep 'serving' output/logs/serve.log | sed 's/^/  /'

echo "== the insurer's two e-mails arrive"
python3 scripts/mail.py send --imap "$SLUICE_TEST_IMAP" --user "$SLUICE_TEST_IMAP_USER" --password-env SLUICE_MAIL_PASSWORD --ca output/imap-ca.pem | sed 's/^/  /'

# Wait until the session is no longer open (both runs ended, or the timeout passed).
session=
for _ in $(seq 1 600); do
    session=$("$SLUICE" sessions --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[0]["session_id"] if s and s[0]["status"] != "open" else "")')
    [ -n "$session" ] && break
    sleep 0.2
done
[ -n "$session" ] || { echo "demo.sh: the session did not end within 2 minutes; see output/logs/serve.log" >&2; exit 1; }

if [ -n "${OUTAGE:-}" ]; then
    sleep 1
    echo "== both runs ended while the SMTP server was down: the report waits in the outbox"
    "$SLUICE" outbox list | sed 's/^/  /'
    echo "== the SMTP server comes back"
    smtp_up
fi

for _ in $(seq 1 900); do ls output/mail/*.eml >/dev/null 2>&1 && break; sleep 0.2; done
sleep 2   # anything sent twice would arrive now
count=$(ls output/mail/*.eml 2>/dev/null | wc -l)
echo
echo "== sluice sessions"
"$SLUICE" sessions
echo
echo "== sluice show $session"
"$SLUICE" show "$session"
echo
echo "== the one combined report that arrived ($count message(s) in output/mail/)"
for mail in output/mail/*.eml; do python3 scripts/mail.py show "$mail"; done
echo
echo "HTML report: $here/.sluice/sessions/$session/report.html"
[ "$count" -eq 1 ] || { echo "demo.sh: expected exactly one report, got $count" >&2; exit 1; }
