#!/bin/busybox sh
# /init of the vm-test initramfs. Runs as PID 1 of a throwaway qemu guest and nowhere else:
# it writes into this guest's own DAMON sysfs tree when asked to compare.
#
# Progress goes to the console (ttyS0); results go to ttyS1 as lines starting with "@@vm ",
# and files as "@@vm begin NAME" ... "@@vm end NAME". The host decides pass or fail.
# Background processes do not inherit the results port (3>&-): closing it last, at the end,
# waits until the port has sent everything, before the power goes off.
# Not PID 1: not a guest's init. Refuse before touching anything (not even /proc).
if [ $$ -ne 1 ]; then
    echo "vm-test init: not the init of a vm-test guest, refusing to run"
    exit 1
fi
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
if ! /bin/busybox grep -qw damon_vm_guest=1 /proc/cmdline; then
    echo "vm-test init: not the init of a vm-test guest, refusing to run"
    exit 1
fi
/bin/busybox --install -s /bin
export PATH=/bin
# The kernel's DAMON admin tree of this guest, named once: only this throwaway guest's kernel
# (the checks above refuse to run anywhere else), for the side-by-side comparisons. Our own
# monitor is driven through its FUSE mount at /tmp/admin.
GUEST_KERNEL_TREE=/sys/kernel/mm/damon/admin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# /run, as on any Linux system: damon caches the kernel layout of this boot there.
mkdir -p /run
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tracefs nodev /sys/kernel/tracing
. /etc/vm-test.conf

stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "vm-test [$(uptime_s)]: $*"; }
r() { echo "@@vm $*" >&3; }
blob() { echo "@@vm begin $1" >&3; cat "$2" >&3; echo >&3; echo "@@vm end $1" >&3; }
# utime+stime of a task in clock ticks (fields 14 and 15; the name may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }
# Waits up to $2 seconds for a pattern in a file.
wait_for() {
    i=0
    while ! grep -q "$1" "$3" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt $(($2 * 10)) ] && return 1; sleep 0.1
    done
}
# Waits for process $1 at most $2 seconds, then SIGKILLs it; sets $rc to its exit status.
wait_pid() {
    (sleep "$2"; kill -9 "$1" 2>/dev/null) 3>&- &
    killer=$!
    wait "$1"; rc=$?
    kill "$killer" 2>/dev/null; wait "$killer" 2>/dev/null
}
finish() {
    r "done uptime=$(uptime_s)"
    exec 3>&-
    say "done"
    sync
    poweroff -f
}

