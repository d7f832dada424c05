#!/usr/bin/env bash
# Installs the servers the tests start themselves: Dovecot, redis-server, chromium (Debian packages).
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd dovecot-pop3d)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/openssl ] || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "Installing test servers: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "Please install as root: apt-get install -y ${need[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages' own services are not used: the tests start private instances on high ports.
for svc in dovecot redis-server; do $SUDO service "$svc" stop >/dev/null 2>&1 || true; done
