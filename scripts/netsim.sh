#!/usr/bin/env bash
# Data-parallel training across simulated machines: 2-4 MPI ranks, each in its own network namespace, joined by
# veth pairs to a bridge in a "switch" namespace, the links shaped with tc (netem: bandwidth and latency; tbf:
# bandwidth only, where the kernel lacks sch_netem), Open MPI over TCP on those namespaces' own addresses only.
# Runs examples/mnist_distributed.rs for each model and link, plus plain `mpirun -np N` (shared memory) as the
# baseline, and prints the epoch time and the share of it spent in collectives per configuration.
#
# Needs root (ip netns, tc), Open MPI's mpirun and the MNIST files. Exits 77 with a SKIPPED line where it cannot
# make namespaces (not root, no ip netns, no veth); any failing run fails it. Removes its namespaces and files on
# exit, failures and interrupts included. `scripts/netsim.sh --help` lists the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: scripts/netsim.sh [OPTIONS]

Trains examples/mnist_distributed.rs on N ranks in separate network namespaces joined by shaped links, and on N
ranks in shared memory, and prints the epoch time and the share of communication per configuration.

Options:
  --ranks N          ranks, one namespace each: 2 to 4 (default: 2)
  --models LIST      comma-separated models of the example: w2, convnet (default: convnet,w2)
  --links LIST       comma-separated links RATE[:LATENCY], tc units (default: 10gbit:50us,1gbit:50us);
                     the latency is one way, host to switch; it needs sch_netem
  --epochs N         epochs per run (default: 2; with 2 or more the figures leave out epoch 1, a warm-up)
  --limit N          training images (default: 12000)
  --batch-size N     global batch size (default: 128)
  --short            a CI run: 1 epoch on 512 images, 300 s per run at most (a few seconds each here)
  --no-shm           skip the shared-memory baseline
  --example-args A   more options for every run of the example, one string (e.g. "--overlap")
  --binary PATH      the example, already built (default: cargo build --release --features mpi)
  --mnist DIR        the four MNIST .gz files (default: $KERUST_HOME/datasets/mnist if there, else
                     ../shared/data/mnist beside the repository, else the example downloads them)
  --timeout S        limit per run in seconds (default: 1200, or 300 with --short)
  --logs DIR         keep each run's output in DIR (default: a temporary folder, removed on exit)
  -h, --help         print this help

Exit status: 0 when every run succeeded, 77 when namespaces cannot be made here (not root, no ip netns or veth),
1 otherwise.
EOF
}

RANKS=2
MODELS=convnet,w2
LINKS=10gbit:50us,1gbit:50us
EPOCHS=2
LIMIT=12000
BATCH=128
SHM=1
EXAMPLE_ARGS=""
BINARY=""
MNIST=""
TIMEOUT=""
LOGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --ranks) RANKS="$2"; shift 2 ;;
        --models) MODELS="$2"; shift 2 ;;
        --links) LINKS="$2"; shift 2 ;;
        --epochs) EPOCHS="$2"; shift 2 ;;
        --limit) LIMIT="$2"; shift 2 ;;
        --batch-size) BATCH="$2"; shift 2 ;;
        --short) EPOCHS=1; LIMIT=512; TIMEOUT="${TIMEOUT:-300}"; shift ;;
        --no-shm) SHM=0; shift ;;
        --example-args) EXAMPLE_ARGS="$2"; shift 2 ;;
        --binary) BINARY="$2"; shift 2 ;;
        --mnist) MNIST="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --logs) LOGS="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "netsim: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done
TIMEOUT="${TIMEOUT:-1200}"
case "$RANKS" in
    2 | 3 | 4) ;;
    *) echo "netsim: --ranks must be 2, 3 or 4, got $RANKS" >&2; exit 1 ;;
esac
for n in "$EPOCHS" "$LIMIT" "$BATCH" "$TIMEOUT"; do
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
        echo "netsim: expected a positive whole number, got \"$n\"" >&2
        exit 1
    fi
done
IFS=, read -r -a MODEL_LIST <<<"$MODELS"
IFS=, read -r -a LINK_LIST <<<"$LINKS"
for m in "${MODEL_LIST[@]}"; do
    case "$m" in
        w2 | convnet) ;;
        *) echo "netsim: --models takes w2 and convnet, got \"$m\"" >&2; exit 1 ;;
    esac
done