# Swap of the mapping of a process ($1) that starts at address $2 (0x...), in KiB.
swap_kb() {
    awk -v s="${2#0x}-" 'index($1, s) == 1 { f = 1; next }
        /^[0-9a-f]+-[0-9a-f]+ / { f = 0 }
        f && $1 == "Swap:" { print $2; exit }' "/proc/$1/smaps" 2>/dev/null
}
vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
# Major faults of a task (field 12 of /proc/PID/stat).
majflt() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $10 }'; }
# Starts one vaddr kdamond in an admin tree ($1: this guest's kernel tree or our mount) on
# process $2 at DAMON's default attributes, with one scheme: action $3 for regions of
# nr_accesses 0..$4 and age $5.. aggregations (any size).
scheme_on() {
    K=$1/kdamonds/0
    C=$K/contexts/0
    S=$C/schemes/0
    echo 0 > $1/kdamonds/nr_kdamonds
    echo 1 > $1/kdamonds/nr_kdamonds
    echo 1 > $K/contexts/nr_contexts
    echo vaddr > $C/operations
    echo $SAMPLE_US > $C/monitoring_attrs/intervals/sample_us
    echo $AGGR_US > $C/monitoring_attrs/intervals/aggr_us
    echo $UPDATE_US > $C/monitoring_attrs/intervals/update_us
    echo $MIN_REGIONS > $C/monitoring_attrs/nr_regions/min
    echo $MAX_REGIONS > $C/monitoring_attrs/nr_regions/max
    echo 1 > $C/targets/nr_targets
    echo $2 > $C/targets/0/pid_target
    echo 1 > $C/schemes/nr_schemes
    echo $3 > $S/action
    echo 0 > $S/access_pattern/sz/min
    echo 18446744073709551615 > $S/access_pattern/sz/max
    echo 0 > $S/access_pattern/nr_accesses/min
    echo $4 > $S/access_pattern/nr_accesses/max
    echo $5 > $S/access_pattern/age/min
    echo 4294967295 > $S/access_pattern/age/max
    echo on > $K/state
}
# The pageout scheme: regions not accessed for PAGEOUT_AGE aggregations, no quota.
pageout_scheme() {
    scheme_on "$1" "$2" pageout 0 "$PAGEOUT_AGE"
}
# One pageout run under the admin tree $2 (named $1): a fresh workload, the scheme on, the
# Swap of both buffers every half second until the cold one is 99 % out or PAGEOUT_SECS have
# passed, then the counters.
pageout_run() {
    taskset -c 1 damon workload hotcold --hot-mib "$PAGEOUT_HOT_MIB" --cold-mib "$PAGEOUT_COLD_MIB" \
        > /tmp/po-workload.out 2>&1 3>&- &
    PO_PID=$!
    if ! wait_for READY 60 /tmp/po-workload.out; then
        r "pageout-$1 failed=workload"
        blob pageout-$1-log /tmp/po-workload.out
        kill -9 $PO_PID 2>/dev/null
        return
    fi
    hot=$(sed -n 's/.* hot=\(0x[0-9a-f]*\)-.*/\1/p' /tmp/po-workload.out)
    cold=$(sed -n 's/.* cold=\(0x[0-9a-f]*\)-.*/\1/p' /tmp/po-workload.out)
    cold_kb=$((PAGEOUT_COLD_MIB * 1024))
    # The kernel's aggregations, from its damon_aggregated tracepoint (one event per region,
    # in address order: an aggregation starts where the start address goes back down).
    E=/sys/kernel/tracing/events/damon/damon_aggregated/enable
    [ "$1" = kernel ] || E=/nonexistent
    if [ -f $E ]; then echo > /sys/kernel/tracing/trace; echo 1 > $E; fi
    out0=$(vmstat pswpout); in0=$(vmstat pswpin); maj0=$(majflt $PO_PID)
    t0=$(uptime_s)
    (set -e; pageout_scheme "$2" $PO_PID) > /tmp/po-setup.out 2>&1
    setup=$?
    t_on=$(uptime_s)
    K=$2/kdamonds/0
    kpid=$(cat $K/pid 2>/dev/null)
    c0=$(cpu_ticks $kpid)
    : > /tmp/po-series.txt
    while [ $setup = 0 ]; do
        now=$(uptime_s)
        c=$(swap_kb $PO_PID $cold); h=$(swap_kb $PO_PID $hot)
        echo "$now ${c:-0} ${h:-0}" >> /tmp/po-series.txt
        awk -v n=$now -v t=$t0 -v c=${c:-0} -v k=$cold_kb -v d=$PAGEOUT_SECS \
            'BEGIN { exit !(n - t >= d || c * 100 >= k * 99) }' && break
        sleep 0.5
    done
    t1=$(uptime_s)
    c1=$(cpu_ticks $kpid)
    S=$K/contexts/0/schemes/0
    echo update_schemes_stats > $K/state 2>/dev/null
    applied=$(cat $S/stats/sz_applied 2>/dev/null)
    echo off > $K/state 2>/dev/null
    aggrs=none
    if [ -f $E ] && [ "$(cat $E)" = 1 ]; then
        echo 0 > $E
        aggrs=$(grep damon_aggregated /sys/kernel/tracing/trace | sed 's/.* \([0-9]*\)-[0-9]*: .*/\1/' |
            awk 'NR == 1 || $1 < prev { n++ } { prev = $1 } END { print n + 0 }')
    fi
    out1=$(vmstat pswpout); in1=$(vmstat pswpin); maj1=$(majflt $PO_PID)
    r "pageout-$1 setup_rc=$setup t0=$t0 t_on=$t_on t1=$t1 cold_kb=$cold_kb hot_kb=$((PAGEOUT_HOT_MIB * 1024)) pswpout=$((out1 - out0)) pswpin=$((in1 - in0)) majflt=$((maj1 - maj0)) sz_applied=${applied:-none} pid=${kpid:-none} cpu_ticks=$((${c1:-0} - ${c0:-0})) aggregations=$aggrs"
    blob pageout-$1-setup /tmp/po-setup.out
    blob pageout-$1 /tmp/po-series.txt
    kill -9 $PO_PID 2>/dev/null
    wait $PO_PID 2>/dev/null
}
pageout() {
    if [ ! -e /sys/block/zram0/disksize ]; then
        r "pageout-skip reason=no-zram"
        return
    fi
    say "pageout: zram swap, kernel DAMOS then ours, up to $PAGEOUT_SECS s each"
    (
        set -e
        echo $ZRAM_MIB"M" > /sys/block/zram0/disksize
        mkswap /dev/zram0
        swapon /dev/zram0
    ) > /tmp/swap-setup.out 2>&1
    rc=$?
    r "swap setup_rc=$rc algorithm=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/block/zram0/comp_algorithm) size_mib=$ZRAM_MIB"
    if [ $rc != 0 ]; then
        blob swap-setup /tmp/swap-setup.out
        return
    fi
    pageout_run kernel "$GUEST_KERNEL_TREE"
    echo 0 > "$GUEST_KERNEL_TREE/kdamonds/nr_kdamonds"
    mkdir -p /tmp/admin
    RUST_LOG=damon_user::core::kdamond=debug taskset -c 0 damon fs /tmp/admin > /tmp/po-fs.out 2>&1 3>&- &
    FSPID=$!
    i=0
    while [ ! -e /tmp/admin/kdamonds/nr_kdamonds ] && [ $i -lt 300 ] && [ -d /proc/$FSPID ]; do
        i=$((i + 1)); sleep 0.1
    done
    if [ -e /tmp/admin/kdamonds/nr_kdamonds ]; then
        pageout_run ours /tmp/admin
    else
        r "pageout-ours failed=mount"
    fi
    kill -TERM $FSPID 2>/dev/null
    wait_pid $FSPID 20
    blob pageout-fs-log /tmp/po-fs.out
    swapoff /dev/zram0
}

