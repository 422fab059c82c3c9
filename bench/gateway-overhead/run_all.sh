#!/usr/bin/env bash
# One-shot gateway overhead benchmark: upstreams + LiteLLM + gateway under test, three wrk sweeps, summary.
#
# usage: GATEWAY_CMD='...' GATEWAY_KEY=sk-... bench/gateway-overhead/run_all.sh
#   GATEWAY_CMD  command line that starts the gateway under test in the foreground, listening on
#                127.0.0.1:$GATEWAY_PORT with model fake-model -> http://127.0.0.1:8001/v1. Run with
#                `setsid taskset -c $GW_CPU bash -c "$GATEWAY_CMD"` from $GATEWAY_CWD (default: repo root).
#   GATEWAY_KEY  bearer key the gateway accepts (empty = no Authorization header)
# env (optional):
#   GATEWAY_PORT=8080  GW_CPU=0  GATEWAY_CWD=<repo root>  GATEWAY_READY_TIMEOUT=60 (s)
#   TARGETS="direct litellm ours"   which sweeps to run (servers for skipped targets are still started,
#                                   except LiteLLM when litellm is not in TARGETS)
#   TTFT=0     1 = also run ttft.py (conc 1, stream) per target -> results/ttft.jsonl
#   DURATION=15 WARMUP=3 CONC="1 16 64" STREAMS="0 1" NICE=0 LOADGEN_CPU=1   passed through to run_bench.sh
# Writes (beside this folder): results/{direct,litellm,ours}.jsonl, results/startup.json,
#   results/summary.md, logs/*.log, logs/run_all.log; earlier results/* are moved to results/prev-<time>/.
# Everything this script started is stopped on exit (trap), also on error or Ctrl-C.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE"); REPO=$(dirname "$ROOT")
cd "$ROOT"; mkdir -p logs results
PY=$ROOT/venv/bin/python
: "${GATEWAY_CMD:?set GATEWAY_CMD to the command that starts the gateway under test}"
GATEWAY_KEY=${GATEWAY_KEY:-}; GATEWAY_PORT=${GATEWAY_PORT:-8080}; GW_CPU=${GW_CPU:-0}
GATEWAY_CWD=${GATEWAY_CWD:-$REPO}; GATEWAY_READY_TIMEOUT=${GATEWAY_READY_TIMEOUT:-60}
TARGETS=${TARGETS:-"direct litellm ours"}; TTFT=${TTFT:-0}; NICE=${NICE:-0}; LOADGEN_CPU=${LOADGEN_CPU:-1}
LITELLM_KEY=sk-bench-local-7f3a9c2e5b1d4a6f
export DURATION=${DURATION:-15} WARMUP=${WARMUP:-3} CONC=${CONC:-"1 16 64"} STREAMS=${STREAMS:-"0 1"} NICE LOADGEN_CPU
want() { case " $TARGETS " in *" $1 "*) return 0;; *) return 1;; esac; }
now() { date +%s.%N; }
log() { echo "[run_all $(date +%H:%M:%S)] $*"; }
exec > >(tee -a logs/run_all.log) 2>&1

# ---- preflight ----------------------------------------------------------------------------------
[ -x "$PY" ] || { echo "missing $PY: python3 -m venv venv && venv/bin/pip install 'litellm[proxy]' aiohttp uvloop httpx psutil"; exit 1; }
command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk"; exit 1; }
for port in 8001 8002 4000 "$GATEWAY_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use (left-over server? try gateway-overhead/stop_servers.sh)"; exit 1
  fi
done
if find results -maxdepth 1 -type f | grep -q .; then
  prev=results/prev-$(date +%Y%m%d-%H%M%S); mkdir -p "$prev"
  find results -maxdepth 1 -type f -exec mv {} "$prev/" \; ; log "moved earlier results to $prev"
fi

