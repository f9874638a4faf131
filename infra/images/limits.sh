# Sourced by the image and stack scripts: the open-file and process limits containers may get on this host.
#
# A container cannot be given more than the engine itself holds: runc fails with "error setting rlimit type 7
# (nofile): operation not permitted" when asked for more open files than the hard limit of the shell that runs
# podman, and with type 6 (nproc) above the host's pid_max on some kernels. Podman's own defaults as root
# (nofile=1048576, nproc=4194304) fail the same way on a host whose limits are lower, so every container these
# scripts start names both limits. Production values (nofile 1048576) belong on hosts tuned for them
# (infra/sysctl/, docs/deploy.md sections 7 and 10); this picks the most the current host allows, up to those.
# shellcheck shell=bash

_stack_min() { if [ "$1" = unlimited ] || { [ "$2" != unlimited ] && [ "$2" -lt "$1" ]; }; then echo "$2"; else echo "$1"; fi; }

STACK_NOFILE=${STACK_NOFILE:-$(_stack_min "$(ulimit -Hn)" 1048576)}
STACK_NPROC=${STACK_NPROC:-$(_stack_min "$(_stack_min "$(ulimit -Hu)" "$(cat /proc/sys/kernel/pid_max)")" 1048576)}
export STACK_NOFILE STACK_NPROC
# The same as podman flags, for `podman run` and `podman build`.
STACK_ULIMITS=(--ulimit "nofile=$STACK_NOFILE:$STACK_NOFILE" --ulimit "nproc=$STACK_NPROC:$STACK_NPROC")