r "boot release=$(uname -r) uptime=$(uptime_s) cpus=$(nproc)"
say "booted $(uname -r)"

for m in $(cat /lib/modules/order 2>/dev/null); do
    insmod "/lib/modules/$m.ko" > /tmp/insmod.out 2>&1 || r "insmod module=$m failed=$(tr '\n' ' ' < /tmp/insmod.out)"
done
[ -c /dev/fuse ] && r "fuse dev=1" || r "fuse dev=0"

# 1. probe, calibrate, load and attach everything
say "damon check"
taskset -c 0 timeout 120 damon check > /tmp/check.out 2>&1
rc=$?
cat /tmp/check.out
r "check rc=$rc"
blob check /tmp/check.out

# 2. the workload, alone on cpu1 (the monitors run on cpu0)
taskset -c 1 damon workload hotcold --hot-mib "$HOT_MIB" --cold-mib "$COLD_MIB" > /tmp/workload.out 2>&1 3>&- &
WPID=$!
if ! wait_for READY 60 /tmp/workload.out; then
    cat /tmp/workload.out
    r "workload failed"
    blob workload /tmp/workload.out
    finish
fi
r "workload $(grep -m1 READY /tmp/workload.out)"

# 3. record at the default attributes
say "damon record -p $WPID -d $RECORD_SECS"
t0=$(uptime_s)
RUST_LOG=damon_user::core::kdamond=debug taskset -c 0 timeout 120 damon record -p "$WPID" -d "$RECORD_SECS" -o /tmp/record.json --format json > /tmp/record.out 2>&1
rc=$?
cat /tmp/record.out
# When the first sample was taken (monotonic ns, which is uptime here), for the start-up time.
first=$(sed -n 's/.*first sample at \([0-9]*\) ns.*/\1/p' /tmp/record.out | head -n 1)
r "record rc=$rc start=$t0 first_sample_ns=${first:-none}"
blob record-log /tmp/record.out
[ -f /tmp/record.json ] && blob record /tmp/record.json