# Bytes per second of a tc rate (10gbit, 1gbit, 500mbit, 100kbit, 1000000bit), for tbf's burst.
rate_bytes() {
    local rate="${1,,}" num unit
    if ! [[ "$rate" =~ ^([0-9]+)([kmg]?bit)$ ]]; then
        echo "netsim: a rate is a whole number with kbit, mbit, gbit or bit, got \"$1\"" >&2
        return 1
    fi
    num="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}"
    case "$unit" in
        gbit) echo $((num * 1000000000 / 8)) ;;
        mbit) echo $((num * 1000000 / 8)) ;;
        kbit) echo $((num * 1000 / 8)) ;;
        bit) echo $((num / 8)) ;;
    esac
}
for link in "${LINK_LIST[@]}"; do
    rate_bytes "${link%%:*}" >/dev/null
done

# Names unique to this run, so that two runs on one machine do not meet; the switch holds the bridge and mpirun.
TAG="kerust-ns$$"
SW="$TAG-sw"
HOSTS=()
for ((i = 0; i < RANKS; i++)); do
    HOSTS+=("$TAG-h$i")
done
SUBNET=10.77.0.0/24
WORK=""
MADE=()

cleanup() {
    local status=$? ns pid
    trap - EXIT INT TERM
    if [ -n "${CHILD:-}" ] && kill -0 "$CHILD" 2>/dev/null; then
        # timeout passes the signal on to mpirun, which ends its ranks.
        kill -TERM "$CHILD" 2>/dev/null || true
        sleep 2
    fi
    for ns in "${MADE[@]}"; do
        # Whatever still runs in our namespaces (a rank of a failed run) is ours: end it by its id.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -n "$WORK" ]; then
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip() {
    echo "SKIPPED: $1"
    exit 77
}

# Preconditions: root, namespaces and veth pairs; a failure here is a skip, not an error.
[ "$(id -u)" = 0 ] || skip "netsim needs root for ip netns and tc (running as uid $(id -u))"
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is missing"
command -v tc >/dev/null 2>&1 || skip "the tc command (iproute2) is missing"
ip netns add "$SW" 2>/dev/null || skip "ip netns add fails here (no network namespaces in this container?)"
MADE+=("$SW")
command -v mpirun >/dev/null 2>&1 || { echo "netsim: mpirun (Open MPI) is missing" >&2; exit 1; }

WORK="$(mktemp -d /tmp/kerust-netsim.XXXXXX)"
if [ -z "$LOGS" ]; then
    LOGS="$WORK/logs"
fi
mkdir -p "$LOGS"

# The topology: a bridge br0 in the switch namespace (10.77.0.254, where mpirun runs), and for each rank a
# namespace whose eth0 (10.77.0.1, .2, ...) is a veth pair's end, the other end a port of the bridge.
ip -n "$SW" link set lo up
# No spanning tree (the default): the ports forward as soon as they are up.
ip -n "$SW" link add br0 type bridge stp_state 0
ip -n "$SW" addr add 10.77.0.254/24 dev br0
ip -n "$SW" link set br0 up
for ((i = 0; i < RANKS; i++)); do
    h="${HOSTS[$i]}"
    ip netns add "$h"
    MADE+=("$h")
    ip -n "$h" link set lo up
    if ! ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$h" 2>/dev/null; then
        skip "veth pairs cannot be made here (ip link add ... type veth fails)"
    fi
    ip -n "$SW" link set "p$i" master br0
    ip -n "$SW" link set "p$i" up
    ip -n "$h" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$h" link set eth0 up
done
# sch_netem gives bandwidth and latency; without it tbf gives the bandwidth alone.
if ip netns exec "${HOSTS[0]}" tc qdisc add dev eth0 root netem delay 1us 2>/dev/null; then
    ip netns exec "${HOSTS[0]}" tc qdisc del dev eth0 root
    SHAPER=netem
else
    SHAPER=tbf
    echo "NOTE: this kernel lacks sch_netem (tc qdisc add ... netem: unknown qdisc): the links' bandwidth is"
    echo "      shaped with tbf and their latency is NOT simulated (only the veth pairs' own, a few microseconds)."
fi

# Shapes both directions of every link: each rank's eth0 (what it sends) and its switch port (what it receives).
shape() {
    local rate="$1" delay="$2" bytes burst i
    bytes="$(rate_bytes "$rate")"
    # tbf: two milliseconds' worth of tokens, at least 256 KiB; with less (64 KiB at 1 Gbit/s) TCP reaches only
    # half the rate.
    burst=$((bytes / 500 > 262144 ? bytes / 500 : 262144))
    for ((i = 0; i < RANKS; i++)); do
        if [ "$SHAPER" = netem ]; then
            ip netns exec "${HOSTS[$i]}" tc qdisc replace dev eth0 root netem delay "$delay" rate "$rate" limit 100000
            ip netns exec "$SW" tc qdisc replace dev "p$i" root netem rate "$rate" limit 100000
        else
            ip netns exec "${HOSTS[$i]}" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
            ip netns exec "$SW" tc qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" latency 50ms
        fi
    done
}

# Runs a command in a namespace with the namespace's name as its host name (a UTS namespace of its own), so
# that no two "machines" share a name: `in-host NAMESPACE COMMAND [ARGS...]`. Every step execs the next, so
# that timeout and cleanup signal the command itself.
IN_HOST="$WORK/in-host"
cat >"$IN_HOST" <<'EOF'
#!/bin/sh
host="$1"
shift
exec ip netns exec "$host" unshare --uts /bin/sh -c 'echo "$0" >/proc/sys/kernel/hostname && exec "$@"' "$host" "$@"
EOF
# Open MPI's rsh launcher calls `AGENT [options] HOST COMMAND...` as it would ssh; here HOST is a namespace, and
# the command (a daemon, orted, which starts the host's rank) runs there through a shell, as ssh would.
AGENT="$WORK/netns-agent"
cat >"$AGENT" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do
    case "\$1" in
        -*) shift ;;
        *) break ;;
    esac