GW_PID=""; CHILD=""
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; echo "$c"; done; }
step() { "$@" & CHILD=$!; wait "$CHILD"; CHILD=""; }   # run in background + wait, so INT/TERM are handled at once
cleanup() {
  local rc=$?; trap - EXIT INT TERM
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then   # interrupted mid-bench: stop run_bench.sh, wrk, monitor
    # shellcheck disable=SC2046
    kill $(descendants "$CHILD") "$CHILD" 2>/dev/null || true; log "stopped running step $CHILD"
  fi
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    # setsid made the gateway a process-group leader: signal the group (gateway + any workers it forked)
    local target=$GW_PID; [ "$(ps -o pgid= -p "$GW_PID" | tr -d ' ')" = "$GW_PID" ] && target=-$GW_PID
    kill -TERM -- "$target" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$GW_PID" 2>/dev/null && { log "gateway $GW_PID ignored SIGTERM for 10 s, SIGKILL"; kill -KILL -- "$target" 2>/dev/null || true; }
    log "stopped gateway $GW_PID"
  fi
  local pids; pids=$(cat logs/*.pid 2>/dev/null || true)
  "$HERE/stop_servers.sh" || true
  for p in $pids; do   # wait for them to be gone (uvicorn shuts down gracefully), so ports are free afterwards
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && { kill -KILL "$p" 2>/dev/null || true; log "SIGKILL $p"; }
  done
  log "exit $rc"; exit $rc
}
trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM

smoke() {  # NAME URL KEY: one non-streaming completion must return 200
  local code; code=$(curl -s -o "logs/smoke_$1.json" -w '%{http_code}' --max-time 30 "$2" -H 'Content-Type: application/json' \
    ${3:+-H "Authorization: Bearer $3"} -d '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"max_tokens":16}' || true)
  [ "$code" = 200 ] || { echo "smoke test $1 -> HTTP $code: $(head -c 400 "logs/smoke_$1.json" 2>/dev/null)"; return 1; }
  log "smoke $1 ok"
}

# ---- servers ------------------------------------------------------------------------------------
log "starting upstreams"; "$HERE/start_upstreams.sh"
for port in 8001 8002; do curl -sf -o /dev/null "http://127.0.0.1:$port/health" || { echo "upstream :$port not up"; tail -20 "logs/upstream_$port.log"; exit 1; }; done
UP1=$(cat logs/upstream_8001.pid); UP2=$(cat logs/upstream_8002.pid)

LL_READY=null; LL_RSS=null; LL_PID=0
if want litellm; then
  log "starting litellm"; LL_OUT=$("$HERE/start_litellm.sh"); echo "$LL_OUT"
  curl -sf -o /dev/null --max-time 5 http://127.0.0.1:4000/health/liveliness || { echo "litellm not ready"; tail -30 logs/litellm_4000.log; exit 1; }
  LL_PID=$(cat logs/litellm_4000.pid)
  LL_READY=$(echo "$LL_OUT" | sed -n 's/.* ready in \([0-9.]*\) s.*/\1/p'); LL_RSS=$(echo "$LL_OUT" | sed -n 's/.*RSS \([0-9]*\) MB.*/\1/p')
  LL_READY=${LL_READY:-null}; LL_RSS=${LL_RSS:-null}
fi

log "starting gateway on CPU $GW_CPU: $GATEWAY_CMD"
T0=$(now)
( cd "$GATEWAY_CWD" && exec setsid nice -n "$NICE" taskset -c "$GW_CPU" bash -c "$GATEWAY_CMD" ) > "logs/gateway_$GATEWAY_PORT.log" 2>&1 &
GW_PID=$!; echo "$GW_PID" > "logs/gateway_$GATEWAY_PORT.pid"
READY=0
while :; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$GATEWAY_PORT/readyz" 2>/dev/null || true)
  [ "$code" = 200 ] && { READY=1; break; }
  kill -0 "$GW_PID" 2>/dev/null || { echo "gateway exited before ready"; tail -30 "logs/gateway_$GATEWAY_PORT.log"; exit 1; }
  [ "$(awk -v a="$(now)" -v b="$T0" -v t="$GATEWAY_READY_TIMEOUT" 'BEGIN{print (a-b>t)}')" = 1 ] && break
  sleep 0.05
done
T1=$(now)
[ $READY = 1 ] || { echo "gateway not ready after $GATEWAY_READY_TIMEOUT s"; tail -30 "logs/gateway_$GATEWAY_PORT.log"; exit 1; }
GW_READY=$(awk -v a="$T1" -v b="$T0" 'BEGIN{printf "%.3f", a-b}')
GW_MEM=$("$PY" - "$GW_PID" <<'EOF'
import json, sys, psutil
p = psutil.Process(int(sys.argv[1])); ps = [p] + p.children(recursive=True)
r = {"rss_mb": round(sum(q.memory_info().rss for q in ps) / 2**20, 1), "rss_main_mb": round(p.memory_info().rss / 2**20, 1),
     "cpu_affinity": p.cpu_affinity(),
     "procs": [{"pid": q.pid, "name": q.name(), "rss_mb": round(q.memory_info().rss / 2**20, 1)} for q in ps]}
print(json.dumps(r))
EOF
)
log "gateway pid $GW_PID ready in $GW_READY s, $GW_MEM"

GW_URL=http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions
want direct && smoke direct http://127.0.0.1:8002/v1/chat/completions ""
want litellm && smoke litellm http://127.0.0.1:4000/v1/chat/completions "$LITELLM_KEY"
want ours && smoke ours "$GW_URL" "$GATEWAY_KEY"

"$PY" - "$GW_READY" "$GW_MEM" "$LL_READY" "$LL_RSS" "$GATEWAY_CMD" "$GW_CPU" "$GATEWAY_PORT" "$GW_PID" <<'EOF' > results/startup.json
import json, os, platform, sys, time
from importlib.metadata import version
gr, gm, lr, lrss, cmd, cpu, port, pid = sys.argv[1:9]
num = lambda s: None if s == "null" else float(s)
print(json.dumps({
    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "gateway": {"cmd": cmd, "cpu": int(cpu), "port": int(port), "pid": int(pid), "ready_s": float(gr),
                "ready_poll_s": 0.05, "ready_path": "/readyz", **json.loads(gm)},
    "litellm": {"version": version("litellm"), "ready_s": None if lr == "null" else round(float(lr), 3), "rss_mb": num(lrss), "ready_poll_s": 0.25,
                "ready_path": "/health/liveliness"},
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                "loadavg": os.getloadavg()},
    "bench": {k: os.environ.get(k) for k in ("DURATION", "WARMUP", "CONC", "STREAMS", "NICE")},
}, indent=2))
EOF
log "startup: gateway ${GW_READY} s, litellm ${LL_READY} s -> results/startup.json"

# ---- benches ------------------------------------------------------------------------------------
export OWN_PIDS=$UP1
FILES=()
if want direct; then log "bench direct"; step "$HERE/run_bench.sh" direct http://127.0.0.1:8002/v1/chat/completions "$UP2"; FILES+=(results/direct.jsonl); fi
if want litellm; then log "bench litellm"; step "$HERE/run_bench.sh" litellm http://127.0.0.1:4000/v1/chat/completions "$LL_PID" "$LITELLM_KEY"; FILES+=(results/litellm.jsonl); fi
if want ours; then log "bench ours"; step "$HERE/run_bench.sh" ours "$GW_URL" "$GW_PID" "$GATEWAY_KEY"; FILES+=(results/ours.jsonl); fi
if [ "$TTFT" = 1 ]; then
  log "ttft (stream, conc 1)"
  want direct && step nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$PY" "$HERE/ttft.py" http://127.0.0.1:8002/v1/chat/completions --name direct --duration "$DURATION" --warmup "$WARMUP" >> results/ttft.jsonl
  want litellm && step nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$PY" "$HERE/ttft.py" http://127.0.0.1:4000/v1/chat/completions --name litellm --auth "$LITELLM_KEY" --duration "$DURATION" --warmup "$WARMUP" >> results/ttft.jsonl
  want ours && step nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$PY" "$HERE/ttft.py" "$GW_URL" --name ours ${GATEWAY_KEY:+--auth "$GATEWAY_KEY"} --duration "$DURATION" --warmup "$WARMUP" >> results/ttft.jsonl
  cat results/ttft.jsonl
fi

# ---- summary ------------------------------------------------------------------------------------
{
  echo "# Gateway overhead benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "Machine: $(nproc) CPUs, $(uname -r); server under test on CPU $GW_CPU, wrk/monitor/:8001 upstream on CPU 1."
  echo "Sweep: DURATION=${DURATION}s WARMUP=${WARMUP}s CONC=\"$CONC\" STREAMS=\"$STREAMS\"; LiteLLM $("$PY" -c 'from importlib.metadata import version; print(version("litellm"))')."
  echo "Gateway: \`$GATEWAY_CMD\`"
  echo
  "$PY" - <<'EOF'
import json
s = json.load(open("results/startup.json")); g, l = s["gateway"], s["litellm"]
print("| server | start-to-ready s | RSS right after ready MB |\n|---|---|---|")
print(f"| ours | {g['ready_s']} | {g['rss_mb']} (main process {g['rss_main_mb']}, {len(g['procs'])} process(es)) |")
if l["ready_s"] is not None: print(f"| litellm {l['version']} | {l['ready_s']:.2f} | {l['rss_mb']} |")
EOF
  echo
  "$PY" "$HERE/summarize.py" "${FILES[@]}"
  if [ -s results/ttft.jsonl ]; then echo; echo '```'; cat results/ttft.jsonl; echo '```'; fi
  echo
  echo "Quote ratios within this run (server CPU ms/req is the figure least sensitive to other load)."
} > results/summary.md
log "summary -> results/summary.md"; cat results/summary.md