# 4. the admin tree, driven like DAMON's sysfs
say "damon fs"
mkdir -p /tmp/admin
taskset -c 0 damon fs /tmp/admin > /tmp/fs.out 2>&1 3>&- &
FSPID=$!
i=0
while [ ! -e /tmp/admin/kdamonds/nr_kdamonds ] && [ $i -lt 300 ] && [ -d /proc/$FSPID ]; do
    i=$((i + 1)); sleep 0.1
done
if [ -e /tmp/admin/kdamonds/nr_kdamonds ]; then
    (
        set -e
        cd /tmp/admin
        echo 1 > kdamonds/nr_kdamonds
        echo 1 > kdamonds/0/contexts/nr_contexts
        echo vaddr > kdamonds/0/contexts/0/operations
        echo 1 > kdamonds/0/contexts/0/targets/nr_targets
        echo "$WPID" > kdamonds/0/contexts/0/targets/0/pid_target
        echo on > kdamonds/0/state
    ) > /tmp/fs-setup.out 2>&1
    setup=$?
    sleep 1
    state=$(cat /tmp/admin/kdamonds/0/state 2>&1)
    kpid=$(cat /tmp/admin/kdamonds/0/pid 2>&1)
    alive=0
    [ -n "$kpid" ] && [ "$kpid" -gt 0 ] 2>/dev/null && [ -d "/proc/$kpid" ] && alive=1
    r "fs mounted=1 setup_rc=$setup state=$state pid=$kpid alive=$alive"
    blob fs-setup /tmp/fs-setup.out
    echo off > /tmp/admin/kdamonds/0/state 2>/dev/null
else
    r "fs mounted=0"
fi
kill -TERM $FSPID 2>/dev/null
wait_pid $FSPID 20
grep -q " /tmp/admin " /proc/mounts && unmounted=0 || unmounted=1
cat /tmp/fs.out
r "fs-stop rc=$rc unmounted=$unmounted"
blob fs-log /tmp/fs.out

