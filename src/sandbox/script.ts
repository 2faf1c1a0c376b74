/**
 * The helper every RUN sandbox executes: a fixed POSIX shell script run by `unshare --mount --pid
 * --fork --uts --ipc [--net] --kill-child`, i.e. as PID 1 of fresh namespaces, root (real or in kiln's
 * user namespace) with every capability. Everything that varies arrives as arguments; the script
 * never evaluates data as code.
 *
 * Order matters:
 *  1. join the step's cgroups first, so every later process is accounted;
 *  2. one `mount -a` sets up the rootfs (overlay or bind), proc and its masks, /dev, devpts, shm,
 *     the tools, sysfs, resolv.conf/hosts and the RUN mounts (see fstab.ts for why one process);
 *  3. secrets are copied from pipes into a tmpfs with host tools, then bound onto their targets;
 *  4. hostname, and lo when the network namespace is private;
 *  5. pivot_root into the rootfs and detach the host's root: from here on no host path resolves,
 *     so the remaining steps use shell builtins and the tools at /dev/.kiln (see tools.ts);
 *  6. rlimits, working directory, the step's environment (only now: variables such as LD_PRELOAD
 *     must not reach the host tools above), and exec of setpriv, which drops to Docker's default
 *     capabilities, sets no_new_privs, switches uid/gid/groups and execs the command.
 *
 * Setup failures go to fd 3 (a pipe kiln reads) with exit status 1; `ok` on fd 3 means the command
 * itself is now running, so any later status is the command's own.
 *
 * Arguments: $1 store root (overlay's relative lowerdirs resolve from it), $2 the step's scaffolding directory,
 * $3 mount(8), $4 hostname or '', $5 hostname(1) or '' to write /proc/sys/kernel/hostname, $6 ip(8)
 * or '' to leave lo alone, $7 pivot_root(8), $8 cgroup.procs files joined by ':', $9 ulimit
 * settings (`-v=KB,-p=N`), ${10} working directory, ${11} umount command (words). Then: `secret FD FILE MODE UID GID`
 * and `envsecret FD NAME` items, `--`, NAME=VALUE words to export, `--`, and the final argv.
 */
export const SANDBOX_SCRIPT = `set -f
fail() { echo "$*" >&3; exit 1; }
cd "$1" || fail "cannot enter $1"
run=$2 mnt=$3 hn=$4 hnprog=$5 ip=$6 pivot=$7 cg=$8 lim=$9 wd=\${10} um=\${11}
shift 11
if [ -n "$cg" ]; then
  IFS=:
  for f in $cg; do echo 0 2>&3 >"$f" || fail "cannot join the cgroup $f"; done
  unset IFS
fi
"$mnt" -n -a -T "$run/fstab" 2>&3 || fail "mounting the sandbox file systems failed"
n=0
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  case $1 in
    secret)
      (umask 077 && cat <&"$2" >"$3" && chmod "$4" "$3" && chown "$5:$6" "$3") 2>&3 || fail "cannot write a secret file"
      eval "exec $2<&-"
      shift 6 ;;
    envsecret)
      v=$(cat <&"$2" 2>&3; echo .) || fail "cannot read a secret"
      eval "exec $2<&-; kiln_n$n=\\$3 kiln_v$n=\\\${v%.}"
      v=
      n=$((n + 1))
      shift 3 ;;
    *) fail "unknown argument $1" ;;
  esac
done
shift
if [ -e "$run/fstab2" ]; then "$mnt" -n -a -T "$run/fstab2" 2>&3 || fail "mounting the secrets failed"; fi
if [ -n "$hn" ]; then
  if [ -n "$hnprog" ]; then "$hnprog" "$hn" 2>&3 || fail "cannot set the hostname"
  else echo "$hn" 2>&3 >/proc/sys/kernel/hostname || fail "cannot set the hostname"; fi
fi
if [ -n "$ip" ]; then "$ip" link set lo up 2>&3 || fail "cannot bring up lo"; fi
cd "$run/root" || fail "cannot enter the rootfs"
"$pivot" . . 2>&3 || fail "pivot_root failed"
$um -n -l -c . 2>&3 || fail "cannot detach the host root"
cd / || fail "cannot enter the new root"
if [ -n "$lim" ]; then
  IFS=,
  for l in $lim; do ulimit "\${l%%=*}" "\${l#*=}" 2>&3 || fail "cannot set the resource limit $l"; done
  unset IFS
fi
cd "$wd" 2>&3 || fail "cannot enter the working directory $wd"
unset PATH OLDPWD PWD IFS
# The script's own variables go before the step's environment arrives, so that a variable of the
# step with the same name (ARG name, ENV run) is not lost with them.
kiln_count=$n
unset n run mnt hn hnprog ip pivot cg lim l wd um v f
while [ $# -gt 0 ] && [ "$1" != -- ]; do export "$1" || fail "cannot set $1"; shift; done
shift
kiln_i=0
while [ "$kiln_i" -lt "$kiln_count" ]; do
  eval "export \\"\\$kiln_n$kiln_i=\\$kiln_v$kiln_i\\"; unset kiln_n$kiln_i kiln_v$kiln_i"
  kiln_i=$((kiln_i + 1))
done
unset kiln_i kiln_count
echo ok >&3
exec 3>&-
exec "$@"
`;
