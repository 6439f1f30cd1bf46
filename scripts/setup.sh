#!/usr/bin/env bash
# One-command setup of the control node (`make setup`). Safe to re-run.
#
# - On Debian/Ubuntu as root: installs what is missing (Docker engine, debootstrap, PostgreSQL,
#   wrk) and starts the Docker engine when none answers.
# - Elsewhere: says exactly what is missing and how to get it, and stops.
# - Creates .venv/ with the distribution's python3 (or the one PYTHON names) from the pinned
#   requirements.txt (ansible with its bundled collections, so no Ansible Galaxy access is
#   needed) plus the service in editable mode with its test extras. pip runs again only when
#   requirements.txt, service/pyproject.toml or the interpreter change.
# - Builds the test host image (only when its definition changed).
#
# `scripts/setup.sh control` (`make setup-control`) prepares a control node for deploying to AWS
# only: the .venv, nothing else (no Docker, no test tools, no root). Works on macOS and Linux.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

scope=${1:-all}
case "$scope" in all|control) ;; *) die "unknown scope '$scope' (use: all, or control for the .venv only)" ;; esac

# The interpreter for .venv: $PYTHON when set, else the distribution's python3 (Debian and
# Ubuntu build it with profile-guided optimisation; a python3 compiled by pyenv usually is not,
# and runs Python code about a quarter slower), else python3 on PATH.
# ansible-core 2.19 needs Python 3.11 or newer on the control node.
python_is_recent() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        printf '%s\n' "$PYTHON"
    elif [ -x /usr/bin/python3 ] && python_is_recent /usr/bin/python3; then
        printf '%s\n' /usr/bin/python3
    else
        command -v python3 || printf '%s\n' python3
    fi
}

# ---------------------------------------------------------------- system prerequisites
# On Debian/Ubuntu as root: install what is missing and start the Docker engine.
install_system_prerequisites() {
    missing_pkgs=()
    have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
    # A Docker engine: the client alone is not enough, but an engine that already answers is.
    if ! docker info >/dev/null 2>&1; then
        command -v dockerd >/dev/null || missing_pkgs+=(docker.io)
    fi
    command -v docker >/dev/null || missing_pkgs+=(docker.io)
    command -v debootstrap >/dev/null || missing_pkgs+=(debootstrap)
    have_postgres || missing_pkgs+=(postgresql)
    command -v wrk >/dev/null || missing_pkgs+=(wrk)
    command -v ssh >/dev/null || missing_pkgs+=(openssh-client)
    command -v curl >/dev/null || missing_pkgs+=(curl)
    command -v pebble >/dev/null || missing_pkgs+=(pebble)
    # Graphviz's dot draws make diagram's pictures (the diagrams package in .venv calls it).
    command -v dot >/dev/null || missing_pkgs+=(graphviz)
    "$(pick_python)" -c 'import venv, ensurepip' 2>/dev/null || missing_pkgs+=(python3-venv)
    # Deduplicate
    if [ "${#missing_pkgs[@]}" -gt 0 ]; then
        mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | awk '!seen[$0]++')
    fi

    is_debian_like() {
        [ -r /etc/os-release ] || return 1
        # shellcheck disable=SC1091
        . /etc/os-release
        case " ${ID:-} ${ID_LIKE:-} " in *" debian "*|*" ubuntu "*) return 0 ;; esac
        return 1
    }

    if [ "${#missing_pkgs[@]}" -gt 0 ]; then
        if is_debian_like && [ "$(id -u)" -eq 0 ]; then
            say "installing ${missing_pkgs[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
        else
            {
                echo "setup: missing on this machine: ${missing_pkgs[*]}"
                echo "  On Debian/Ubuntu run this script as root and it installs them (apt-get install ${missing_pkgs[*]})."
                echo "  Elsewhere install the equivalents: a Docker engine (https://docs.docker.com/engine/install/),"
                echo "  debootstrap, PostgreSQL 15+ server binaries (initdb, pg_ctl), wrk, pebble, Graphviz (dot), an OpenSSH client,"
                echo "  Python 3.11 with venv."
            } >&2
            exit 1
        fi
    fi

    # ---------------------------------------------------------------- Docker engine
    if ! docker info >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || die "no Docker engine answers; start it (e.g. 'sudo systemctl start docker') and re-run"
        if [ -d /run/systemd/system ]; then
            say "starting the Docker engine (systemd)"
            systemctl start docker
        else
            say "starting the Docker engine in the background (log: /var/log/dockerd.log)"
            nohup dockerd >/var/log/dockerd.log 2>&1 &
        fi
        for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
        docker info >/dev/null 2>&1 || die "the Docker engine did not come up; see /var/log/dockerd.log"
    fi
    say "Docker engine: $(docker info -f '{{.ServerVersion}}')"
}

if [ "$scope" = all ]; then
    install_system_prerequisites
else
    "$(pick_python)" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$(pick_python) has no venv/ensurepip; install Python 3.11+ with venv (Debian: python3-venv) or set PYTHON"
fi

# ---------------------------------------------------------------- control-node virtualenv
python=$(pick_python)
python_is_recent "$python" \
    || die "$python is not Python 3.11 or newer (ansible-core 2.19 needs it); set PYTHON to one that is"
# The venv is rebuilt when the pins or the interpreter change.
stamp_input=$( { cat requirements.txt service/pyproject.toml 2>/dev/null; "$python" -c 'import sys; print(sys.executable, sys.version)'; } \
    | "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp_input" ]; then
    say "creating .venv with $python ($("$python" -c 'import platform; print(platform.python_version())')) from requirements.txt"
    "$python" -m venv --clear .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements.txt
    if [ -f service/pyproject.toml ]; then
        say "installing the service (editable, with test extras) into .venv"
        .venv/bin/pip install -q -e './service[test]'
    fi
    echo "$stamp_input" > .venv/.setup-stamp
else
    say ".venv is up to date"
fi

# ---------------------------------------------------------------- test host image
if [ "$scope" = control ]; then
    command -v dot >/dev/null \
        || say "note: no Graphviz 'dot' here; make diagram needs it (macOS: brew install graphviz; Debian: apt-get install graphviz)"
    say "done. Next: '. .venv/bin/activate', then the README's 'Deploying to a real AWS account'."
    exit 0
fi
bash scripts/build-image.sh

say "done. Next: 'make demo' (local end-to-end run) or 'make test' (lint and every test suite)."
