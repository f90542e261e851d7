# Shared by the CSI tests in the VM: start the simulator (real nvmet export), the controller
# (SSH to the simulator, host key pinned) and the node (real nvme-tcp fabric); bounded waits;
# end-of-test checks. Sourced by scripts/vm/<test>.sh with ROOT, BIN_DIR and W set.
# host-bench.sh sources it too, outside the VM: SIM_NVMET=off, SIM_SSH_PORT=0 (any free port)
# and NODE_FABRIC=(--fabric loop ...) adapt it to a host without NVMe.
BIN=${BIN_DIR:?}/rds-csi
E2E=$BIN_DIR/csi-e2e
PREFIX=nqn.2000-02.com.mikrotik
SIM_NVMET=${SIM_NVMET:-on}
SIM_SSH_PORT=${SIM_SSH_PORT:-2222}
NODE_FABRIC=(--fabric nvme-tcp
  --host-nqn "nqn.2014-08.org.nvmexpress:uuid:2b7c5e1a-9f3d-4c8e-a6b1-0d4f7e9c3a51"
  --host-id 2b7c5e1a-9f3d-4c8e-a6b1-0d4f7e9c3a51)
# Where the controller serves CSI (tcp://ADDR:PORT for the calls of another VM) and the id
# of the node plugin.
CONTROLLER_ENDPOINT=${CONTROLLER_ENDPOINT:-unix://$W/controller.sock}
NODE_ID=${NODE_ID:-vm-node}
PIDS=()
say() { echo "[test] $*"; }
fail() {
  echo "[test] FAIL: $*"
  for f in "$W"/*.err "$W"/node.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 25 "$f"; }; done
  exit 1
}
stop_all() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_all EXIT

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 50 ms, fails after SECONDS.
wait_for() {
  local limit=$1 what=$2 end
  shift 2
  end=$(($(date +%s%N) + limit * 1000000000))
  until "$@"; do
    (($(date +%s%N) < end)) || fail "no $what within ${limit}s"
    sleep 0.05
  done
}

# start_sim NVME_ADDR [NETNS] [SIM FLAGS...]: the simulator with real nvmet export (unless
# SIM_NVMET=off), SSH on 127.0.0.1:$SIM_SSH_PORT (or, in NETNS, on NVME_ADDR:$SIM_SSH_PORT).
# Started again (after stop_sim) it keeps its data directory, host key and client key.
start_sim() {
  local addr=$1 netns=${2:-} ssh=127.0.0.1:$SIM_SSH_PORT run=()
  shift $(($# < 2 ? $# : 2))
  if [[ -n $netns ]]; then
    ssh=$addr:$SIM_SSH_PORT
    run=(nsenter --net=/run/netns/"$netns")
  fi
  [[ -f $W/id ]] || ssh-keygen -q -t ed25519 -N '' -f "$W/id"
  "${run[@]}" "$BIN" sim --data-dir "$W/data" --ssh-listen "$ssh" --rest-listen 127.0.0.1:0 \
    --authorized-keys "$W/id.pub" --nvmet "$SIM_NVMET" --nvme-listen "$addr:4420" \
    --capacity 4G "$@" >"$W/sim.out" 2>>"$W/sim.err" &
  SIM_PID=$!
  PIDS+=($!)
  wait_for 30 "simulator ready" grep -q '^ready' "$W/sim.out"
  SIM_FP=$(awk '/^ssh-host-key-fingerprint:/ {print $2}' "$W/sim.out")
  SIM_SSH=$(awk '/^ssh-listen:/ {print $2}' "$W/sim.out")
  say "simulator ready (nvmet $SIM_NVMET, exports on $addr:4420, SSH $SIM_SSH, host key $SIM_FP)"
}

# stop_sim: SIGTERM, as a device going down; the simulator removes its exports.
stop_sim() {
  kill -TERM "$SIM_PID"
  wait "$SIM_PID" || fail "simulator exited with $? on SIGTERM"
}

# start_controller NVME_ADDR [CONTROLLER FLAGS...]
start_controller() {
  local addr=$1
  shift
  "$BIN" controller --endpoint "$CONTROLLER_ENDPOINT" \
    --rds-address "${SIM_SSH%:*}" --rds-port "${SIM_SSH##*:}" --rds-user admin \
    --rds-key-file "$W/id" --rds-host-key-fingerprint "$SIM_FP" \
    --nvme-address "$addr" --nvme-port 4420 --attachment-state memory --metrics-address "" \
    "$@" >"$W/controller.out" 2>"$W/controller.err" &
  PIDS+=($!)
  case $CONTROLLER_ENDPOINT in
    unix://*) wait_for 30 "controller socket" test -S "${CONTROLLER_ENDPOINT#unix://}" ;;
    tcp://*) wait_for 30 "controller port" serving "${CONTROLLER_ENDPOINT#tcp://}" ;;
  esac
}

# serving HOST:PORT: something accepts TCP connections there.
serving() { (echo >"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# start_node [NODE FLAGS...]
start_node() {
  mkdir -p "$W/csi/volumeDevices"
  # mounts::phase at debug: the timing events of the NodeStageVolume breakdown.
  "$BIN" --log info,driver=debug,nvme=debug,mounts::phase=debug --log-format json node \
    --endpoint "unix://$W/node.sock" --node-id "$NODE_ID" "${NODE_FABRIC[@]}" \
    --block-publish-dir "$W/csi/volumeDevices" --state-dir "$W/node-state" "$@" \
    >"$W/node.out" 2>"$W/node.log" &
  PIDS+=($!)
  wait_for 30 "node socket" test -S "$W/node.sock"
  say "controller and node serving"
}

# Connection flags for csi-e2e.
csi_flags() {
  echo --controller "$CONTROLLER_ENDPOINT" --node "unix://$W/node.sock" --work-dir "$W/csi"
}

ros() {
  ssh -p "${SIM_SSH##*:}" -i "$W/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=10 admin@"${SIM_SSH%:*}" "$1" | tr -d '\r'
}

# No NVMe controller of a managed NQN is left, and the simulator holds no volume disk or file.
assert_clean() {
  local c left=()
  for c in /sys/class/nvme/nvme*; do
    [[ -e $c/subsysnqn ]] || continue
    [[ $(cat "$c/subsysnqn") == "$PREFIX:"* ]] && left+=("$(basename "$c")")
  done
  ((${#left[@]} == 0)) || fail "NVMe controllers left: ${left[*]}"
  local disks files
  disks=$(ros '/disk print count-only where type=file')
  [[ $disks == 0 ]] || fail "simulator still has $disks file disks"
  files=$(find "$W/data/files" -type f | wc -l)
  [[ $files == 0 ]] || fail "simulator still has files: $(find "$W/data/files" -type f)"
  if [[ $SIM_NVMET == on ]]; then
    [[ -z $(ls /sys/kernel/config/nvmet/subsystems/) ]] || fail "nvmet subsystems left"
  fi
  say "clean: no managed NVMe controller, no disk, no file, no nvmet subsystem"
}
