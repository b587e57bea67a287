# Starts a throwaway Dovecot IMAP server for Sluice's mailbox tests, listening on 127.0.0.1 only.
#
#   source scripts/test-dovecot.sh     # starts it; exports SLUICE_TEST_IMAP and friends (below)
#   swift test                         # the mailbox tests now run instead of being skipped
#   stop_test_dovecot                  # stops it and removes its folder
#
# Meant to be sourced (by .ci/run too), by root or by any user. It installs dovecot-imapd with apt-get
# when Dovecot is missing (root on Debian/Ubuntu only). One user with a plain-text password in a
# passwd-file, mail in a temporary Maildir, a self-signed certificate for 127.0.0.1/localhost:
# for tests, never for mail you care about. Exports:
#   SLUICE_TEST_IMAP           127.0.0.1:PORT (plain IMAP; STARTTLS offered)
#   SLUICE_TEST_IMAPS          127.0.0.1:PORT (TLS from the first byte)
#   SLUICE_TEST_IMAP_USER      the user
#   SLUICE_TEST_IMAP_PASSWORD  its password
#   SLUICE_TEST_IMAP_CA        the server's certificate (PEM), to trust

start_test_dovecot() {
  if ! command -v dovecot >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then echo "test-dovecot: Dovecot is not installed (apt-get install dovecot-imapd)" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
    command -v dovecot >/dev/null 2>&1 || { echo "test-dovecot: installing dovecot-imapd did not provide dovecot" >&2; return 1; }
  fi
  command -v openssl >/dev/null 2>&1 || { echo "test-dovecot: openssl is needed for the test certificate" >&2; return 1; }

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-dovecot.XXXXXX")
  chmod 755 "$dir"
  # As root the mail processes run as the `dovecot` user (Dovecot refuses uid 0 for mail); otherwise as the caller.
  local user group
  if [ "$(id -u)" -eq 0 ]; then user=dovecot; group=$(id -gn dovecot); else user=$(id -un); group=$(id -gn); fi
  local uid gid
  uid=$(id -u "$user"); gid=$(id -g "$user")

  # The first free ports from 10143 and 10993 (or from SLUICE_TEST_DOVECOT_PORT and SLUICE_TEST_DOVECOT_SPORT).
  local port=${SLUICE_TEST_DOVECOT_PORT:-10143} sport=${SLUICE_TEST_DOVECOT_SPORT:-10993}
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  while [ "$sport" -eq "$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null; do sport=$((sport + 1)); done

  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 \
    || { echo "test-dovecot: openssl could not make a certificate" >&2; return 1; }
  local password="sluice-test-$RANDOM$RANDOM"
  echo "sluice:{PLAIN}$password" > "$dir/passwd"
  mkdir -p "$dir/run" "$dir/state" "$dir/home/sluice/Maildir/cur" "$dir/home/sluice/Maildir/new" "$dir/home/sluice/Maildir/tmp"
  chown -R "$user:$group" "$dir/home" "$dir/state"
  chmod 644 "$dir/passwd" "$dir/cert.pem"
  chmod 600 "$dir/key.pem"

  cat > "$dir/dovecot.conf" <<EOF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
first_valid_uid = $uid
last_valid_uid = 0
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $sport
    ssl = yes
  }
}
# Tests log in often and in parallel from 127.0.0.1, some with a wrong password on purpose: no growing
# penalty for failed logins (the first failure is still delayed 2 s), no cap on connections per user+IP.
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 1000
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
  dovecot -c "$dir/dovecot.conf" || { cat "$dir/dovecot.log" >&2 2>/dev/null; return 1; }
  local i
  for i in $(seq 1 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.25
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "test-dovecot: the server did not start listening" >&2; cat "$dir/dovecot.log" >&2; return 1; }

  export SLUICE_TEST_IMAP="127.0.0.1:$port"
  export SLUICE_TEST_IMAPS="127.0.0.1:$sport"
  export SLUICE_TEST_IMAP_USER=sluice
  export SLUICE_TEST_IMAP_PASSWORD="$password"
  export SLUICE_TEST_IMAP_CA="$dir/cert.pem"
  export SLUICE_TEST_DOVECOT_DIR="$dir"
  echo "test-dovecot: Dovecot $(dovecot --version | awk '{print $1}') on 127.0.0.1:$port (STARTTLS) and :$sport (TLS), mail in $dir; SLUICE_TEST_IMAP=$SLUICE_TEST_IMAP" >&2
}

stop_test_dovecot() {
  [ -n "${SLUICE_TEST_DOVECOT_DIR:-}" ] || return 0
  local pid
  pid=$(cat "$SLUICE_TEST_DOVECOT_DIR/run/master.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -rf "$SLUICE_TEST_DOVECOT_DIR"
  unset SLUICE_TEST_IMAP SLUICE_TEST_IMAPS SLUICE_TEST_IMAP_USER SLUICE_TEST_IMAP_PASSWORD SLUICE_TEST_IMAP_CA SLUICE_TEST_DOVECOT_DIR
}

start_test_dovecot
