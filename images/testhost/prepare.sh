#!/bin/sh
# Runs inside the image root (Dockerfile) or chrooted into it (debootstrap path).
set -eu
# Units that make no sense in a container
for unit in getty@tty1.service systemd-logind.service console-getty.service \
            systemd-udevd.service systemd-udev-trigger.service systemd-networkd-wait-online.service; do
    systemctl mask "$unit" >/dev/null 2>&1 || true
done
systemctl enable ssh.service >/dev/null 2>&1 || true
# Host keys are made at first boot, so every container has its own
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/hostkeys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
# The login user, as on Debian's EC2 images: `admin`, no password, sudo without one. Root has no
# key: scripts/local-env.sh gives admin the generated key, as EC2 does with the key pair.
useradd --create-home --shell /bin/bash --groups sudo admin
usermod --password '*' admin
install -d -m 0700 -o admin -g admin /home/admin/.ssh
printf 'admin ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-admin
chmod 0440 /etc/sudoers.d/90-admin
visudo -cq
# An EC2 image has no machine id baked in either
: > /etc/machine-id