done
host="\$1"
shift
exec "$IN_HOST" "\$host" /bin/sh -c "\$*"
EOF
chmod +x "$IN_HOST" "$AGENT"
HOSTFILE="$WORK/hostfile"
for h in "${HOSTS[@]}"; do
    echo "$h slots=1"
done >"$HOSTFILE"

# MNIST for every rank: a KERUST_HOME whose datasets/mnist holds the files.
if [ -z "$MNIST" ]; then
    if [ -n "${KERUST_HOME:-}" ] && [ -f "$KERUST_HOME/datasets/mnist/train-images-idx3-ubyte.gz" ]; then
        MNIST="$KERUST_HOME/datasets/mnist"
    elif [ -d "$ROOT/../shared/data/mnist" ]; then
        MNIST="$ROOT/../shared/data/mnist"
    fi
fi
if [ -n "$MNIST" ]; then
    MNIST="$(cd "$MNIST" && pwd)"
    export KERUST_HOME="$WORK/kerust_home"
    mkdir -p "$KERUST_HOME/datasets/mnist"
    for f in "$MNIST"/*.gz; do
        ln -s "$f" "$KERUST_HOME/datasets/mnist/"
    done
fi

if [ -z "$BINARY" ]; then
    (cd "$ROOT" && cargo build --release --features mpi --example mnist_distributed)
    BINARY="$ROOT/target/release/examples/mnist_distributed"
fi
[ -x "$BINARY" ] || { echo "netsim: $BINARY is not an executable" >&2; exit 1; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# --bind-to none everywhere: each namespace's daemon sees the whole machine and would pin its rank to core 0, on
# top of the others'; the shared-memory baseline runs unpinned too, so that the two compare.
MPI_COMMON=(--allow-run-as-root -np "$RANKS" --bind-to none)
# shellcheck disable=SC2054 # the commas are Open MPI's (tcp,self), not array separators
MPI_NET=(--hostfile "$HOSTFILE" --map-by node --mca plm_rsh_agent "$AGENT" --mca plm_rsh_no_tree_spawn 1
    --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include "$SUBNET" --mca oob_tcp_if_include "$SUBNET")
if [ -n "${KERUST_HOME:-}" ]; then
    MPI_NET+=(-x KERUST_HOME)
fi
example_args() {
    echo --model "$1" --epochs "$EPOCHS" --limit "$LIMIT" --batch-size "$BATCH" --threads 1 --no-validation --stats \
        "$EXAMPLE_ARGS"
}

# Bytes each rank's eth0 has sent, summed, to show that the traffic crossed the shaped links.
link_tx() {
    local total=0 i b
    for ((i = 0; i < RANKS; i++)); do
        b="$(ip netns exec "${HOSTS[$i]}" cat /sys/class/net/eth0/statistics/tx_bytes)"
        total=$((total + b))
    done
    echo "$total"
}

# Runs a command in the background and waits for it, so that an interrupt or TERM reaches the traps at once
# (bash runs them only after a foreground command ends); cleanup ends the command by its id.
CHILD=""
STATUS=0
waited() {
    "$@" &
    CHILD=$!
    STATUS=0
    wait "$CHILD" || STATUS=$?
    return "$STATUS"
}
# Words for a run that timeout ended: a daemon that dies at start (orted daemonizes, so its launcher exits
# well) leaves mpirun waiting for it for ever.
timed_out() {
    if [ "$STATUS" = 124 ]; then
        echo ": it did not end within --timeout $TIMEOUT s (mpirun waits for ever for a daemon that died at start)"
    fi
}

# The median of the epoch times rank 0 printed ("epochs (s): 1.2 1.1 1.0; ..."), epoch 1 (a warm-up) left out
# when there are more.
epoch_median() {
    sed -n 's/^epochs (s): \([0-9. ]*\);.*/\1/p' "$1" | head -1 | tr ' ' '\n' | grep . \
        | { if [ "$EPOCHS" -gt 1 ]; then tail -n +2; else cat; fi; } | sort -g \
        | awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
