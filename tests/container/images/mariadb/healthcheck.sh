#!/bin/bash
# The two checks of the official image's healthcheck.sh that compose uses.
#   --connect              the server answers a TCP login (so not the init-time server)
#   --innodb_initialized   InnoDB is up
set -euo pipefail
client=(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf
        --host=127.0.0.1 --protocol=tcp --skip-column-names --batch)
for check in "$@"; do
    case "$check" in
        --connect) "${client[@]}" -e 'SELECT 1' >/dev/null ;;
        --innodb_initialized)
            [ "$("${client[@]}" -e "SELECT support FROM information_schema.ENGINES
                 WHERE engine = 'InnoDB'")" != "NO" ] ;;
        *) echo "healthcheck.sh: unknown check $check" >&2; exit 2 ;;
    esac
done
