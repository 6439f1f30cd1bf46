#!/usr/bin/env bash
# The local environment's stand-ins for AWS, started and stopped together.
#
#   scripts/local-env.sh up      emulated AWS API (moto server on 127.0.0.1:5050, pid file),
#                                a docker network and two systemd containers standing in for the
#                                EC2 web host and the RDS database host, reached over SSH on
#                                loopback with a generated key as the user admin (sudo, no
#                                password), as EC2 would be; root cannot log in.
#                                TOPOLOGY=ha (inventories/local-ha): a second web host and a
#                                load-balancer host (HAProxy, for the ALB), which publishes the
#                                HTTP and HTTPS ports instead of the web host.
#   scripts/local-env.sh down    removes the containers, the network, the emulator and the
#                                local state (.state/local), whichever exist, then checks that
#                                none is left; a removal that fails stops it with one line
#                                saying what. Safe to repeat.
#   scripts/local-env.sh status  what is running.
#   scripts/local-env.sh summary where the demo answers and how to use and remove it.
#
#   The local ACME server: pebble (Let's Encrypt's test server) on the Docker network's gateway,
#   port 14000, with HTTPS from the local CA (playbooks/local_ca.yml, .state/local/ca), and
#   pebble-challtestsrv answering its DNS queries with the web container's address, so the web
#   host gets a real certificate chain for https://localhost:8443/ over HTTP-01.
#
# Ports (loopback only): SSH web 2222, SSH db 2223 (ha: SSH web-k 2222+k, SSH lb 2230), HTTP 8080, HTTPS 8443, AWS API 5050,
# ACME management 15000, ACME DNS 8053 (and 8055, its management); ACME directory 14000 on the
# Docker network's gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.state/local
image="${TESTHOST_IMAGE:-togglemaster-testhost:bookworm}"
network=togglemaster-local
moto_port=5050
moto_pid="$state/moto.pid"
key="$state/ssh/id_ed25519"
acme="$state/acme"
acme_port=14000
acme_dns=127.0.0.1:8053
login_user=admin
topology="${TOPOLOGY:-single}"
# ha: web hosts tm-local-web, tm-local-web-2 ... tm-local-web-N (SSH on 2222, then 2222+k); the
# inventory lists them (inventories/local-ha has two; a third is an extra inventory's, as the
# deploy benchmark's).
web_count="${WEB_COUNT:-2}"
label=togglemaster.environment=local
venv_bin="$PWD/.venv/bin"

say() { printf 'local-env: %s\n' "$*"; }
die() { printf 'local-env: %s\n' "$*" >&2; exit 1; }

# The one publishing HTTP and HTTPS: where the ACME server's check must arrive.
case "$topology" in
    single) front=tm-local-web ;;
    ha) front=tm-local-lb ;;
    *) die "TOPOLOGY must be single or ha, not '$topology'" ;;
esac

systemd_flags=(--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined
               --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
               --tmpfs /run --tmpfs /run/lock --tmpfs /tmp)

# pid file, program: the pid file's process, while it is still that program (an exited process's
# pid can be reused, and an exited process no one has reaped yet has no command line).
running() { [ -f "$1" ] && grep -qa "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null; }
moto_running() { running "$moto_pid" moto_server; }

# pid file, program, what it is (for the messages): stops it and waits until it is gone.
stop_daemon() {
    local pid
    pid=$(cat "$1")
    if ! kill "$pid" 2>/dev/null && running "$1" "$2"; then die "could not stop $3 (pid $pid)"; fi
    for _ in $(seq 1 50); do
        running "$1" "$2" || { say "stopped $3 (pid $pid)"; return; }
        sleep 0.2
    done
    die "$3 (pid $pid) did not stop within 10 s"
}

# Anything at all accepting connections on the emulator's port.
moto_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null; }