TRAIN=$((LIMIT < 60000 ? LIMIT : 60000))
STEPS=$(((TRAIN + BATCH - 1) / BATCH))

RESULTS=()
run_one() {
    local model="$1" config="$2" log err before after median step shares
    # Rank 0's report on standard output, every rank's statistics on standard error: apart, so that their lines
    # do not interleave.
    log="$LOGS/$model-$config.out"
    err="$LOGS/$model-$config.err"
    # shellcheck disable=SC2046 # example_args' words are meant to split
    if [ "$config" = shm ]; then
        echo "--- $model, $RANKS ranks in shared memory: mpirun ${MPI_COMMON[*]} --oversubscribe $BINARY $(example_args "$model")"
        before=0
        if ! waited timeout "$TIMEOUT" mpirun "${MPI_COMMON[@]}" --oversubscribe "$BINARY" $(example_args "$model") \
            </dev/null >"$log" 2>"$err"; then
            cat "$log" "$err"
            echo "FAIL: $model in shared memory (log above)$(timed_out)"
            exit 1
        fi
        after=0
    else
        echo "--- $model, $RANKS ranks over $config ($SHAPER), in $SW: mpirun ${MPI_COMMON[*]} ${MPI_NET[*]} $BINARY $(example_args "$model")"
        before="$(link_tx)"
        if ! waited timeout "$TIMEOUT" "$IN_HOST" "$SW" mpirun "${MPI_COMMON[@]}" "${MPI_NET[@]}" "$BINARY" \
            $(example_args "$model") </dev/null >"$log" 2>"$err"; then
            cat "$log" "$err"
            echo "FAIL: $model over $config (log above)$(timed_out)"
            exit 1
        fi
        after="$(link_tx)"
    fi
    cat "$log" "$err"
    median="$(epoch_median "$log")"
    step="$(awk -v s="$median" -v n="$STEPS" 'BEGIN { if (s != "") printf "%.2f", s / n * 1000 }')"
    shares="$(sed -n 's/^rank \([0-9]*\): .*; \([0-9.]*\)% of the epoch time in collectives.*/\1:\2%/p' "$err" | sort -n | tr '\n' ' ')"
    if [ -z "$median" ] || [ "$(echo "$shares" | wc -w)" != "$RANKS" ] || ! grep -qF "ranks: $RANKS," "$log"; then
        echo "FAIL: $model over $config: the output lacks \"ranks: $RANKS\", the epoch time or a share per rank"
        exit 1
    fi
    # The gradients alone are more than 100 KB per step for either model: far less on the links means that the
    # ranks talked some other way.
    if [ "$config" != shm ] && [ $((after - before)) -lt 100000 ]; then
        echo "FAIL: $model over $config: the ranks' links carried only $((after - before)) bytes"
        exit 1
    fi
    RESULTS+=("$(printf '%-8s %-16s %8s %9s   %-34s %s' "$model" "$config" "$median" "$step" "$shares" \
        "$([ "$config" = shm ] && echo - || echo "$(((after - before) / 1000000)) MB")")")
}

echo "netsim: $RANKS ranks (${HOSTS[*]}), switch $SW, subnet $SUBNET, shaper $SHAPER"
echo "        $EPOCHS epoch(s) on $LIMIT images, batch $BATCH, 1 thread per rank, no validation; logs in $LOGS"
for model in "${MODEL_LIST[@]}"; do
    if [ "$SHM" = 1 ]; then
        run_one "$model" shm
    fi
    for link in "${LINK_LIST[@]}"; do
        rate="${link%%:*}"
        delay=0us
        if [[ "$link" == *:* ]]; then
            delay="${link#*:}"
        fi
        shape "$rate" "$delay"
        if [ "$SHAPER" = netem ]; then
            run_one "$model" "$rate,$delay"
        else
            run_one "$model" "$rate"
        fi
    done
done

echo
echo "=== netsim results: $RANKS ranks, $EPOCHS epoch(s) on $LIMIT images, batch $BATCH ($SHAPER) ==="
if [ "$EPOCHS" -gt 1 ]; then
    echo "(s/epoch: the median of epochs 2 and on; collectives: each rank's time in them, share of those epochs)"
else
    echo "(s/epoch and the share in collectives include the warm-up: use --epochs 2 or more for figures)"
fi
printf '%-8s %-16s %8s %9s   %-34s %s\n' model config s/epoch ms/step "collectives (rank:share)" "links tx"
for r in "${RESULTS[@]}"; do
    echo "$r"
done
