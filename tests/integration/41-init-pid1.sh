#!/usr/bin/env bash
# lttle-init as a real PID 1 on the host, without a VM: a PID, mount, UTS,
# net and IPC namespace around a chroot holding busybox, passwd/group, the
# init and its config. /proc/cmdline is a file the test writes (bind-mounted
# before the init mounts the real /proc over it); lttle.events= sends the
# event lines to a file and lttle.log=console keeps the init's log on
# stderr, so nothing reaches the host's I/O ports or kernel log.
# Checks the whole main.c flow: API mounts, config + cmdline env, user and
# supplementary groups, a workdir created on demand, the seccomp hook
# (busybox nc binds and listens), zombie reaping, SIGTERM forwarding, the
# exit report, cleanup of leftover processes, and the namespace's reboot.
# Also: the binary is static and refuses to run as anything but PID 1.
. "$(dirname "$0")/../lib/common.sh"
need unshare chroot readelf findmnt
INIT=$LTTLE_BUILD/lttle-init
[ -x "$INIT" ] || skip "$INIT is not built"
[ -x /bin/busybox ] || skip "busybox-static is not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root (namespaces, chroot, mounts)"

# Static, small, and PID 1 only.
readelf -l "$INIT" | grep -q INTERP && fail "lttle-init is dynamically linked"
size=$(stat -c %s "$INIT")
[ "$size" -lt $((2 << 20)) ] || fail "lttle-init is $size bytes"
expect_fail "init as a normal process" "$INIT"
assert_contains "$(cat "$T/err")" "must run as PID 1" "refusal"

root=$T/root
mkdir -p "$root"/{bin,etc,proc,www,.lttle}
cp /bin/busybox "$root/bin/"
for a in sh id env sort pwd sleep nc cat; do ln -s busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nweb:x:2000:app\n' >"$root/etc/group"
chown 1000:1000 "$root/www"
install -m 0755 "$INIT" "$root/.lttle/init"
cat >"$root/entry.sh" <<'EOF'
#!/bin/sh
{ echo "id: $(id)"; echo "pwd: $(pwd)"; env | sort; } >/www/info.txt
trap 'exit 42' TERM
(sleep 0.1 &)            # an orphan that init must reap
nc -l -p 8080 &          # bind + listen, through the seccomp hook
echo started >/www/started
while :; do sleep 1; done
EOF
chmod 0755 "$root/entry.sh"
cat >"$root/.lttle/config.json" <<'EOF'
{"env":["PATH=/bin","GREETING=hello"],"entrypoint":["/entry.sh"],"cmd":null,
 "workdir":"/srv/app","user":"app","exposed_ports":[]}
EOF
mkdir "$T/fakeproc"
echo "init=/.lttle/init lttle.events=/events.log lttle.log=console lttle.hook=seccomp" \
	"lttle.overlay=none lttle.env=EXTRA=from-cmdline lttle.hostname=pid1test" >"$T/fakeproc/cmdline"

bg_start "$T/init.log" unshare --pid --fork --mount --uts --net --ipc --propagation private \
	sh -c "mount --bind '$T/fakeproc' '$root/proc' && exec chroot '$root' /.lttle/init"
us=$(cat "$T/last.pid")
for ((i = 0; i < 100; i++)); do
	[ -f "$root/www/started" ] && grep -q '^listen-after 8080 0$' "$root/events.log" 2>/dev/null && break
	kill -0 "$us" 2>/dev/null || fail "init ended early: $(cat "$T/init.log")"
	sleep 0.1
done
grep -q '^listen-after 8080 0$' "$root/events.log" || fail "no listen report: $(cat "$T/init.log")"
init_pid=$(pgrep -P "$us" | head -1)
[ -n "$init_pid" ] || fail "no init process under unshare"
assert_eq "/.lttle/init" "$(tr '\0' ' ' <"/proc/$init_pid/cmdline" | sed 's/ $//')" "PID 1 is the init"

# The orphan has exited by now and must not linger as a zombie.
sleep 0.5
zombies=$(ps -e -o stat=,ppid= | awk -v p="$init_pid" '$2 == p && $1 ~ /^Z/' | wc -l)
assert_eq 0 "$zombies" "zombies under init"

kill -TERM "$init_pid"
for ((i = 0; i < 100; i++)); do kill -0 "$us" 2>/dev/null || break; sleep 0.1; done
kill -0 "$us" 2>/dev/null && fail "the namespace did not end after SIGTERM: $(cat "$T/init.log")"
set +e
wait "$us" 2>/dev/null
rc=$?
set -e
# reboot(RB_AUTOBOOT) in a PID namespace ends its init with SIGHUP.
assert_eq 129 "$rc" "exit status of the namespace (SIGHUP from reboot)"

expected="ready
bind-before 8080
bind-after 8080 0
listen-before 8080
listen-after 8080 0
exit 42"
assert_eq "$expected" "$(cat "$root/events.log")" "event stream"
info=$(cat "$root/www/info.txt")
assert_contains "$info" "id: uid=1000(app) gid=1000(app) groups=1000(app),2000(web)" "user"
assert_contains "$info" "pwd: /srv/app" "workdir (created by init)"
assert_contains "$info" "GREETING=hello" "image env"
assert_contains "$info" "EXTRA=from-cmdline" "lttle.env"
assert_contains "$info" "HOME=/home/app" "HOME"
assert_contains "$info" "HOSTNAME=pid1test" "HOSTNAME"
logtext=$(cat "$T/init.log")
assert_contains "$logtext" "lttle-init: capture hook: seccomp" "hook choice"
assert_contains "$logtext" "lttle-init: exec /entry.sh as 1000:1000 in /srv/app" "exec log"
assert_contains "$logtext" "lttle-init: app exited with 42" "exit log"
# The init's mounts lived and died with its namespace.
[ -z "$(findmnt -rn -o TARGET | grep -F "$root")" ] || fail "mounts left under $root"
pass "lttle-init as PID 1: mounts, config, user, seccomp hook, reaping, SIGTERM, exit, reboot"