start_moto() {
    if moto_running; then
        say "emulated AWS API already running (pid $(cat "$moto_pid"))"
        return
    fi
    [ -x "$venv_bin/moto_server" ] || die "moto_server missing: run 'make setup' first"
    say "starting the emulated AWS API on 127.0.0.1:$moto_port"
    nohup "$venv_bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
    echo $! >"$moto_pid"
    for _ in $(seq 1 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:$moto_port/moto-api/" 2>/dev/null && return
        sleep 0.2
    done
    die "the emulated AWS API did not answer; see $state/moto.log"
}

# name of a daemon of the ACME stand-in (its program and pid file)
acme_running() { running "$acme/$1.pid" "$1"; }

# The ACME server answers on its directory (with the local CA's certificate).
acme_answers() { curl -fsS -o /dev/null --cacert "$state/ca/ca.crt" "https://$(cat "$acme/address"):$acme_port/dir" 2>/dev/null; }

# pebble and its DNS, started once; the certificates pebble issues chain to a root it makes at
# each start, which $acme/root.pem keeps for the clients (validate, curl --cacert).
start_acme() {
    local gateway web_address
    gateway=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$network")
    web_address=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$front")
    [ -n "$gateway" ] && [ -n "$web_address" ] || die "no address for the ACME server (network $network gateway '$gateway', $front '$web_address')"
    command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null || die "pebble missing: run 'make setup' first"
    install -d -m 0700 "$acme"
    echo "$gateway" >"$acme/address"
    "$venv_bin/ansible-playbook" -i inventories/local playbooks/local_ca.yml >"$acme/local_ca.log" 2>&1 ||
        die "the local CA could not be made; see $acme/local_ca.log"
    if acme_running pebble-challtestsrv; then
        say "ACME DNS already running (pid $(cat "$acme/pebble-challtestsrv.pid"))"
    else
        say "starting the ACME DNS on $acme_dns (every name: $web_address)"
        nohup pebble-challtestsrv -defaultIPv4 "$web_address" -defaultIPv6 "" -dns01 "$acme_dns" \
            -management 127.0.0.1:8055 -http01 "" -https01 "" -tlsalpn01 "" >"$acme/challtestsrv.log" 2>&1 &
        echo $! >"$acme/pebble-challtestsrv.pid"
    fi
    if acme_running pebble; then
        say "ACME server already running (pid $(cat "$acme/pebble.pid"))"
        return
    fi
    cat >"$acme/pebble.json" <<JSON
{"pebble": {"listenAddress": "$gateway:$acme_port", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "$PWD/$state/ca/acme-server.crt", "privateKey": "$PWD/$state/ca/acme-server.key",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "certificateValidityPeriod": 7776000}}
JSON
    say "starting the ACME server on https://$gateway:$acme_port/dir"
    # No random waits, no refused nonces, no reused authorizations: every order is validated.
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        nohup pebble -config "$acme/pebble.json" -dnsserver "$acme_dns" >"$acme/pebble.log" 2>&1 &
    echo $! >"$acme/pebble.pid"
    for _ in $(seq 1 50); do
        if acme_answers; then
            curl -fsS --cacert "$state/ca/ca.crt" -o "$acme/root.pem" https://127.0.0.1:15000/roots/0 ||
                die "the ACME server's root could not be read; see $acme/pebble.log"
            return
        fi
        sleep 0.2
    done
    die "the ACME server did not answer; see $acme/pebble.log"
}

# name, then extra docker run arguments (published ports)
start_host() {
    local name=$1; shift
    # A container made from an older image lacks what the image gives now (the login user).
    if docker inspect "$name" >/dev/null 2>&1 &&
       [ "$(docker inspect -f '{{.Image}}' "$name")" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
        die "$name was made from an older test host image: 'make demo-down' first, then up again"
    fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = "true" ]; then
        say "$name already running"
    elif docker inspect "$name" >/dev/null 2>&1; then
        say "starting $name"
        docker start "$name" >/dev/null
    else
        say "creating $name"
        docker run -d --name "$name" --hostname "$name" --network "$network" \
            --label "$label" "${systemd_flags[@]}" "$@" \
            "$image" /lib/systemd/systemd >/dev/null
    fi
    # The login user trusts the generated key, as EC2 does with the key pair's public key.
    docker exec -i -u "$login_user" "$name" sh -c 'umask 077 && mkdir -p "$HOME/.ssh" &&
        cat > "$HOME/.ssh/authorized_keys"' <"$key.pub"
}

wait_for_ssh() {
    local port=$1
    for _ in $(seq 1 60); do
        ssh -i "$key" -p "$port" -o BatchMode=yes -o ConnectTimeout=2 -o IdentitiesOnly=yes \
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
            "$login_user@127.0.0.1" sudo -n true 2>/dev/null && return
        sleep 1
    done
    die "SSH as $login_user (with sudo) on 127.0.0.1:$port did not answer"
}

up() {
    docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'make setup' first"
    # Up to date in a second when the image definition did not change.
    bash scripts/build-image.sh
    install -d -m 0700 "$state" "$state/ssh"
    [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C "togglemaster-local" -f "$key"
    # The published HTTP ports belong to one container; the other topology's must go first.
    local other=tm-local-lb
    [ "$topology" = ha ] && other=tm-local-web
    if [ -n "$(docker port "$other" 80 2>/dev/null)" ]; then
        die "the demo runs in the other topology ($other serves HTTP): 'make demo-down' first, then up again"
    fi
    start_moto
    docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
    local http=(-p 127.0.0.1:8080:80 -p 127.0.0.1:8443:443)
    if [ "$topology" = single ]; then
        start_host tm-local-web -p 127.0.0.1:2222:22 "${http[@]}"
    else
        [[ "$web_count" =~ ^[1-7]$ ]] || die "WEB_COUNT must be 1 to 7, not '$web_count'"
        start_host tm-local-web -p 127.0.0.1:2222:22
        for k in $(seq 2 "$web_count"); do start_host "tm-local-web-$k" -p "127.0.0.1:$((2222 + k)):22"; done
        start_host tm-local-lb -p 127.0.0.1:2230:22 "${http[@]}"
        for k in $(seq 2 "$web_count"); do wait_for_ssh $((2222 + k)); done
        wait_for_ssh 2230
    fi
    start_host tm-local-db -p 127.0.0.1:2223:22
    wait_for_ssh 2222
    wait_for_ssh 2223
    start_acme
    say "up: web ssh 127.0.0.1:2222, db ssh 127.0.0.1:2223, AWS API http://127.0.0.1:$moto_port, ACME https://$(cat "$acme/address"):$acme_port/dir"
}

network_exists() { docker network inspect "$1" >/dev/null 2>&1; }

# what, then the command that removes it; a removal that fails stops here in one line.
remove() {
    local what=$1 out; shift
    out=$("$@" 2>&1) || die "could not remove $what: ${out//$'\n'/ }"
    say "removed $what"
}

# Every container of the local environment, by its label, whichever topology made it; web hosts first.
containers() { docker ps -a --filter "label=$label" --format '{{.Names}}' | sort -r; }

# Removes only what exists, so it is safe to repeat; then checks that nothing is left.
down() {
    docker info >/dev/null 2>&1 || die "no Docker engine answers, so the containers cannot be removed: run 'make setup' first"
    for name in $(containers); do
        remove "$name" docker rm -f "$name"
    done
    if network_exists "$network"; then remove "network $network" docker network rm "$network"; fi
    if moto_running; then stop_daemon "$moto_pid" moto_server "the emulated AWS API"; fi
    for daemon in pebble pebble-challtestsrv; do
        if acme_running "$daemon"; then stop_daemon "$acme/$daemon.pid" "$daemon" "$daemon"; fi
    done
    if [ -e "$state" ]; then remove "$state" rm -rf "$state"; fi
    local left=()
    for name in $(containers); do
        left+=("container $name")
    done
    if network_exists "$network"; then left+=("network $network"); fi
    if moto_port_open; then left+=("a listener on 127.0.0.1:$moto_port"); fi
    for daemon in pebble pebble-challtestsrv; do
        if pgrep -f "^(/usr/bin/)?$daemon( |$)" >/dev/null; then left+=("a $daemon process"); fi
    done
    if [ -e "$state" ]; then left+=("$state"); fi
    [ ${#left[@]} -eq 0 ] || die "down: still present: ${left[*]}"
    say "down: no container, network, emulator or local state is left"
}

status() {
    moto_running && say "AWS API: running (pid $(cat "$moto_pid"))" || say "AWS API: stopped"
    for daemon in pebble pebble-challtestsrv; do
        acme_running "$daemon" && say "$daemon: running (pid $(cat "$acme/$daemon.pid"))" || say "$daemon: stopped"
    done
    for name in $(containers); do
        say "$name: $(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || echo absent)"
    done
}

summary() {
    local inventory="-i inventories/local"
    [ "$topology" = ha ] && inventory+=" -i inventories/local-ha"
    cat <<SUMMARY

ToggleMaster is running locally.
  Service URL:   https://localhost:8443/   (certificate from the local ACME server; http://localhost:8080/ redirects)
  Try it:        curl --cacert $acme/root.pem https://localhost:8443/flags
  API token:     in the emulated SSM Parameter Store (/togglemaster/local/secrets/api_token);
                 writes need 'Authorization: Bearer <token>':
                 TOKEN=\$(.venv/bin/python scripts/secret.py local api_token)
                 curl -X POST -H "Authorization: Bearer \$TOKEN" \\
                      -H 'Content-Type: application/json' -d '{"name": "dark-mode"}' \\
                      --cacert $acme/root.pem https://localhost:8443/flags
  Status:        ansible-playbook $inventory playbooks/status.yml
  SSH:           ssh -i $key -p 2222 $login_user@127.0.0.1   (then sudo; database host: -p 2223)
  Roll back:     ansible-playbook $inventory playbooks/rollback.yml -e confirm_rollback=local
  Tear down:     make demo-down
SUMMARY
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    summary) summary ;;
    *) die "usage: $0 up|down|status|summary" ;;
esac
