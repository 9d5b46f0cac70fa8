#!/usr/bin/env bash
# Installs the Conclave daemon as a systemd service:
#   the binary      PREFIX/bin/conclave                 (default PREFIX: /usr/local)
#   the units       /etc/systemd/system/conclave-daemon.{socket,service}
#   the settings    /etc/conclave/daemon.toml, policy.toml, trusted/  (never overwritten)
#   a system user   conclave (when installing for real, as root)
# Usage: packaging/install.sh [--bin PATH] [--prefix DIR] [--destdir DIR]
# --destdir stages everything under DIR (for packages and tests): no user, no systemctl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../target/release/conclave"
prefix=/usr/local
destdir=""
while (($#)); do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x "$bin" ]] || { echo "install.sh: no binary at $bin (cargo build --release -p conclave-cli)" >&2; exit 2; }

install -D -m 0755 "$bin" "$destdir$prefix/bin/conclave"
for unit in conclave-daemon.socket conclave-daemon.service; do
    sed "s|/usr/local/bin/conclave|$prefix/bin/conclave|g" "$here/systemd/$unit" > "$here/.$unit.tmp"
    install -D -m 0644 "$here/.$unit.tmp" "$destdir/etc/systemd/system/$unit"
    rm -f "$here/.$unit.tmp"
done
install -d -m 0755 "$destdir/etc/conclave" "$destdir/etc/conclave/trusted"
for f in daemon.toml policy.toml; do
    if [[ ! -e "$destdir/etc/conclave/$f" ]]; then
        install -m 0644 "$here/etc/$f" "$destdir/etc/conclave/$f"
    else
        echo "install.sh: keeping the existing /etc/conclave/$f"
    fi
done

if [[ -z "$destdir" ]]; then
    if ! getent passwd conclave >/dev/null; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin conclave
    fi
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        echo "install.sh: now: systemctl enable --now conclave-daemon.socket"
    fi
fi
echo "install.sh: installed under ${destdir:-/} (binary $prefix/bin/conclave)"
