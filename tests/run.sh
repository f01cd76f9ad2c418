#!/usr/bin/env bash
# The test command: on a fresh Debian machine (as root) it installs what the tests need, starts
# their fixtures, and runs `cargo test` (arguments are passed on: `bash tests/run.sh --test it registry::`).
# Idempotent: what is installed or running already is left as it is. `.ci/run` calls it too.
#
# What it sets up:
#  - a Docker engine (installs docker.io and starts dockerd if none answers): tests never skip;
#  - libc6-dev (the test workload is linked statically), caddy (the ingress tests),
#    openssh-server, iproute2, iptables, util-linux (the SSH test hosts), docker-registry and
#    apache2-utils (the test registry), postgresql-15, redis-server, nginx, busybox-static, gosu,
#    file (the postgres:15, redis:7 and nginx:1.22 fixture images), debootstrap (the Debian base
#    of the rabbitmq:3-management, prom/prometheus and edoburu/pgbouncer images), curl,
#    docker-compose (the compose differential test compares the importer with
#    `docker-compose config`);
#  - tests/fixtures/hosts.sh up, tests/fixtures/registry.sh up, tests/fixtures/images.sh,
#    tests/fixtures/debian.sh (server images from Debian's archive on a debootstrapped base),
#    tests/fixtures/s3.sh (moto's S3 server from PyPI, for the backup tests),
#    tests/fixtures/swarm.sh up (a three-node swarm for the Swarm backend).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_ready=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "tests: missing $*; run as root (or install them: apt-get install $*)"; exit 1
  fi
  if [ "$apt_ready" = 0 ]; then apt-get update -q; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# 1. A reachable Docker engine.
if ! docker info >/dev/null 2>&1; then
  echo "tests: no reachable Docker engine; installing docker.io and starting dockerd"
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "tests: dockerd did not come up"; tail -50 /tmp/dockerd.log; exit 1
  fi
fi
echo "tests: docker engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# 2. Packages.
need=()
[ -f "/usr/lib/$(uname -m)-linux-gnu/libc.a" ] || need+=(libc6-dev)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v gosu >/dev/null 2>&1 || need+=(gosu)
command -v file >/dev/null 2>&1 || need+=(file)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The Debian base of the RabbitMQ, Prometheus and PgBouncer images (tests/fixtures/debian.sh).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# docker-compose 1.29 (with python3-yaml): the oracle of tests/it/compose_differential.rs.
/usr/bin/python3 -c 'import compose, yaml' >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
# Debian starts the servers it installs where it can; the tests run their own.
for s in docker-registry postgresql redis-server nginx; do service "$s" stop >/dev/null 2>&1 || true; done

# 3. Fixtures (the tests also start them themselves, idempotently).
bash tests/fixtures/hosts.sh up
echo "tests: ssh test hosts up: $(bash tests/fixtures/hosts.sh engines | tr '\n' ' ')"
bash tests/fixtures/registry.sh up
echo "tests: registry up: $(bash tests/fixtures/registry.sh status | tr '\n' ' ')"
bash tests/fixtures/images.sh
bash tests/fixtures/debian.sh
bash tests/fixtures/s3.sh
bash tests/fixtures/swarm.sh up
echo "tests: swarm up: $(bash tests/fixtures/swarm.sh engines | tr '\n' ' ')"

# 4. The tests.
cargo test "$@"