# 5. the kernel's DAMON, then ours, on the same workload with the same attributes
if [ "$COMPARE" = 1 ]; then
    # An exclusive damon_stat kdamond runs from boot on some kernels; sysfs "on" is EBUSY then.
    for m in damon_stat damon_reclaim damon_lru_sort; do
        f=/sys/module/$m/parameters/enabled
        [ -f $f ] && [ "$(cat $f)" = Y ] && echo N > $f && say "disabled $m"
    done
    say "kernel DAMON for $COMPARE_SECS s"
    # A catch-all stat scheme: its tried regions are the kernel's regions.
    K=$GUEST_KERNEL_TREE/kdamonds/0
    S=$K/contexts/0/schemes/0
    (
        set -e
        scheme_on "$GUEST_KERNEL_TREE" "$WPID" stat 4294967295 0
    ) > /tmp/kdamond-setup.out 2>&1
    rc=$?
    kpid=$(cat $K/pid)
    r "kdamond-start setup_rc=$rc pid=$kpid"
    blob kdamond-setup /tmp/kdamond-setup.out
    c0=$(cpu_ticks $kpid); t0=$(uptime_s)
    : > /tmp/kdamond.txt
    i=1
    while [ $i -le $COMPARE_SECS ]; do
        sleep 1
        echo update_schemes_tried_regions > $K/state
        echo "snapshot $i $(uptime_s)" >> /tmp/kdamond.txt
        (cd $S/tried_regions && grep -r . [0-9]* >> /tmp/kdamond.txt 2>/dev/null)
        i=$((i + 1))
    done
    c1=$(cpu_ticks $kpid); t1=$(uptime_s)
    echo off > $K/state
    r "kdamond-done cpu_ticks=$((c1 - c0)) t0=$t0 t1=$t1"
    blob kdamond /tmp/kdamond.txt

    say "damon record for $COMPARE_SECS s"
    taskset -c 0 damon record -p "$WPID" -o /tmp/compare.json --format json \
        --sample-us $SAMPLE_US --aggr-us $AGGR_US --update-us $UPDATE_US \
        --min-regions $MIN_REGIONS --max-regions $MAX_REGIONS > /tmp/compare.out 2>&1 3>&- &
    RPID=$!
    if wait_for Recording 120 /tmp/compare.out; then
        c0=$(cpu_ticks $RPID); t0=$(uptime_s)
        sleep $COMPARE_SECS
        c1=$(cpu_ticks $RPID); t1=$(uptime_s)
        kill -INT $RPID
        wait_pid $RPID 30
        r "ours rc=$rc cpu_ticks=$((c1 - c0)) t0=$t0 t1=$t1"
        [ -f /tmp/compare.json ] && blob ours /tmp/compare.json
    else
        kill -9 $RPID 2>/dev/null
        r "ours failed"
    fi
    blob ours-log /tmp/compare.out

    # Intervals auto-tuning, on kernels that have it (6.15+): the kernel's DAMON and ours
    # with the same goal (DAMON's recommended one) on the same workload.
    G=$C/monitoring_attrs/intervals/intervals_goal
    if [ -d $G ]; then
        say "autotune: kernel DAMON for $AUTOTUNE_SECS s"
        (
            set -e
            echo $SAMPLE_US > $C/monitoring_attrs/intervals/sample_us
            echo $AGGR_US > $C/monitoring_attrs/intervals/aggr_us
            echo 400 > $G/access_bp
            echo 3 > $G/aggrs
            echo 5000 > $G/min_sample_us
            echo 10000000 > $G/max_sample_us
            echo on > $K/state
        ) > /tmp/kdamond-tuned-setup.out 2>&1
        rc=$?
        sleep $AUTOTUNE_SECS
        echo update_tuned_intervals > $K/state
        ks=$(cat $C/monitoring_attrs/intervals/sample_us)
        ka=$(cat $C/monitoring_attrs/intervals/aggr_us)
        echo update_schemes_tried_regions > $K/state
        echo "snapshot 1 $(uptime_s)" > /tmp/kdamond-tuned.txt
        (cd $S/tried_regions && grep -r . [0-9]* >> /tmp/kdamond-tuned.txt 2>/dev/null)
        echo off > $K/state
        r "autotune-kernel setup_rc=$rc sample_us=$ks aggr_us=$ka"
        blob kdamond-tuned-setup /tmp/kdamond-tuned-setup.out
        blob kdamond-tuned /tmp/kdamond-tuned.txt
        say "autotune: damon record --autotune for $AUTOTUNE_SECS s"
        taskset -c 0 timeout 120 damon record --autotune -p "$WPID" -d "$AUTOTUNE_SECS" \
            -o /tmp/tuned.json --format json > /tmp/tuned.out 2>&1 3>&-
        r "autotune-ours rc=$?"
        blob ours-tuned-log /tmp/tuned.out
        [ -f /tmp/tuned.json ] && blob ours-tuned /tmp/tuned.json
    fi

    # The floor of any monitor that samples from user space: a process that only wakes at
    # the sampling rate, on the monitors' vCPU, measured the same way.
    say "floor: a process waking every $SAMPLE_US us for $COMPARE_SECS s"
    taskset -c 0 damon workload sleeper --interval-us "$SAMPLE_US" > /tmp/sleeper.out 2>&1 3>&- &
    SPID=$!
    if wait_for READY 60 /tmp/sleeper.out; then
        c0=$(cpu_ticks $SPID); t0=$(uptime_s)
        sleep $COMPARE_SECS
        c1=$(cpu_ticks $SPID); t1=$(uptime_s)
        r "floor cpu_ticks=$((c1 - c0)) t0=$t0 t1=$t1"
    fi
    kill -9 $SPID 2>/dev/null

    # 6. DAMOS pageout: the kernel's DAMOS, then ours, with the same scheme on a fresh
    # workload each, with zram swap in this guest.
    pageout
fi

kill -9 $WPID 2>/dev/null
finish
