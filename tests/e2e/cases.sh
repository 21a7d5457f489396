# The guest e2e cases shared by the ext4 and squashfs tests. Source after
# lib.sh; the image is the one e2e_httpd_image builds.

# e2e_case_httpd NAME IMG FORMAT [APPEND...]: boot, serve, check, stop.
# lttle.hook=seccomp in APPEND selects the fallback hook; lttle.env=EXTRA=...
# is checked when given.
e2e_case_httpd() {
	local name=$1 img=$2 format=$3
	shift 3
	local append="$*" port
	port=$(free_port)
	log "$name: booting $format$([ -n "$append" ] && echo " with $append")"
	e2e_boot "$name" "$img" "$format" "$port" 8080 "$append"
	if ! e2e_wait_line "$T/$name.trig" '^listen-after 8080 0$' 90 "$QEMU_PID"; then
		e2e_dump "$name"
		fail "$name: the app never reported listen-after 8080"
	fi
	local body info
	body=$(curl -sf -m 20 "http://127.0.0.1:$port/index.html") ||
		{ e2e_dump "$name"; fail "$name: no HTTP answer on 127.0.0.1:$port"; }
	assert_eq "hello from lttle" "$body" "$name: index.html"
	info=$(curl -sf -m 20 "http://127.0.0.1:$port/info.txt") ||
		fail "$name: no info.txt (the entrypoint could not write it)"
	assert_contains "$info" "id: uid=1000(app) gid=1000(app) groups=1000(app),2000(web)" "$name: user"
	assert_contains "$info" "pwd: /srv/app" "$name: workdir"
	assert_contains "$info" "GREETING=hello from the image" "$name: image env"
	assert_contains "$info" "HOME=/home/app" "$name: HOME from passwd"
	assert_contains "$info" "PATH=/bin" "$name: image PATH"
	assert_contains "$info" "hostname: lttle" "$name: hostname"
	assert_contains "$info" "HOSTNAME=lttle" "$name: HOSTNAME"
	assert_contains "$info" "$(printf '10.0.2.15	lttle')" "$name: /etc/hosts"
	assert_contains "$info" "nameserver 10.0.2.3" "$name: /etc/resolv.conf from ip="
	case "$append" in *EXTRA=from-cmdline*)
		assert_contains "$info" "EXTRA=from-cmdline" "$name: lttle.env" ;;
	esac
	e2e_assert_order "$T/$name.trig" ready "trigger 7" hold release "bind-before 8080" \
		"bind-after 8080 0" "listen-before 8080" "listen-after 8080 0"
	assert_eq 1 "$(grep -c '^ready$' "$T/$name.trig")" "$name: one ready"
	assert_contains "$info" "proc-exit: refused" "$name: /proc/lttle refuses exit from a user"
	if grep -q '^exit' "$T/$name.trig"; then fail "$name: a user's exit line got through"; fi
	local serial
	serial=$(cat "$T/$name.serial")
	case "$append" in
	*lttle.hook=seccomp*)
		assert_contains "$info" "proc: hook off" "$name: /proc/lttle state"
		assert_contains "$serial" "lttle-init: capture hook: seccomp" "$name: hook choice"
		assert_contains "$serial" "lttle-init: listen-after 8080 0 (seccomp)" "$name: seccomp report"
		case "$serial" in *"lttle: listen-after"*) fail "$name: the kernel hook reported too" ;; esac ;;
	*)
		assert_contains "$info" "proc: hook on" "$name: /proc/lttle state"
		assert_contains "$serial" "lttle-init: capture hook: kernel" "$name: hook choice"
		assert_contains "$serial" "lttle: listen-after 8080 0" "$name: kernel report" ;;
	esac
	e2e_bench "$name"
	kill "$QEMU_PID"
	wait "$QEMU_PID" 2>/dev/null || true
}

# e2e_case_exit NAME IMG FORMAT [APPEND...]: the app (root here) writes
# /www/note.txt, then sends SIGTERM to init, which forwards it to the
# app; the app's trap exits 42; init reports "exit 42", stops the rest (a
# background sleep), syncs and resets the VM, which makes
# `qemu -no-reboot` exit on its own.
e2e_case_exit() {
	local name=$1 img=$2 format=$3
	shift 3
	local cmd
	cmd=$(cat <<'EOF'
lttle.user=0 "lttle.cmd=sh -c 'echo persisted >/www/note.txt; trap exit\ 42 TERM; sleep 30 & kill -TERM 1; wait'"
EOF
)
	log "$name: booting $format, app exits through a forwarded SIGTERM"
	e2e_boot "$name" "$img" "$format" "$(free_port)" 8080 "$cmd $*"
	e2e_wait_exit "$name"
	e2e_assert_order "$T/$name.trig" ready "exit 42"
	assert_contains "$(cat "$T/$name.serial")" "lttle-init: app exited with 42" "$name: init log"
	assert_contains "$(cat "$T/$name.serial")" "reboot: Restarting system" "$name: VM reset"
}

# e2e_case_fatal NAME IMG FORMAT: an init failure (an unknown user) is
# reported to the VMM and ends the VM instead of hanging it.
e2e_case_fatal() {
	local name=$1 img=$2 format=$3
	log "$name: booting $format with an unknown user"
	e2e_boot "$name" "$img" "$format" "$(free_port)" 8080 lttle.user=ghost
	e2e_wait_exit "$name"
	assert_eq 'log init failed: user: user "ghost" is not in /etc/passwd
exit 255' "$(cat "$T/$name.trig")" "$name: trigger stream"
	assert_contains "$(cat "$T/$name.serial")" "lttle-init: fatal: user: user \"ghost\"" "$name: log"
}
